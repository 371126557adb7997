/**
 * The injection proxy's access decision, without HTTP: agent token -> agent and its role in the
 * vault (one query), a `use` grant for the service (checked on EVERY request, no cache, so a
 * revocation acts on the very next request, inside open tunnels too), the per-minute quota
 * (a counter in the database, so replicas share it), and the credential values resolved through
 * the vault's fallback chain.
 *
 * Base-URL mode names the service: token, agent, vault, membership, the service row and the
 * agent's grant on it come back in ONE query. Forward mode picks the service by host from a list
 * cached per vault for SERVICE_TTL_MS, then confirms the pick with the fresh row and grant (one
 * query) and re-matches on a miss or a change: a service's current config and grant always decide.
 */
import { tokenKind } from '../crypto/tokens.js';
import type { GrantRow, ServiceRow, VaultRow } from '../store/store.js';
import type { Core } from './core.js';
import { LatchkeyError } from './errors.js';
import { grantState, type GrantState } from './grants.js';
import { credentialKeys, type ServiceConfig } from './matching.js';
import { decide } from './policy.js';
import type { Principal } from './principal.js';
import { serviceFromRow } from './services.js';

export const SERVICE_TTL_MS = 1000;
const QUOTA_WINDOW_MS = 60_000;

export type AgentPrincipal = Extract<Principal, { kind: 'agent' }>;

export interface ProxyCaller {
  principal: AgentPrincipal;
  vault: VaultRow;
}

/** A service as stored right now, with the agent's `use` grant on it (null = none). */
export interface FreshService {
  config: ServiceConfig;
  grantId: string | null;
}

/** The sealed rows of a service's credentials, found through the vault's fallback chain (nothing decrypted). */
export interface LocatedCredentials {
  /** secret name -> the vault that served it (the fallback chain may) */
  servedBy: Record<string, string>;
  /** the identities of the sealed rows (vault|secret|version|KEK version), in key order: what the values depend on */
  rows: string[];
  sealed: Array<{ key: string; vaultId: string; version: Parameters<Core['secrets']['open']>[1] }>;
}

const e401 = (code: string, message: string) => new LatchkeyError(401, code, message);

export const PROXY_TOKEN_HINT = 'send your agent token (lk_agent_... or a session lk_sess_...) as Authorization: Bearer <token>, x-api-key: <token> or X-Latchkey-Token: <token>';

export function howToRequestUse(vault: string, service: string): string {
  return `ask for access: POST /v1/vaults/${vault}/grants {"service": "${service}", "mode": "use", "reason": "..."} (CLI: latchkey grant request --service ${service} --reason "...") and wait for a person to approve`;
}

export function howToPropose(vault: string, host: string): string {
  return `no service of vault ${vault} covers ${host}; propose one: POST /v1/vaults/${vault}/proposals {"message": "...", "services": [{"name": "...", "host": "${host}", "auth": {"type": "bearer", "key": "NAME"}}], "credentials": [{"action": "set", "key": "NAME", "description": "..."}]} and wait for a person to approve`;
}

export class ProxyAccess {
  private cache = new Map<string, { at: number; services: ServiceConfig[] }>();
  private lastPrune = 0;

  constructor(private readonly core: Core) {}

  /**
   * The agent behind a token, and the vault it may use. 401 for a missing, malformed, unknown,
   * revoked or expired token or a revoked agent; 403 for a person's token, a session of another
   * vault, or an agent that is not a member; 404 for an unknown vault.
   */
  async authenticate(token: string | null, vaultName: string, serviceName: string | null = null): Promise<ProxyCaller & { service: FreshService | null }> {
    if (!token) throw e401('token_required', `a Latchkey agent token is required; ${PROXY_TOKEN_HINT}`);
    const kind = tokenKind(token);
    if (!kind) throw e401('invalid_token', 'the token is not a Latchkey token');
    if (kind === 'appr') throw e401('wrong_token_kind', 'an approval-link token only opens its approval page');
    const found = await this.core.store.getProxyAuth(this.core.keyring.tokenHash(token), vaultName, serviceName, new Date().toISOString());
    const t = found?.token;
    if (!found || !t || t.kind !== kind) throw e401('invalid_token', 'the token is not valid');
    if (t.revoked_at) throw e401('token_revoked', 'the token was revoked');
    if (t.expires_at && t.expires_at <= new Date().toISOString()) throw e401('token_expired', 'the token has expired');
    if (kind === 'pat') throw new LatchkeyError(403, 'agents_only', 'the proxy injects credentials for agents; a person\'s API token is not accepted here (create an agent: latchkey agent create NAME)');
    const a = found.agent;
    if (!a || a.status !== 'active') throw e401('agent_revoked', 'the agent was revoked');
    const vault = found.vault;
    if (!vault) throw new LatchkeyError(404, 'vault_not_found', `vault '${vaultName}' was not found`);
    if (kind === 'sess' && t.vault_id !== vault.id) throw new LatchkeyError(403, 'session_vault_mismatch', `this session token is scoped to another vault, not ${vault.name}`);
    const principal: Principal = { kind: 'agent', id: a.id, name: a.name, tokenId: t.id, sessionVault: kind === 'sess' ? vault.name : null };
    // the one policy decides (the fused query above found the agent's role in this vault)
    if (!decide(principal, 'proxy.use', found.role ? 'proxy' : null).allow) {
      throw new LatchkeyError(403, 'not_a_member', `agent ${a.name} is not a member of vault ${vault.name}; a vault admin adds it (latchkey agent create ${a.name} --vault ${vault.name})`);
    }
    return {
      principal, vault,
      service: found.service ? { config: this.configOf(found.service), grantId: found.grantId } : null,
    };
  }

  private parsed = new Map<string, ServiceConfig>();
  private byRow = new WeakMap<ServiceRow, ServiceConfig>();

  /**
   * A row as a config, parsed once per distinct row: memoized by the row object (the embedded
   * store's cache hands out the same frozen row until it changes) and else by its whole content.
   * Not by (id, updated_at): two updates within one millisecond share a timestamp, and the second
   * would have been served the first one's config (its auth rule, host, enabled flag).
   */
  configOf(row: ServiceRow): ServiceConfig {
    let c = this.byRow.get(row);
    if (c) return c;
    const k = JSON.stringify(row);
    c = this.parsed.get(k);
    if (!c) {
      c = serviceFromRow(row);
      if (this.parsed.size > 10_000) this.parsed.clear();
      this.parsed.set(k, c);
    }
    this.byRow.set(row, c);
    return c;
  }

  /** The named service of the caller's vault as stored now, with the caller's `use` grant on it. */
  async freshService(caller: ProxyCaller, name: string): Promise<FreshService | null> {
    const r = await this.core.store.getProxyService(caller.vault.id, caller.principal.id, name, new Date().toISOString());
    return r ? { config: this.configOf(r.service), grantId: r.grantId } : null;
  }

  /** The vault's services (enabled or not), parsed; cached for SERVICE_TTL_MS. */
  async services(vault: VaultRow, refresh = false): Promise<ServiceConfig[]> {
    const now = Date.now();
    const c = this.cache.get(vault.id);
    if (c && !refresh && now - c.at < SERVICE_TTL_MS) return c.services;
    const services = (await this.core.store.listServices(vault.id)).map((r) => this.configOf(r));
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(vault.id, { at: now, services });
    return services;
  }

  /** Forgets cached services (all vaults, or one). */
  invalidate(vaultId?: string): void {
    if (vaultId) this.cache.delete(vaultId);
    else this.cache.clear();
  }

  /**
   * The grant that lets the agent use the service: an approved, unexpired `use` grant on the
   * service (`serviceGrantId` when already looked up: a string, or null for none), or else `use`
   * grants on every credential the service injects. Null when there is none.
   */
  async findUseGrant(caller: ProxyCaller, service: ServiceConfig, serviceGrantId?: string | null): Promise<string | GrantRow[] | null> {
    const now = new Date().toISOString();
    if (serviceGrantId) return serviceGrantId;
    if (serviceGrantId === undefined) {
      const g = await this.core.store.findActiveGrant(caller.vault.id, caller.principal.id, 'service', service.name, ['use'], now);
      if (g) return g.id;
    }
    const keys = credentialKeys(service.auth);
    if (!keys.length) return null;
    const out: GrantRow[] = [];
    for (const k of keys) {
      const sg = await this.core.store.findActiveGrant(caller.vault.id, caller.principal.id, 'secret', k, ['use'], now);
      if (!sg) return null;
      out.push(sg);
    }
    return out;
  }

  /** Like findUseGrant (`serviceGrantId`: the service grant already looked up, null = none), but a missing grant is a 403 saying the grant's state and how to ask. */
  async requireUseGrant(caller: ProxyCaller, service: ServiceConfig, serviceGrantId?: string | null): Promise<string[]> {
    const g = await this.findUseGrant(caller, service, serviceGrantId);
    if (g) return Array.isArray(g) ? g.map((x) => x.id) : [g];
    const latest = (await this.core.store.listGrants({ vaultId: caller.vault.id, agentId: caller.principal.id, kind: 'service', target: service.name })).find((x) => x.mode === 'use');
    const state: GrantState = latest ? grantState(latest) : 'none';
    throw new LatchkeyError(403, 'grant_required', `agent ${caller.principal.name} has no approved use grant for service ${service.name} in vault ${caller.vault.name} (grant: ${state})`, undefined, {
      grant_state: state, ...(latest ? { grant_id: latest.id } : {}), hint: howToRequestUse(caller.vault.name, service.name),
    });
  }

  /** Counts the request against the service's per-minute quota; 429 (with retry_after seconds) beyond it. */
  async chargeQuota(caller: ProxyCaller, service: ServiceConfig): Promise<void> {
    const limit = service.quota_per_minute;
    if (!limit) return;
    const now = Date.now();
    const win = Math.floor(now / QUOTA_WINDOW_MS);
    const n = await this.core.store.bumpProxyQuota(caller.vault.id, service.name, caller.principal.id, win);
    if (now - this.lastPrune > QUOTA_WINDOW_MS) {
      this.lastPrune = now;
      this.core.store.pruneProxyQuota(win - 1).catch(() => {});
    }
    if (n > limit) {
      const retry = Math.max(1, Math.ceil(((win + 1) * QUOTA_WINDOW_MS - now) / 1000));
      throw new LatchkeyError(429, 'quota_exceeded', `service ${service.name} allows ${limit} requests per minute per agent; retry in ${retry} s`, undefined, { retry_after: retry });
    }
  }

  /**
   * The sealed rows of the credentials a service injects, through the vault's fallback chain; 502
   * naming a missing one. Looked up on every request, so a deleted or changed secret shows at once;
   * `rows` identifies exactly the sealed versions the values would come from.
   */
  async locateCredentials(vault: VaultRow, service: ServiceConfig): Promise<LocatedCredentials> {
    const servedBy: Record<string, string> = {};
    const rows: string[] = [];
    const sealed: LocatedCredentials['sealed'] = [];
    for (const key of credentialKeys(service.auth)) {
      // the vault's own secret by the one-query hot path; the fallback chain only when it is absent
      const direct = await this.core.store.getVaultSecretValueRow(vault.name, key);
      const found = direct ? { vault: direct.vault, row: direct } : await this.core.secrets.resolve(vault, key);
      if (!found) {
        throw new LatchkeyError(502, 'credential_not_found', `credential '${key}' of service ${service.name} is not in vault ${vault.name} or its fallback chain; a person stores it (latchkey secret set ${key}=... --vault ${vault.name})`);
      }
      const v = found.row.version;
      servedBy[key] = found.vault.name;
      rows.push(`${found.vault.id}|${found.row.secret.id}|${v.version}|${v.kek_version}`);
      sealed.push({ key, vaultId: found.vault.id, version: v });
    }
    return { servedBy, rows, sealed };
  }

  /** Decrypts located credentials: secret name -> value. */
  async openCredentials(located: LocatedCredentials): Promise<Map<string, string>> {
    const values = new Map<string, string>();
    for (const { key, vaultId, version } of located.sealed) {
      const plain = await this.core.secrets.open(vaultId, version);
      try {
        values.set(key, plain.toString('utf8'));
      } finally {
        plain.fill(0);
      }
    }
    return values;
  }
}
