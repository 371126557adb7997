/**
 * Services (seed 002): how a credential is attached to outbound requests. A person (vault admin)
 * creates, replaces (PUT semantics) and deletes them; people and the vault's agents list them.
 * The spec is validated by the pure config library (matching.ts); here we add what needs the
 * store: every credential a rule references must exist in the vault or its fallback chain
 * (unless a proposal's `set` slot supplies it), and changes are audited `service.set` /
 * `service.delete` in the same transaction.
 */
import { newId } from '../crypto/tokens.js';
import type { ServiceRow, Store, VaultRow } from '../store/store.js';
import { UniqueViolation } from '../store/store.js';
import type { AuditInput } from './audit.js';
import type { Core } from './core.js';
import { conflict, invalid, notFound } from './errors.js';
import { credentialKeys, credentialRefs, formatHostMatcher, parseAuthRule, parseHostMatcher, parseServiceSpec, type AuthRule, type ServiceConfig } from './matching.js';
import type { OpContext } from './principal.js';
import { actorOf } from './principal.js';

export type ServiceView = ServiceConfig & { created_at: string; updated_at: string };

function parseJsonArray(t: string): string[] {
  try {
    const a = JSON.parse(t);
    return Array.isArray(a) ? a.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

/** A stored row as a service config (what the API shows and the proxy matches). */
export function serviceFromRow(r: ServiceRow): ServiceConfig {
  let auth: AuthRule;
  try {
    auth = parseAuthRule(JSON.parse(r.auth));
  } catch {
    // never produced by this code; a hand-edited row injects nothing
    auth = { type: 'template', headers: {} };
  }
  return {
    name: r.name, host: formatHostMatcher({ host: r.host, port: r.port, pathPrefix: r.path_prefix }), auth,
    methods: parseJsonArray(r.methods), path_prefixes: parseJsonArray(r.path_prefixes), quota_per_minute: r.quota_per_minute,
    enabled: r.enabled === 1, description: r.description,
  };
}

export function serviceView(r: ServiceRow): ServiceView {
  return { ...serviceFromRow(r), created_at: r.created_at, updated_at: r.updated_at };
}

export interface AgentServiceView {
  name: string;
  host: string;
  enabled: boolean;
}

function viewFor(ctx: OpContext, r: ServiceRow): ServiceView | AgentServiceView {
  const v = serviceView(r);
  return ctx.principal.kind === 'agent' ? { name: v.name, host: v.host, enabled: v.enabled } : v;
}

/** The columns a config is stored in (the matcher is split into host, port and path prefix). */
function columns(c: ServiceConfig): Pick<ServiceRow, 'host' | 'port' | 'path_prefix' | 'auth' | 'methods' | 'path_prefixes' | 'quota_per_minute' | 'enabled' | 'description'> {
  const m = parseHostMatcher(c.host);
  return {
    host: m.host, port: m.port, path_prefix: m.pathPrefix, auth: JSON.stringify(c.auth), methods: JSON.stringify(c.methods),
    path_prefixes: JSON.stringify(c.path_prefixes), quota_per_minute: c.quota_per_minute, enabled: c.enabled ? 1 : 0, description: c.description,
  };
}

/** The fields in which two configs differ (for the audit row and a proposal's diff). */
export function changedFields(a: ServiceConfig, b: ServiceConfig): Array<keyof ServiceConfig> {
  const keys: Array<keyof ServiceConfig> = ['host', 'auth', 'methods', 'path_prefixes', 'quota_per_minute', 'enabled', 'description'];
  return keys.filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
}

export class Services {
  constructor(private readonly core: Core) {}

  /** The vault's services. An agent sees each one's name, host and whether it is enabled (as /v1/discover shows), not its rules. */
  async list(ctx: OpContext, vaultName: string): Promise<Array<ServiceView | AgentServiceView>> {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'service.list', vault);
    return (await this.core.store.listServices(vault.id)).map((r) => viewFor(ctx, r));
  }

  async get(ctx: OpContext, vaultName: string, name: string): Promise<ServiceView | AgentServiceView> {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'service.list', vault, name);
    const r = await this.core.store.getService(vault.id, name);
    if (!r) throw notFound('service', name);
    return viewFor(ctx, r);
  }

  /** The enabled and disabled services of a vault as configs (for the proxy; no authorization, no audit). */
  async configs(vault: VaultRow): Promise<ServiceConfig[]> {
    return (await this.core.store.listServices(vault.id)).map(serviceFromRow);
  }

  /**
   * Every credential the rule references must resolve in the vault (or its fallback chain), or
   * be in `allowMissing` (a proposal's `set` slots). 400 naming the field (`auth.key`, ...).
   */
  async checkCredentials(vault: VaultRow, c: ServiceConfig, opts: { allowMissing?: ReadonlySet<string>; prefix?: string } = {}): Promise<void> {
    const seen = new Set<string>();
    for (const ref of credentialRefs(c.auth, opts.prefix ? `${opts.prefix}.auth` : 'auth')) {
      if (seen.has(ref.key)) continue;
      seen.add(ref.key);
      if (opts.allowMissing?.has(ref.key)) continue;
      if (!(await this.core.secrets.resolve(vault, ref.key))) {
        throw invalid(ref.field, `credential '${ref.key}' does not exist in vault '${vault.name}' or its fallback chain; store it first (or propose it as a credential slot)`, 'credential_not_found');
      }
    }
  }

  /**
   * Inside a caller's transaction: creates or replaces the service and pushes `service.set`.
   * `mustNotExist` makes an existing one a 409 (POST).
   */
  async setIn(s: Store, vault: VaultRow, c: ServiceConfig, ev: AuditInput[], opts: { mustNotExist?: boolean; details?: Record<string, unknown> } = {}): Promise<{ service: ServiceView; created: boolean }> {
    const now = new Date().toISOString();
    const cols = columns(c);
    const cur = await s.getService(vault.id, c.name);
    const details = { host: c.host, auth: c.auth.type, credentials: credentialKeys(c.auth), enabled: c.enabled, ...(opts.details ?? {}) };
    if (!cur) {
      const row: ServiceRow = { id: newId(), vault_id: vault.id, name: c.name, ...cols, created_at: now, updated_at: now };
      await s.insertService(row);
      ev.push({ action: 'service.set', vault: vault.name, target: c.name, details: { created: true, ...details } });
      return { service: serviceView(row), created: true };
    }
    if (opts.mustNotExist) throw conflict(`service '${c.name}' already exists in vault '${vault.name}'; use PUT to replace it`, 'service_exists', 'name');
    const changed = changedFields(serviceFromRow(cur), c);
    await s.updateService(cur.id, { ...cols, updated_at: now });
    ev.push({ action: 'service.set', vault: vault.name, target: c.name, details: { created: false, changed, ...details } });
    return { service: serviceView({ ...cur, ...cols, updated_at: now }), created: false };
  }

  private async save(ctx: OpContext, vaultName: string, input: unknown, opts: { name?: string; mustNotExist: boolean }): Promise<{ service: ServiceView; created: boolean }> {
    const vault = await this.core.vaults.require(vaultName);
    const target = opts.name ?? (typeof (input as { name?: unknown })?.name === 'string' ? (input as { name: string }).name : null);
    await this.core.authorize(ctx, 'service.manage', vault, target);
    const c = parseServiceSpec(input, { name: opts.name });
    await this.checkCredentials(vault, c);
    try {
      return await this.core.write(ctx, (s, ev) => this.setIn(s, vault, c, ev, { mustNotExist: opts.mustNotExist }));
    } catch (err) {
      if (err instanceof UniqueViolation) throw conflict(`service '${c.name}' was created concurrently; retry`, opts.mustNotExist ? 'service_exists' : 'concurrent_update', 'name');
      throw err;
    }
  }

  /** POST: creates a service; 409 if one of that name exists. */
  async create(ctx: OpContext, vaultName: string, input: unknown): Promise<ServiceView> {
    return (await this.save(ctx, vaultName, input, { mustNotExist: true })).service;
  }

  /** PUT: creates or replaces the named service (absent optional fields take their defaults). */
  set(ctx: OpContext, vaultName: string, name: string, input: unknown): Promise<{ service: ServiceView; created: boolean }> {
    return this.save(ctx, vaultName, input, { name, mustNotExist: false });
  }

  /** Deletes the service and revokes the grants to use it, so a later service of the same name starts with none. */
  async delete(ctx: OpContext, vaultName: string, name: string): Promise<{ deleted: string; vault: string; revoked_grants: number }> {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'service.manage', vault, name);
    return this.core.write(ctx, async (s, ev) => {
      const cur = await s.getService(vault.id, name);
      if (!cur) throw notFound('service', name);
      await s.deleteService(cur.id);
      ev.push({ action: 'service.delete', vault: vault.name, target: name, details: { host: formatHostMatcher({ host: cur.host, port: cur.port, pathPrefix: cur.path_prefix }) } });
      const revoked = await this.core.grants.revokeIn(s, ctx, vault, { kind: 'service', target: name }, 'service deleted', ev);
      return { deleted: name, vault: vault.name, revoked_grants: revoked };
    });
  }
}
