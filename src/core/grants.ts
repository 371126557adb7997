/**
 * Grants (seed 003): an agent asks for `use` or `read` of a secret or a service with a reason;
 * a person approves (optionally until an expiry), denies or revokes; a person may also grant
 * directly. Vending returns a raw value only under an approved, unexpired `read` grant, checked
 * on every request (no cache), so revocation and expiry act on the very next one.
 */
import { newId } from '../crypto/tokens.js';
import type { AuditInput } from './audit.js';
import { GRANT_PAGE, type GrantRow, type Store, type VaultRow } from '../store/store.js';
import type { Core } from './core.js';
import { denied, invalid, LatchkeyError, notFound } from './errors.js';
import { checkSecretName } from './names.js';
import { isoTime } from './time.js';
import type { OpContext } from './principal.js';
import { actorOf } from './principal.js';

export type GrantState = 'none' | 'pending' | 'approved' | 'denied' | 'revoked' | 'expired';

export function grantState(g: GrantRow, now = new Date().toISOString()): GrantState {
  if (g.status === 'approved' && g.expires_at && g.expires_at <= now) return 'expired';
  return g.status as GrantState;
}

/** `1h`, `30m`, `7d`, `45s` from now, or an ISO time; must be in the future. */
export function parseExpiry(v: unknown, field = 'expires'): string | null {
  if (v === undefined || v === null || v === '') return null;
  if (typeof v !== 'string') throw invalid(field, 'must be a duration like 1h, 30m, 7d or an ISO time');
  const m = /^(\d{1,6})([smhd])$/.exec(v);
  let t: number;
  if (m) t = Date.now() + Number(m[1]) * { s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[m[2] as 's']!;
  else {
    t = Date.parse(v);
    if (Number.isNaN(t)) throw invalid(field, 'must be a duration like 1h, 30m, 7d or an ISO time');
  }
  if (t <= Date.now()) throw invalid(field, 'must be in the future');
  return isoTime(t, field);
}

function checkMode(m: unknown, kind: 'secret' | 'service'): 'use' | 'read' {
  const mode = m ?? (kind === 'secret' ? 'read' : 'use');
  if (mode !== 'use' && mode !== 'read') throw invalid('mode', 'must be use or read');
  if (kind === 'service' && mode === 'read') throw invalid('mode', 'a service is used through the proxy; read applies to secrets');
  return mode;
}

function target(input: { secret?: unknown; service?: unknown }): { kind: 'secret' | 'service'; target: string } {
  if ((input.secret === undefined) === (input.service === undefined)) throw invalid('secret', 'give exactly one of secret or service');
  if (input.secret !== undefined) return { kind: 'secret', target: checkSecretName(input.secret, 'secret') };
  if (typeof input.service !== 'string' || !/^[a-z0-9][a-z0-9_.-]{0,62}$/.test(input.service)) throw invalid('service', 'must be a service name');
  return { kind: 'service', target: input.service };
}

export const HOW_TO_REQUEST =
  'ask for access: POST /v1/vaults/<vault>/grants {"secret": "<NAME>", "mode": "read", "reason": "..."} (CLI: latchkey grant request --secret NAME --mode read --reason "...") and wait for a person to approve';

export class Grants {
  constructor(private readonly core: Core) {}

  async view(g: GrantRow, vault?: VaultRow) {
    const v = vault ?? (await this.core.store.getVaultById(g.vault_id));
    const a = await this.core.store.getAgent(g.agent_id);
    return {
      id: g.id, vault: v?.name ?? null, agent: a?.name ?? null, [g.kind]: g.target, kind: g.kind, mode: g.mode, status: grantState(g),
      reason: g.reason, requested_by: g.requested_by, decided_by: g.decided_by, decided_at: g.decided_at, decision_reason: g.decision_reason,
      expires_at: g.expires_at, created_at: g.created_at,
    };
  }

  private async targetExists(vault: VaultRow, kind: 'secret' | 'service', name: string): Promise<void> {
    if (kind === 'service') {
      if (!(await this.core.store.getService(vault.id, name))) throw notFound('service', name);
    } else if (!(await this.core.secrets.resolve(vault, name))) throw notFound('secret', name);
  }

  /** An agent's access request (pending). A repeat returns the pending request, or the live grant, that already answers it. */
  async request(ctx: OpContext, vaultName: string, input: { secret?: unknown; service?: unknown; mode?: unknown; reason?: unknown }) {
    const vault = await this.core.vaults.require(vaultName);
    const t = target(input);
    await this.core.authorize(ctx, 'grant.request', vault, t.target);
    const p = ctx.principal;
    if (p.kind !== 'agent') throw denied('only agents request access; people grant it directly');
    const mode = checkMode(input.mode, t.kind);
    if (typeof input.reason !== 'string' || !input.reason.trim() || input.reason.length > 1000) throw invalid('reason', 'is required (at most 1000 characters): say why the agent needs it');
    await this.targetExists(vault, t.kind, t.target);
    const row: GrantRow = {
      id: newId(), vault_id: vault.id, agent_id: p.id, kind: t.kind, target: t.target, mode, status: 'pending', reason: input.reason,
      requested_by: actorOf(p), decided_by: null, decided_at: null, decision_reason: null, expires_at: null, created_at: new Date().toISOString(),
    };
    // the agent's requests in this vault queue on its membership row: two identical requests at
    // once make one pending grant (PostgreSQL replicas too), the second sees the first
    const existing = await this.core.write(ctx, async (s, ev) => {
      // removed from the vault meanwhile: nothing to ask for here
      if (!(await s.lockMember(vault.id, 'agent', p.id))) throw denied(`agent ${p.name} is not a member of vault ${vault.name}`);
      const pending = (await s.listGrants({ vaultId: vault.id, agentId: p.id, kind: t.kind, target: t.target, status: 'pending' })).find((g) => g.mode === mode);
      if (pending) return pending;
      // already granted (and not expired): that grant is the answer, nothing to ask for
      const live = await s.findActiveGrant(vault.id, p.id, t.kind, t.target, [mode], new Date().toISOString());
      if (live) return live;
      await s.insertGrant(row);
      ev.push({ action: 'grant.request', vault: vault.name, target: `${t.kind}:${t.target}`, details: { grant: row.id, mode, agent: p.name } });
      return null;
    });
    if (existing) return { ...(await this.view(existing, vault)), duplicate: true };
    return this.view(row, vault);
  }

  /** A person grants directly (approved at once). */
  async create(ctx: OpContext, vaultName: string, input: { agent?: unknown; secret?: unknown; service?: unknown; mode?: unknown; expires?: unknown; reason?: unknown }) {
    const vault = await this.core.vaults.require(vaultName);
    const t = target(input);
    await this.core.authorize(ctx, 'grant.create', vault, t.target);
    if (typeof input.agent !== 'string') throw invalid('agent', 'is required');
    const agent = await this.core.access.requireActiveAgent(input.agent, 'agent');
    if (!(await this.core.store.getMemberRole(vault.id, 'agent', agent.id))) throw invalid('agent', `agent ${agent.name} is not a member of vault ${vault.name}; add it first`);
    const mode = checkMode(input.mode, t.kind);
    const expires_at = parseExpiry(input.expires);
    await this.targetExists(vault, t.kind, t.target);
    const now = new Date().toISOString();
    const row: GrantRow = {
      id: newId(), vault_id: vault.id, agent_id: agent.id, kind: t.kind, target: t.target, mode, status: 'approved',
      reason: typeof input.reason === 'string' ? input.reason.slice(0, 1000) : null, requested_by: actorOf(ctx.principal),
      decided_by: actorOf(ctx.principal), decided_at: now, decision_reason: null, expires_at, created_at: now,
    };
    await this.core.write(ctx, async (s, ev) => {
      await s.insertGrant(row);
      ev.push({ action: 'grant.approve', vault: vault.name, target: `${t.kind}:${t.target}`, details: { grant: row.id, mode, agent: agent.name, direct: true, expires_at } });
    });
    return this.view(row, vault);
  }

  /**
   * Inside a caller's transaction: revokes every approved or pending grant in `vault` that matches
   * (a deleted service or secret, an agent leaving the vault), one `grant.revoke` each, so nothing
   * made later under the same name, or a return to the vault, inherits them. Returns how many.
   */
  async revokeIn(s: Store, ctx: OpContext, vault: VaultRow, match: { kind?: 'secret' | 'service'; target?: string; agentId?: string }, reason: string, ev: AuditInput[]): Promise<number> {
    const now = new Date().toISOString();
    let revoked = 0;
    for (const status of ['approved', 'pending']) {
      // a page at a time: each pass revokes what it lists, so the next lists the rest
      for (;;) {
        const page = await s.listGrants({ vaultId: vault.id, status, ...match });
        let moved = 0;
        for (const g of page) {
          if (!(await s.transitionGrant(g.id, ['approved', 'pending'], { status: 'revoked', decided_by: actorOf(ctx.principal), decided_at: now, decision_reason: reason }))) continue;
          const a = await s.getAgent(g.agent_id);
          ev.push({ action: 'grant.revoke', vault: vault.name, target: `${g.kind}:${g.target}`, details: { grant: g.id, mode: g.mode, agent: a?.name, reason } });
          moved++;
        }
        revoked += moved;
        if (page.length < GRANT_PAGE || !moved) break;
      }
    }
    return revoked;
  }

  async list(ctx: OpContext, vaultName: string, filter: { status?: string; agent?: string }) {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'grant.list', vault);
    const p = ctx.principal;
    let agentId: string | undefined;
    if (p.kind === 'agent') agentId = p.id; // agents see their own grants only
    else if (filter.agent) agentId = (await this.core.store.getAgentByName(filter.agent))?.id ?? '-';
    const now = new Date().toISOString();
    const rows = await this.core.store.listGrants({ vaultId: vault.id, agentId, status: filter.status === 'expired' ? 'approved' : filter.status });
    const out = [];
    for (const g of rows) {
      if (filter.status && grantState(g, now) !== filter.status) continue;
      out.push(await this.view(g, vault));
    }
    return out;
  }

  private async decide(ctx: OpContext, vaultName: string, id: string, from: string[], patch: Partial<GrantRow>, action: 'grant.approve' | 'grant.deny' | 'grant.revoke') {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'grant.decide', vault, id);
    const g = await this.core.store.getGrant(id);
    if (!g || g.vault_id !== vault.id) throw notFound('grant', id);
    const now = new Date().toISOString();
    const full = { ...patch, decided_by: actorOf(ctx.principal), decided_at: now };
    await this.core.write(ctx, async (s, ev) => {
      if (!(await s.transitionGrant(id, from, full))) {
        const cur = await s.getGrant(id);
        throw new LatchkeyError(409, 'grant_state', `grant ${id} is ${cur ? grantState(cur) : 'gone'}; it cannot be ${patch.status}`);
      }
      const a = await s.getAgent(g.agent_id);
      ev.push({ action, vault: vault.name, target: `${g.kind}:${g.target}`, details: { grant: id, mode: g.mode, agent: a?.name, ...(patch.expires_at ? { expires_at: patch.expires_at } : {}), ...(patch.decision_reason ? { reason: patch.decision_reason } : {}) } });
    });
    return this.view({ ...g, ...full }, vault);
  }

  approve(ctx: OpContext, vaultName: string, id: string, input: { expires?: unknown } = {}) {
    return this.decide(ctx, vaultName, id, ['pending'], { status: 'approved', expires_at: parseExpiry(input.expires) }, 'grant.approve');
  }

  deny(ctx: OpContext, vaultName: string, id: string, input: { reason?: unknown } = {}) {
    if (input.reason !== undefined && (typeof input.reason !== 'string' || input.reason.length > 1000)) throw invalid('reason', 'must be at most 1000 characters');
    return this.decide(ctx, vaultName, id, ['pending'], { status: 'denied', decision_reason: (input.reason as string | undefined) ?? null }, 'grant.deny');
  }

  revoke(ctx: OpContext, vaultName: string, id: string) {
    return this.decide(ctx, vaultName, id, ['approved', 'pending'], { status: 'revoked' }, 'grant.revoke');
  }

  /** The vault an agent means: the one named, else its session's, else `default`. */
  async agentVault(ctx: OpContext, vaultName?: string): Promise<VaultRow> {
    const p = ctx.principal;
    const name = vaultName || (p.kind === 'agent' && p.sessionVault) || 'default';
    return this.core.vaults.require(name);
  }

  /** Vending: the raw value under an approved, unexpired `read` grant; otherwise 403 saying the grant's state. */
  async vend(ctx: OpContext, name: string, vaultName?: string) {
    const p = ctx.principal;
    if (p.kind !== 'agent') {
      // the policy admits no person here: the refusal is audited like any other
      await this.core.authorize(ctx, 'secret.vend', null, name);
      throw denied('vending is for agents; people read values with GET /v1/vaults/:vault/secrets/:name/value');
    }
    checkSecretName(name, 'name');
    const vault = await this.agentVault(ctx, vaultName);
    await this.core.authorize(ctx, 'secret.vend', vault, name);
    const now = new Date().toISOString();
    const grant = await this.core.store.findActiveGrant(vault.id, p.id, 'secret', name, ['read'], now);
    if (!grant) {
      const latest = (await this.core.store.listGrants({ vaultId: vault.id, agentId: p.id, kind: 'secret', target: name })).find((g) => g.mode === 'read');
      const state: GrantState = latest ? grantState(latest, now) : 'none';
      await this.core.record(ctx, { action: 'secret.vend', vault: vault.name, target: name, outcome: 'denied', details: { grant_state: state } });
      throw denied(`no approved read grant for ${name} in vault ${vault.name} (grant: ${state}); ${HOW_TO_REQUEST}`, 'grant_required', {
        grant_state: state, ...(latest ? { grant_id: latest.id } : {}), how_to_request: { method: 'POST', path: `/v1/vaults/${vault.name}/grants`, body: { secret: name, mode: 'read', reason: '...' } },
      });
    }
    const found = await this.core.secrets.resolve(vault, name);
    if (!found) {
      // granted, but the secret is gone: every vend is on the record, this one too
      await this.core.record(ctx, { action: 'secret.vend', vault: vault.name, target: name, outcome: 'error', details: { grant: grant.id, reason: 'secret_not_found' } });
      throw notFound('secret', name);
    }
    const plain = await this.core.secrets.open(found.vault.id, found.row.version);
    await this.core.record(ctx, {
      action: 'secret.vend', vault: found.vault.name, target: name,
      details: { grant: grant.id, version: found.row.version.version, ...(found.vault.id !== vault.id ? { requested_vault: vault.name } : {}) },
    });
    return { name, vault: found.vault.name, version: found.row.version.version, value: plain.toString('utf8'), grant: { id: grant.id, expires_at: grant.expires_at } };
  }

  /** What an agent can see: its vaults, their services (name, host), credential names, its grants, and how to ask for more. */
  async discover(ctx: OpContext) {
    await this.core.authorize(ctx, 'discover');
    const p = ctx.principal;
    if (p.kind !== 'agent') throw denied('discovery is for agents');
    const memberships = await this.core.store.listMemberships('agent', p.id);
    const now = new Date().toISOString();
    const vaults = [];
    for (const m of memberships) {
      const v = await this.core.store.getVaultById(m.vault_id);
      if (!v || (p.sessionVault && p.sessionVault !== v.name)) continue;
      const services = (await this.core.store.listServices(v.id)).filter((s) => s.enabled).map((s) => ({ name: s.name, host: s.host, ...(s.path_prefix ? { path_prefix: s.path_prefix } : {}) }));
      const credentials: string[] = [];
      for (let after: string | undefined; ;) {
        const page = await this.core.store.listSecrets({ vaultId: v.id, after, limit: 1000 });
        credentials.push(...page.map((s) => s.name));
        if (page.length < 1000) break;
        after = page[page.length - 1]!.name;
      }
      const grants = (await this.core.store.listGrants({ vaultId: v.id, agentId: p.id })).map((g) => ({ id: g.id, [g.kind]: g.target, mode: g.mode, status: grantState(g, now), expires_at: g.expires_at }));
      vaults.push({ name: v.name, services, credentials, grants });
    }
    return {
      agent: p.name,
      vaults,
      how_to: {
        request_access: 'POST /v1/vaults/<vault>/grants {"secret"|"service": "<name>", "mode": "use"|"read", "reason": "..."}',
        propose: 'POST /v1/vaults/<vault>/proposals {"message": "...", "services": [...], "credentials": [{"action": "set", "key": "NAME", "description": "..."}]}',
        read_value: 'GET /v1/agent/secrets/<NAME>?vault=<vault> (needs an approved read grant)',
        proxy: 'base URL http://<latchkey>/proxy/<vault>/<service>/ with your token as the API key (needs an approved use grant)',
      },
    };
  }
}
