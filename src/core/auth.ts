/**
 * Authentication: bearer tokens (stored only as keyed hashes) to principals; people and their
 * API tokens. The seam for agents, sessions and approval links (the access model) is `authenticate`.
 */
import { mintToken, newId, tokenKind, type TokenKind } from '../crypto/tokens.js';
import type { Store, TokenRow, UserRow } from '../store/store.js';
import type { Core } from './core.js';
import { randomBytes } from 'node:crypto';
import { UniqueViolation } from '../store/store.js';
import { conflict, denied, invalid, LatchkeyError, notFound, unauthenticated } from './errors.js';
import { isoTime } from './time.js';
import type { InstanceRole, OpContext, Principal } from './principal.js';

/** On a refused but known credential: the principal it belonged to (for the audit row's actor). */
export const REFUSED_OWNER: unique symbol = Symbol('latchkey.refusedOwner');

export function refusedOwner(err: unknown): Principal | null {
  return (err as { [REFUSED_OWNER]?: Principal } | null)?.[REFUSED_OWNER] ?? null;
}

export async function hashPassword(password: string): Promise<string> {
  const { hash, Algorithm } = await import('@node-rs/argon2');
  return hash(password, { algorithm: Algorithm.Argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 });
}

export async function verifyPassword(stored: string, password: string): Promise<boolean> {
  const { verify } = await import('@node-rs/argon2');
  try {
    return await verify(stored, password);
  } catch {
    return false;
  }
}

const FAILURE_WINDOW_MS = 15 * 60_000;
const LOCK_FOR_MS = 15 * 60_000;
const LOCK_AFTER_ACCOUNT = 5;
const LOCK_AFTER_IP = 20;
const WEB_SESSION_MS = 12 * 3600_000;
/** A real Argon2id hash of a random string: unknown accounts cost the same time as known ones. */
const DUMMY_HASH = '$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Cu1PvB+Tu8tDAmiTmKIdAOJYGt+mcFNPyq4N+TolXGY';

export function checkEmail(e: unknown): string {
  if (typeof e !== 'string' || e.length > 254 || !/^[^\s@]+@[^\s@]+$/.test(e)) throw invalid('email', 'must be an email address');
  return e.toLowerCase();
}

export function checkPassword(p: unknown): string {
  if (typeof p !== 'string' || p.length < 12) throw invalid('password', 'must be at least 12 characters');
  if (p.length > 1024) throw invalid('password', 'is longer than 1024 characters');
  return p;
}

export function userView(u: UserRow) {
  return { id: u.id, email: u.email, role: u.role, created_at: u.created_at };
}

export class Auth {
  constructor(private readonly core: Core) {}

  /** Mints a token, stores its keyed hash, and returns the token (the only time it exists in clear). */
  async issueToken(s: Store, kind: TokenKind, fields: Partial<TokenRow> & { name: string }): Promise<{ token: string; row: TokenRow }> {
    const token = mintToken(kind);
    const row: TokenRow = {
      id: newId(), kind, hash: this.core.keyring.tokenHash(token), name: fields.name, user_id: fields.user_id ?? null, agent_id: fields.agent_id ?? null,
      vault_id: fields.vault_id ?? null, expires_at: fields.expires_at ?? null, revoked_at: null, created_at: new Date().toISOString(), last_used_at: null,
    };
    await s.insertToken(row);
    return { token, row };
  }

  /** Creates a person (the first is the owner) with an API token. */
  async createUser(s: Store, opts: { email: string | null; password: string | null; role: InstanceRole; tokenName: string }): Promise<{ user: UserRow; token: string }> {
    const now = new Date().toISOString();
    const user: UserRow = {
      id: newId(), email: opts.email, password_hash: opts.password ? await hashPassword(opts.password) : null, role: opts.role,
      disabled: 0, created_at: now, updated_at: now,
    };
    await s.insertUser(user);
    const { token } = await this.issueToken(s, 'pat', { name: opts.tokenName, user_id: user.id });
    return { user, token };
  }

  /** Bearer token to principal. Anything malformed, unknown, revoked, expired or of the wrong kind is a 401. */
  async authenticate(token: string | undefined | null): Promise<Principal> {
    if (!token) throw unauthenticated();
    const kind = tokenKind(token);
    if (!kind) throw unauthenticated('the bearer token is not a Latchkey token', 'invalid_token');
    if (kind === 'appr') throw unauthenticated('an approval-link token only opens its approval page; it is not an API token', 'wrong_token_kind');
    const found = await this.core.store.getTokenWithUser(this.core.keyring.tokenHash(token));
    const row = found?.token;
    if (!row || row.kind !== kind) throw unauthenticated('the token is not valid', 'invalid_token');
    if (row.revoked_at) return this.refuse(unauthenticated('the token was revoked', 'token_revoked'), row, found.user);
    if (row.expires_at && row.expires_at <= new Date().toISOString()) return this.refuse(unauthenticated('the token has expired', 'token_expired'), row, found.user);
    if (kind === 'pat' && row.user_id) {
      const u = found.user;
      if (!u || u.disabled) return this.refuse(unauthenticated('the account is disabled', 'account_disabled'), row, u);
      return { kind: 'user', id: u.id, email: u.email, role: u.role as InstanceRole, tokenId: row.id };
    }
    if ((kind === 'agent' || kind === 'sess') && row.agent_id) {
      const a = await this.core.store.getAgent(row.agent_id);
      if (!a || a.status !== 'active') return this.refuse(unauthenticated('the agent was revoked', 'agent_revoked'), row, null);
      let sessionVault: string | null = null;
      if (kind === 'sess') {
        const v = row.vault_id ? await this.core.store.getVaultById(row.vault_id) : null;
        if (!v) throw unauthenticated('the session\'s vault no longer exists', 'invalid_token');
        sessionVault = v.name;
      }
      return { kind: 'agent', id: a.id, name: a.name, tokenId: row.id, sessionVault };
    }
    throw unauthenticated('this kind of token is not accepted here', 'wrong_token_kind');
  }

  /**
   * Refuses a token that exists but no longer works (revoked, expired, its person removed or its
   * agent revoked), naming its owner for the audit row only: the owner travels on a non-enumerable
   * symbol property, never in the response.
   */
  private async refuse(err: LatchkeyError, row: TokenRow, user: UserRow | null): Promise<never> {
    let owner: Principal | null = null;
    if (row.user_id && user) owner = { kind: 'user', id: user.id, email: user.email, role: user.role as InstanceRole, tokenId: row.id };
    else if (row.agent_id) {
      const a = await this.core.store.getAgent(row.agent_id);
      if (a) owner = { kind: 'agent', id: a.id, name: a.name, tokenId: row.id, sessionVault: null };
    }
    if (owner) Object.defineProperty(err, REFUSED_OWNER, { value: owner, enumerable: false });
    throw err;
  }

  /** The console's session cookie (an opaque random value stored as a keyed hash, kind `web`). */
  async authenticateCookie(value: string): Promise<Principal> {
    if (!/^[A-Za-z0-9_-]{43}$/.test(value)) throw unauthenticated('the session cookie is not valid', 'invalid_session');
    const found = await this.core.store.getTokenWithUser(this.core.keyring.tokenHash(`web:${value}`));
    const row = found?.token;
    if (!row || row.kind !== 'web' || row.revoked_at || !found.user || found.user.disabled) throw unauthenticated('the session has ended; log in again', 'session_expired');
    if (row.expires_at && row.expires_at <= new Date().toISOString()) throw unauthenticated('the session has expired; log in again', 'session_expired');
    const u = found.user;
    return { kind: 'user', id: u.id, email: u.email, role: u.role as InstanceRole, tokenId: row.id };
  }

  /**
   * Email + password login. Failures are counted per account and per client address; after
   * LOCK_AFTER failures in the window the account (or address) is locked for LOCK_FOR, and each
   * failure is slowed. Every attempt is audited (auth.login / auth.failure).
   */
  async login(ctx: OpContext, email: unknown, password: unknown): Promise<{ cookie: string; expiresAt: string; user: ReturnType<typeof userView> }> {
    if (typeof email !== 'string' || !email) throw invalid('email', 'is required');
    if (typeof password !== 'string' || !password) throw invalid('password', 'is required');
    const keys = [`account:${email.toLowerCase()}`, ...(ctx.ip ? [`ip:${ctx.ip}`] : [])];
    const now = Date.now();
    const limitOf = (k: string) => (k.startsWith('ip:') ? LOCK_AFTER_IP : LOCK_AFTER_ACCOUNT);
    const locked = async (k: string, until: number) => {
      await this.core.write(ctx, async (_s, ev) => { ev.push({ action: 'auth.failure', target: email, outcome: 'denied', details: { reason: 'locked', scope: k.split(':')[0] } }); });
      const retry = Math.max(1, Math.ceil((until - now) / 1000));
      return new LatchkeyError(429, 'login_locked', `too many failed logins; try again in ${retry} s`, undefined, { retry_after: retry });
    };
    // the attempt is counted before the password is checked, in one statement per key that also
    // returns the lock: attempts made at the same moment each get their own number, and a locked
    // key or one past its limit is refused unchecked (counting after the check let a burst of
    // concurrent guesses all pass the lock)
    const counted: Array<{ key: string; failures: number }> = [];
    for (const k of keys) {
      const c = await this.core.store.bumpAuthFailure(k, new Date(now).toISOString(), new Date(now - FAILURE_WINDOW_MS).toISOString());
      if (c.locked_until && Date.parse(c.locked_until) > now) throw await locked(k, Date.parse(c.locked_until));
      counted.push({ key: k, failures: c.failures });
    }
    const over = counted.find((c) => c.failures > limitOf(c.key));
    if (over) {
      await this.core.store.lockAuthFailure(over.key, new Date(now + LOCK_FOR_MS).toISOString());
      throw await locked(over.key, now + LOCK_FOR_MS);
    }
    const user = await this.core.store.getUserByEmail(email.toLowerCase());
    const ok = user?.password_hash ? await verifyPassword(user.password_hash, password) : (await verifyPassword(DUMMY_HASH, password), false);
    if (!ok || !user || user.disabled) {
      for (const c of counted) if (c.failures >= limitOf(c.key)) await this.core.store.lockAuthFailure(c.key, new Date(now + LOCK_FOR_MS).toISOString());
      await this.core.write(ctx, async (_s, ev) => { ev.push({ action: 'auth.failure', target: email, outcome: 'denied', details: { reason: 'bad credentials' } }); });
      const worst = Math.max(...counted.map((c) => c.failures));
      await new Promise((r) => setTimeout(r, Math.min(worst, 8) * 100));
      throw unauthenticated('email or password is wrong', 'bad_credentials');
    }
    // success: the account starts over; the address only takes this attempt back (a login of one's
    // own must not wipe the failures of guesses made from the same address at other accounts)
    for (const k of keys) {
      if (k.startsWith('ip:')) await this.core.store.releaseAuthFailure(k);
      else await this.core.store.clearAuthFailure(k);
    }
    const value = randomBytes(32).toString('base64url');
    const expiresAt = new Date(now + WEB_SESSION_MS).toISOString();
    const principal: Principal = { kind: 'user', id: user.id, email: user.email, role: user.role as InstanceRole, tokenId: null };
    await this.core.write({ ...ctx, principal }, async (s, ev) => {
      await s.insertToken({
        id: newId(), kind: 'web', hash: this.core.keyring.tokenHash(`web:${value}`), name: 'console session', user_id: user.id, agent_id: null,
        vault_id: null, expires_at: expiresAt, revoked_at: null, created_at: new Date(now).toISOString(), last_used_at: null,
      });
      ev.push({ action: 'auth.login', target: user.email, details: { method: 'password' } });
    });
    return { cookie: value, expiresAt, user: userView(user) };
  }

  /** Ends the console session or revokes the API token the request came with. */
  async logout(ctx: OpContext): Promise<{ revoked: boolean }> {
    const p = ctx.principal;
    // a person ends their session or API token; an agent may end a short-lived session it holds
    // (`latchkey run` does when its command exits), never its agent token (people revoke those)
    // an agent token is not a session: logout is people's (SPEC §5), so that is a 403, audited
    await this.core.authorize(ctx, p.kind === 'agent' && p.sessionVault !== null ? 'session.end' : 'self.manage');
    if (p.kind === 'agent' && p.sessionVault === null) return { revoked: false };
    if ((p.kind !== 'user' && p.kind !== 'agent') || !p.tokenId) return { revoked: false };
    const tokenId = p.tokenId;
    const revoked = await this.core.write(ctx, async (s, ev) => {
      const r = await s.revokeToken(tokenId, new Date().toISOString());
      ev.push({ action: 'token.revoke', target: `token:${tokenId}`, details: { logout: true } });
      return r;
    });
    return { revoked };
  }

  /** Sets the caller's email and/or password (the console's first-run page; a password change). */
  async updateSelf(ctx: OpContext, input: { email?: unknown; password?: unknown; current_password?: unknown }) {
    await this.core.authorize(ctx, 'self.manage');
    const p = ctx.principal;
    if (p.kind !== 'user') throw denied('only people have an email and password');
    const u = await this.core.store.getUser(p.id);
    if (!u) throw unauthenticated();
    const patch: { email?: string; password_hash?: string; updated_at: string } = { updated_at: new Date().toISOString() };
    if (input.email !== undefined) patch.email = checkEmail(input.email);
    if (input.password !== undefined) {
      if (u.password_hash && (typeof input.current_password !== 'string' || !(await verifyPassword(u.password_hash, input.current_password)))) {
        throw invalid('current_password', 'is required and must match to change a password');
      }
      patch.password_hash = await hashPassword(checkPassword(input.password));
    }
    try {
      await this.core.write(ctx, async (s, ev) => {
        await s.updateUser(u.id, patch);
        ev.push({ action: 'user.update', target: `user:${patch.email ?? u.email ?? 'owner'}`, details: { updated: Object.keys(patch).filter((k) => k !== 'updated_at').map((k) => (k === 'password_hash' ? 'password' : k)) } });
      });
    } catch (err) {
      if (err instanceof UniqueViolation) throw conflict('that email is taken', 'email_taken', 'email');
      throw err;
    }
    return userView({ ...u, ...patch });
  }

  /** API tokens of the caller: create (shown once), list (no values), revoke. */
  async createApiToken(ctx: OpContext, name: unknown, ttlSeconds?: unknown) {
    await this.core.authorize(ctx, 'token.manage');
    const p = ctx.principal;
    if (p.kind !== 'user') throw denied('only people have API tokens');
    if (typeof name !== 'string' || !name || name.length > 100) throw invalid('name', 'must be 1-100 characters');
    if (ttlSeconds !== undefined && (typeof ttlSeconds !== 'number' || !Number.isInteger(ttlSeconds) || ttlSeconds < 60)) throw invalid('ttl', 'must be a whole number of seconds, at least 60');
    const expires_at = ttlSeconds ? isoTime(Date.now() + (ttlSeconds as number) * 1000, 'ttl') : null;
    return this.core.write(ctx, async (s, ev) => {
      const { token, row } = await this.issueToken(s, 'pat', { name, user_id: p.id, expires_at });
      ev.push({ action: 'token.create', target: `token:${row.id}`, details: { name, expires_at } });
      return { id: row.id, name, token, expires_at, created_at: row.created_at };
    });
  }

  async listApiTokens(ctx: OpContext) {
    await this.core.authorize(ctx, 'token.manage');
    const p = ctx.principal;
    if (p.kind !== 'user') throw denied('only people have API tokens');
    const rows = await this.core.store.listTokens({ userId: p.id, kind: 'pat' });
    return rows.map((r) => ({ id: r.id, name: r.name, created_at: r.created_at, expires_at: r.expires_at, revoked_at: r.revoked_at, current: r.id === p.tokenId }));
  }

  async revokeApiToken(ctx: OpContext, id: string) {
    await this.core.authorize(ctx, 'token.manage');
    const p = ctx.principal;
    if (p.kind !== 'user') throw denied('only people have API tokens');
    const mine = (await this.core.store.listTokens({ userId: p.id, kind: 'pat' })).find((t) => t.id === id);
    if (!mine) throw notFound('token', id);
    await this.core.write(ctx, async (s, ev) => {
      await s.revokeToken(id, new Date().toISOString());
      ev.push({ action: 'token.revoke', target: `token:${id}` });
    });
    return { revoked: id };
  }

  async me(ctx: OpContext) {
    const p = ctx.principal;
    if (p.kind === 'user') {
      const u = await this.core.store.getUser(p.id);
      return { kind: 'user' as const, ...(u ? userView(u) : { id: p.id, email: p.email, role: p.role }) };
    }
    if (p.kind === 'agent') return { kind: 'agent' as const, id: p.id, name: p.name, session_vault: p.sessionVault };
    throw unauthenticated();
  }
}
