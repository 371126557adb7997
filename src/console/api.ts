/**
 * The console's only way to the server: the public JSON API under /v1, with the SameSite=Strict
 * session cookie (never a stored token). The first-run page passes the owner token explicitly,
 * once, in memory. A 401 on a cookie request means the session ended: the app goes back to login.
 */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
    readonly requestId?: string,
  ) {
    super(message);
  }
}

type QueryValue = string | number | boolean | null | undefined;

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, QueryValue>;
  /** a bearer token for this one call (first run only); otherwise the session cookie */
  token?: string;
  /** a 401 here is expected (login, approval page): do not end the session */
  quiet401?: boolean;
}

let onUnauthenticated: ((err: ApiError) => void) | null = null;

export function setUnauthenticatedHandler(fn: ((err: ApiError) => void) | null): void {
  onUnauthenticated = fn;
}

export function withQuery(path: string, query?: Record<string, QueryValue>): string {
  if (!query) return path;
  const sp = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') sp.set(k, String(v));
  const s = sp.toString();
  return s ? `${path}?${s}` : path;
}

export async function api<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let res: Response;
  try {
    res = await fetch(withQuery(path, opts.query), {
      method, headers, credentials: 'same-origin', cache: 'no-store', referrerPolicy: 'no-referrer',
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
  } catch {
    throw new ApiError(0, 'network', 'The server could not be reached. Check that it is running and try again.');
  }
  const text = await res.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const p = (data ?? {}) as { code?: string; detail?: string; field?: string; request_id?: string };
    const err = new ApiError(res.status, p.code ?? `http_${res.status}`, p.detail ?? (res.statusText || `HTTP ${res.status}`), p.field, p.request_id);
    if (res.status === 401 && !opts.token && !opts.quiet401) onUnauthenticated?.(err);
    throw err;
  }
  return data as T;
}

const enc = encodeURIComponent;

// ---- types (the API's JSON shapes)

export type InstanceRole = 'owner' | 'admin' | 'member';
export interface Me { kind: 'user'; id: string; email: string | null; role: InstanceRole; created_at?: string }
export interface User { id: string; email: string | null; role: InstanceRole; created_at: string }
export interface Vault { name: string; description: string | null; fallback: string[]; passthrough: boolean; secrets?: number; created_at: string; updated_at: string }

export const CATEGORIES = ['deploy_credential', 'skill_credential', 'cloud_storage', 'api_key', 'custom'] as const;
export type Category = (typeof CATEGORIES)[number];
export const CATEGORY_LABELS: Record<Category, string> = {
  deploy_credential: 'Deploy credential',
  skill_credential: 'Skill credential',
  cloud_storage: 'Cloud storage',
  api_key: 'API key',
  custom: 'Custom',
};
export const SECRET_NAME_RE = /^(?:[A-Z][A-Z0-9_]*|skill:[a-z0-9][a-z0-9_-]*:[a-z0-9][a-z0-9_]*)$/;

export interface SecretMeta {
  name: string; vault: string; category: Category; preset: string | null; description: string | null; tags: string[];
  version: number; created_at: string; updated_at: string; last_rotated_at: string | null;
}
export interface VersionMeta { version: number; current: boolean; created_at: string; created_by: string; kek_version: number; rotated_at: string | null }
export interface SecretDetail extends SecretMeta { versions: VersionMeta[] }
export interface Page<T> { items: T[]; next_cursor: string | null }
export interface PresetField { key: string; label: string; optional?: boolean; pattern?: string; hint?: string }
export interface Preset { id: string; label: string; category: Category; fields: PresetField[] }
export interface RotateAllResult { vault: string; rotated: number; failed: number; failed_names: string[]; total: number; next_cursor: string | null; done: boolean }

export interface AuditEvent {
  seq: number; id: string; ts: string; actor: string; action: string; vault: string | null; target: string | null;
  outcome: 'ok' | 'denied' | 'error'; ip: string | null; request_id: string | null; details: Record<string, unknown>; hash: string;
}
export interface VerifyResult {
  ok: boolean; checked: number; head: { seq: number; hash: string }; anchor: { seq: number; hash: string };
  first_bad: { seq: number; reason: string } | null; checkpoint: { seq: number; ok: boolean; reason: string | null } | null;
}
export const AUDIT_ACTIONS = [
  'secret.create', 'secret.update', 'secret.read', 'secret.vend', 'secret.rotate', 'secret.delete', 'secret.rollback',
  'vault.rotate_all', 'secret.migrate', 'proxy.request', 'grant.request', 'grant.approve', 'grant.deny', 'grant.revoke',
  'proposal.create', 'proposal.approve', 'proposal.reject', 'agent.create', 'agent.revoke', 'agent.rotate_token',
  'member.add', 'member.remove', 'key.rotate', 'key.rewrap', 'key.rekey', 'auth.login', 'auth.failure',
  'service.set', 'service.delete', 'vault.create', 'vault.delete', 'vault.update', 'audit.prune', 'user.update', 'token.create', 'token.revoke',
] as const;

export interface Status {
  backend: string; location?: string; version: string; started_at: string; vaults: number; secrets: number;
  by_category: Record<string, number>; key?: { kek_version: number; master_key_source: string };
  last_rotation: string | null; audit?: { seq: number; hash: string; events: number };
}
export interface KeyStatus {
  master_key_source: string; kdf: string | null; kek_version: number;
  keks: Array<{ version: number; created_at: string; sealed_versions: number }>; needs_rewrap: number;
}

export interface Agent { name: string; status: string; description: string | null; created_by: string; created_at: string; revoked_at: string | null; vaults?: string[] }
export type GrantStatus = 'pending' | 'approved' | 'denied' | 'revoked' | 'expired';
export interface Grant {
  id: string; vault: string | null; agent: string | null; kind: 'secret' | 'service'; secret?: string; service?: string; mode: 'use' | 'read';
  status: GrantStatus; reason: string | null; requested_by: string | null; decided_by: string | null; decided_at: string | null;
  decision_reason: string | null; expires_at: string | null; created_at: string;
}
export interface Member { kind: 'user' | 'agent'; email?: string | null; name?: string; role: string; added_at: string }

export type AuthRule =
  | { type: 'bearer'; key: string }
  | { type: 'basic'; username_key: string; password_key?: string }
  | { type: 'header'; name: string; key: string; prefix?: string }
  | { type: 'query'; param: string; key: string }
  | { type: 'template'; headers: Record<string, string> };
export interface ServiceSpec {
  name: string; host: string; auth: AuthRule; methods?: string[]; path_prefixes?: string[];
  quota_per_minute?: number | null; enabled?: boolean; description?: string | null;
}
export interface Service extends Required<Omit<ServiceSpec, 'description' | 'quota_per_minute'>> {
  description: string | null; quota_per_minute: number | null; created_at?: string; updated_at?: string;
}

export type ProposalStatus = 'pending' | 'approved' | 'rejected' | 'expired';
export interface ProposalSummary {
  id: string; vault: string; status: ProposalStatus; agent: string | null; message: string | null;
  services: string[]; credentials: Array<{ action: 'set' | 'delete'; key: string }>;
  created_at: string; expires_at: string; approval_expires_at: string;
  decided_by: string | null; decided_at: string | null; decision_reason: string | null;
}
export interface ProposalService extends Service { change: 'add' | 'update' | 'unchanged'; changes?: Record<string, { from: unknown; to: unknown }> }
export interface ProposalSlot {
  action: 'set' | 'delete'; key: string; description: string | null; obtain: string | null; obtain_instructions: string | null;
  has_value: boolean; exists: boolean; missing_value?: boolean;
}
export interface ProposalWarning { service: string; credential: string; new_host: string; current_hosts: string[]; message: string }
export interface ProposalView extends Omit<ProposalSummary, 'services' | 'credentials'> {
  services: ProposalService[]; credentials: ProposalSlot[]; warnings: ProposalWarning[];
}
export interface ApproveResult extends ProposalSummary { applied: { secrets_set: string[]; secrets_deleted: string[]; services: string[]; grants: string[] } }

// ---- endpoints

const v = (vault: string) => `/v1/vaults/${enc(vault)}`;

export const lk = {
  // people's sessions
  me: (token?: string, quiet = false) => api<Me>('GET', '/v1/auth/me', { token, quiet401: quiet }),
  login: (email: string, password: string) => api<{ user: User; expires_at: string }>('POST', '/v1/auth/login', { body: { email, password }, quiet401: true }),
  logout: () => api<{ revoked: boolean }>('POST', '/v1/auth/logout', { quiet401: true }),
  updateMe: (body: { email?: string; password?: string; current_password?: string }, token?: string) => api<User>('PATCH', '/v1/auth/me', { body, token }),

  // system
  status: () => api<Status>('GET', '/v1/status'),
  keys: () => api<KeyStatus>('GET', '/v1/keys'),
  presets: () => api<{ items: Preset[] }>('GET', '/v1/presets'),
  vaults: () => api<{ items: Vault[] }>('GET', '/v1/vaults'),

  // secrets
  secrets: (vault: string, q: { category?: string; q?: string; prefix?: string; cursor?: string; limit?: number }) =>
    api<Page<SecretMeta>>('GET', `${v(vault)}/secrets`, { query: q }),
  createSecret: (vault: string, body: Record<string, unknown>) => api<{ items: SecretMeta[] }>('POST', `${v(vault)}/secrets`, { body }),
  putSecret: (vault: string, name: string, body: { value: string; cas?: number }) => api<SecretMeta>('PUT', `${v(vault)}/secrets/${enc(name)}`, { body }),
  secret: (vault: string, name: string) => api<SecretDetail>('GET', `${v(vault)}/secrets/${enc(name)}`),
  /** the only call that brings a value to the browser: audited secret.read */
  revealSecret: (vault: string, name: string, version?: number) =>
    api<{ name: string; vault: string; version: number; value: string }>('GET', `${v(vault)}/secrets/${enc(name)}/value`, { query: { version } }),
  deleteSecret: (vault: string, name: string) => api<{ deleted: string }>('DELETE', `${v(vault)}/secrets/${enc(name)}`),
  rotateSecret: (vault: string, name: string) => api<SecretMeta>('POST', `${v(vault)}/secrets/${enc(name)}/rotate`),
  rollbackSecret: (vault: string, name: string, version: number) => api<SecretMeta>('POST', `${v(vault)}/secrets/${enc(name)}/rollback`, { body: { version } }),
  rotateAll: (vault: string, body: { after?: string; limit?: number }) => api<RotateAllResult>('POST', `${v(vault)}/rotate-all`, { body }),

  // audit
  audit: (q: Record<string, QueryValue>) => api<Page<AuditEvent>>('GET', '/v1/audit', { query: q }),
  verifyAudit: () => api<VerifyResult>('GET', '/v1/audit/verify'),

  // people and membership
  users: () => api<{ items: User[] }>('GET', '/v1/users'),
  createUser: (body: { email: string; password?: string; role?: InstanceRole }) => api<User & { token: string }>('POST', '/v1/users', { body }),
  setUserRole: (email: string, role: InstanceRole) => api<User>('PATCH', `/v1/users/${enc(email)}`, { body: { role } }),
  removeUser: (email: string) => api<{ removed: string }>('DELETE', `/v1/users/${enc(email)}`),
  members: (vault: string) => api<{ items: Member[] }>('GET', `${v(vault)}/members`),
  addMember: (vault: string, email: string, role: 'admin' | 'member') => api<Member>('POST', `${v(vault)}/members`, { body: { email, role } }),
  removeMember: (vault: string, email: string) => api<unknown>('DELETE', `${v(vault)}/members/${enc(email)}`),
  addVaultAgent: (vault: string, name: string) => api<unknown>('POST', `${v(vault)}/agents`, { body: { name } }),
  removeVaultAgent: (vault: string, name: string) => api<unknown>('DELETE', `${v(vault)}/agents/${enc(name)}`),

  // agents
  agents: () => api<{ items: Agent[] }>('GET', '/v1/agents'),
  createAgent: (body: { name: string; vaults?: string[]; description?: string }) => api<Agent & { token: string }>('POST', '/v1/agents', { body }),
  revokeAgent: (name: string) => api<{ revoked: string }>('DELETE', `/v1/agents/${enc(name)}`),
  rotateAgentToken: (name: string) => api<{ name: string; token: string }>('POST', `/v1/agents/${enc(name)}/rotate-token`),

  // grants
  grants: (vault: string, status?: GrantStatus) => api<{ items: Grant[] }>('GET', `${v(vault)}/grants`, { query: { status } }),
  grant: (vault: string, body: { agent: string; secret?: string; service?: string; mode: 'use' | 'read'; expires?: string; reason?: string }) =>
    api<Grant>('POST', `${v(vault)}/grants`, { body }),
  approveGrant: (vault: string, id: string, expires?: string) => api<Grant>('POST', `${v(vault)}/grants/${enc(id)}/approve`, { body: expires ? { expires } : {} }),
  denyGrant: (vault: string, id: string, reason?: string) => api<Grant>('POST', `${v(vault)}/grants/${enc(id)}/deny`, { body: reason ? { reason } : {} }),
  revokeGrant: (vault: string, id: string) => api<Grant>('POST', `${v(vault)}/grants/${enc(id)}/revoke`),

  // services
  services: (vault: string) => api<{ items: Service[] }>('GET', `${v(vault)}/services`),
  createService: (vault: string, spec: ServiceSpec) => api<Service>('POST', `${v(vault)}/services`, { body: spec }),
  putService: (vault: string, name: string, spec: Omit<ServiceSpec, 'name'>) => api<Service>('PUT', `${v(vault)}/services/${enc(name)}`, { body: spec }),
  deleteService: (vault: string, name: string) => api<unknown>('DELETE', `${v(vault)}/services/${enc(name)}`),

  // proposals
  proposals: (vault: string, status?: ProposalStatus) => api<{ items: ProposalSummary[] }>('GET', `${v(vault)}/proposals`, { query: { status } }),
  proposal: (vault: string, id: string) => api<ProposalView>('GET', `${v(vault)}/proposals/${enc(id)}`),
  proposalByToken: (token: string) => api<ProposalView>('GET', '/v1/proposals/approval', { query: { token }, quiet401: true }),
  approveProposal: (vault: string, id: string, credentials: Record<string, string>) =>
    api<ApproveResult>('POST', `${v(vault)}/proposals/${enc(id)}/approve`, { body: { credentials } }),
  rejectProposal: (vault: string, id: string, reason?: string) => api<ProposalSummary>('POST', `${v(vault)}/proposals/${enc(id)}/reject`, { body: reason ? { reason } : {} }),
};
