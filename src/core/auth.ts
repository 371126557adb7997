/**
 * Authentication: bearer tokens (stored only as keyed hashes) to principals; people and their
 * API tokens. The seam for agents, sessions and approval links (the access model) is `authenticate`.
 */
import { mintToken, newId, tokenKind, type TokenKind } from '../crypto/tokens.js';
import type { Store, TokenRow, UserRow } from '../store/store.js';
import type { Core } from './core.js';
import { unauthenticated } from './errors.js';
import type { InstanceRole, OpContext, Principal } from './principal.js';

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
    if (row.revoked_at) throw unauthenticated('the token was revoked', 'token_revoked');
    if (row.expires_at && row.expires_at <= new Date().toISOString()) throw unauthenticated('the token has expired', 'token_expired');
    if (kind === 'pat' && row.user_id) {
      const u = found.user;
      if (!u || u.disabled) throw unauthenticated('the account is disabled', 'account_disabled');
      return { kind: 'user', id: u.id, email: u.email, role: u.role as InstanceRole, tokenId: row.id };
    }
    throw unauthenticated('this kind of token is not accepted here', 'wrong_token_kind');
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
