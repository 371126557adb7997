/**
 * Typed HTTP client of the Latchkey control-plane API (JSON under /v1). Used by the CLI; usable
 * on its own. Every method returns the parsed JSON body; a non-2xx answer throws ApiError built
 * from the problem+json body, a connection failure throws ApiError with status 0.
 *
 * Error messages never carry the token or a secret value: they are built from the server's
 * problem body (which names fields, never values) or from the address and a network error code.
 */

export const DEFAULT_ADDR = 'http://127.0.0.1:7470';

// ---------------------------------------------------------------- types (the API's JSON shapes)

export interface Health { status: 'ok'; version: string }

export interface Status {
  backend: 'sqlite' | 'postgres';
  /** instance admins only */
  location?: string;
  version: string;
  started_at?: string;
  vaults: number;
  secrets: number;
  by_category: Record<string, number>;
  /** instance admins only */
  key?: { kek_version: number; master_key_source: string };
  last_rotation: string | null;
  /** instance admins only */
  audit?: { seq: number; hash: string; events: number };
}

export type Me =
  | { kind: 'user'; id: string; email: string | null; role: string; created_at?: string; [k: string]: unknown }
  | { kind: 'agent'; id: string; name: string; session_vault?: string | null; [k: string]: unknown };

export interface PresetField { key: string; label: string; optional?: boolean; pattern?: string; hint?: string }
export interface Preset { id: string; label: string; category: string; fields: PresetField[] }

export interface Vault {
  name: string;
  description: string | null;
  fallback: string[];
  passthrough: boolean;
  secrets?: number;
  created_at: string;
  updated_at: string;
}

export interface SecretMeta {
  name: string;
  vault: string;
  category: string;
  preset: string | null;
  description: string | null;
  tags: string[];
  version: number;
  created_at: string;
  updated_at: string;
  last_rotated_at: string | null;
}

export interface SecretVersion {
  version: number;
  current: boolean;
  created_at: string;
  created_by: string;
  kek_version: number;
  rotated_at: string | null;
}

export interface SecretDetail extends SecretMeta { versions: SecretVersion[] }
export interface SecretValue { name: string; vault: string; version: number; value: string }

export interface Page<T> { items: T[]; next_cursor: string | null }

export interface SecretListQuery { category?: string; prefix?: string; q?: string; limit?: number; cursor?: string }

export interface SecretCreate {
  name?: string;
  value?: string;
  preset?: string;
  fields?: Record<string, string>;
  category?: string;
  description?: string | null;
  tags?: string[];
}

export interface SecretPut { value: string; cas?: number; category?: string; description?: string | null; tags?: string[] }

export interface RotateAllResult {
  vault: string;
  rotated: number;
  failed: number;
  failed_names: string[];
  total: number;
  next_cursor: string | null;
  done: boolean;
}

export interface AuditEvent {
  seq: number;
  id: string;
  ts: string;
  actor: string;
  action: string;
  vault: string | null;
  target: string | null;
  outcome: string;
  ip: string | null;
  request_id: string | null;
  details: Record<string, unknown>;
  hash: string;
}

export interface AuditQuery {
  vault?: string;
  actor?: string;
  agent?: string;
  secret?: string;
  action?: string;
  outcome?: string;
  since?: string;
  until?: string;
  q?: string;
  limit?: number;
  cursor?: string;
}

export interface Checkpoint { seq: number; hash: string; ts: string; mac: string }

export interface VerifyResult {
  ok: boolean;
  checked: number;
  head: { seq: number; hash: string };
  anchor: { seq: number; hash: string };
  first_bad: { seq: number; reason: string } | null;
  checkpoint: { seq: number; ok: boolean; reason: string | null } | null;
}

export interface KeyStatus {
  master_key_source: string;
  kdf: string | null;
  kek_version: number;
  keks: { version: number; created_at: string; sealed_versions: number }[];
  /** what is sealed under an older KEK (a count; older servers sent a boolean) */
  needs_rewrap: number | boolean;
  /** the same by kind (newer servers) */
  needs_rewrap_by_kind?: { secret_versions: number; proxy_ca_key: number; proposals: number };
}

export interface RewrapResult { rewrapped: number; remaining: number; kek_version: number; done: boolean }

export interface ProxyInfo { enabled: boolean; port: number | null; host: string | null; ca_url: string }

export interface LoginResult { user: Record<string, unknown>; expires_at: string; cookie: string | null }
export interface ApiToken { id: string; name: string; token: string; expires_at: string | null; created_at: string }

// ---- access: people, members, agents, sessions, grants, services, proposals

export interface User { id: string; email: string | null; role: string; created_at: string }
export interface UserCreated extends User { token: string }

export interface Member { kind: 'user' | 'agent'; email?: string | null; name?: string; role: string; added_at?: string; vault?: string }

export interface Agent {
  name: string;
  status: string;
  description: string | null;
  created_by: string;
  created_at: string;
  revoked_at: string | null;
  vaults?: string[];
}
export interface AgentCreated extends Agent { token: string }

export interface AgentSession { token: string; id: string; agent: string; vault: string; expires_at: string }

export type GrantStatus = 'pending' | 'approved' | 'denied' | 'revoked' | 'expired';

export interface Grant {
  id: string;
  vault: string | null;
  agent: string | null;
  kind: 'secret' | 'service';
  secret?: string;
  service?: string;
  mode: 'use' | 'read';
  status: GrantStatus;
  reason: string | null;
  requested_by: string | null;
  decided_by: string | null;
  decided_at: string | null;
  decision_reason: string | null;
  expires_at: string | null;
  created_at: string;
  /** a request identical to a pending one returns that one */
  duplicate?: boolean;
}

export interface GrantCreate { agent: string; secret?: string; service?: string; mode?: 'use' | 'read'; expires?: string; reason?: string }
export interface GrantRequest { secret?: string; service?: string; mode?: 'use' | 'read'; reason: string }

export interface VendResult { name: string; vault: string; version: number; value: string; grant: { id: string; expires_at: string | null } }

export type AuthRule =
  | { type: 'bearer'; key: string }
  | { type: 'basic'; username_key: string; password_key?: string }
  | { type: 'header'; name: string; key: string; prefix?: string }
  | { type: 'query'; param: string; key: string }
  | { type: 'template'; headers: Record<string, string> };

export interface ServiceSpec {
  name: string;
  host: string;
  auth: AuthRule;
  methods?: string[];
  path_prefixes?: string[];
  quota_per_minute?: number | null;
  enabled?: boolean;
  description?: string | null;
}

export interface Service extends Required<Omit<ServiceSpec, 'description' | 'quota_per_minute'>> {
  quota_per_minute: number | null;
  description: string | null;
  created_at: string;
  updated_at: string;
}

export type ProposalStatus = 'pending' | 'approved' | 'rejected' | 'expired';

export interface ProposalSummary {
  id: string;
  vault: string;
  status: ProposalStatus;
  agent: string | null;
  message: string | null;
  services: string[];
  credentials: { action: 'set' | 'delete'; key: string }[];
  created_at: string;
  expires_at: string;
  approval_expires_at: string;
  decided_by: string | null;
  decided_at: string | null;
  decision_reason: string | null;
}

export interface ProposalServiceDiff extends ServiceSpec {
  change: 'add' | 'update' | 'unchanged';
  changes?: Record<string, { from: unknown; to: unknown }>;
}

export interface ProposalSlotView {
  action: 'set' | 'delete';
  key: string;
  description: string | null;
  obtain: string | null;
  obtain_instructions: string | null;
  has_value: boolean;
  exists: boolean;
  missing_value?: boolean;
}

export interface ProposalWarning { service: string; credential: string; new_host: string; current_hosts: string[]; message: string }

export interface ProposalView extends Omit<ProposalSummary, 'services' | 'credentials'> {
  services: ProposalServiceDiff[];
  credentials: ProposalSlotView[];
  warnings: ProposalWarning[];
}

export interface ProposalCreated { id: string; vault: string; status: 'pending'; approval_url: string; approval_expires_at: string; expires_at: string }

export interface ProposalApproved extends ProposalSummary {
  applied: { secrets_set: string[]; secrets_deleted: string[]; services: string[]; grants: string[] };
}

export interface ProposalCreate {
  message?: string;
  services?: ServiceSpec[];
  credentials?: { action: 'set' | 'delete'; key: string; description?: string | null; obtain?: string | null; obtain_instructions?: string | null; value?: string }[];
}

export interface Discovery {
  agent: string;
  vaults: { name: string; services: { name: string; host: string; path_prefix?: string }[]; credentials: string[]; grants: Record<string, unknown>[] }[];
  how_to: Record<string, string>;
}

// ---------------------------------------------------------------- errors

export interface ProblemBody {
  type?: string;
  title?: string;
  status?: number;
  code?: string;
  detail?: string;
  field?: string;
  request_id?: string;
  [k: string]: unknown;
}

/** A refused or failed API call. status 0 = the server could not be reached. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly detail: string;
  readonly field?: string;
  readonly requestId?: string;
  readonly body?: ProblemBody;

  constructor(status: number, code: string, detail: string, opts: { field?: string; requestId?: string; body?: ProblemBody } = {}) {
    super(detail);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.field = opts.field;
    this.requestId = opts.requestId;
    this.body = opts.body;
  }
}

// ---------------------------------------------------------------- the client

export interface ClientOptions {
  /** base URL of the control plane, e.g. http://127.0.0.1:7470 */
  addr?: string;
  /** bearer token (lk_pat_…, lk_agent_…, lk_sess_…) */
  token?: string | null;
  /** console session cookie value (used by login to mint an API token) */
  cookie?: string | null;
  /** per-request timeout in ms (default: none) */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

type Query = Record<string, string | number | boolean | undefined | null>;

const seg = (s: string) => encodeURIComponent(s);

function withQuery(path: string, q?: Query): string {
  if (!q) return path;
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `${path}?${s}` : path;
}

function networkReason(err: unknown): string {
  const e = err as { name?: string; code?: string; cause?: { code?: string; message?: string; errors?: { code?: string }[] } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return 'timed out';
  const code = e?.cause?.code ?? e?.cause?.errors?.[0]?.code ?? e?.code;
  return code ? String(code) : 'connection failed';
}

export class LatchkeyClient {
  readonly addr: string;
  private readonly token: string | null;
  private readonly cookie: string | null;
  private readonly timeoutMs?: number;
  private readonly fetchFn: typeof fetch;

  constructor(opts: ClientOptions = {}) {
    this.addr = (opts.addr || DEFAULT_ADDR).replace(/\/+$/, '');
    this.token = opts.token || null;
    this.cookie = opts.cookie || null;
    this.timeoutMs = opts.timeoutMs;
    this.fetchFn = opts.fetch ?? globalThis.fetch;
  }

  /** Whether a bearer token was configured. */
  get hasToken(): boolean {
    return this.token !== null;
  }

  /** One API call: JSON in, JSON out, problem+json → ApiError. */
  async request<T>(method: string, path: string, opts: { query?: Query; body?: unknown; raw?: false } = {}): Promise<T> {
    const res = await this.send(method, path, opts);
    return (await this.parse(res)) as T;
  }

  private async send(method: string, path: string, opts: { query?: Query; body?: unknown }): Promise<Response> {
    let url: URL;
    try {
      url = new URL(withQuery(path, opts.query), this.addr + '/');
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('protocol');
    } catch {
      throw new ApiError(0, 'bad_address', `the server address '${this.addr}' is not an http(s) URL (set --addr or LATCHKEY_ADDR)`);
    }
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    else if (this.cookie) headers.cookie = `lk_session=${this.cookie}`;
    let body: string | undefined;
    if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.body);
    }
    try {
      return await this.fetchFn(url, {
        method, headers, body,
        ...(this.timeoutMs ? { signal: AbortSignal.timeout(this.timeoutMs) } : {}),
      });
    } catch (err) {
      throw new ApiError(0, 'unreachable', `cannot reach the Latchkey server at ${this.addr} (${networkReason(err)}); is \`latchkey server\` running? (set --addr or LATCHKEY_ADDR)`);
    }
  }

  private async parse(res: Response): Promise<unknown> {
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      throw new ApiError(0, 'unreachable', `the connection to ${this.addr} broke while reading the answer (${networkReason(err)})`);
    }
    let json: unknown = undefined;
    if (text) {
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
    }
    if (res.ok) {
      if (json === undefined && text) throw new ApiError(res.status, 'bad_response', `the server at ${this.addr} answered ${res.status} with a body that is not JSON`);
      return json ?? null;
    }
    const p = (json && typeof json === 'object' ? json : {}) as ProblemBody;
    const code = typeof p.code === 'string' ? p.code : `http_${res.status}`;
    const detail = typeof p.detail === 'string' && p.detail ? p.detail : (typeof p.title === 'string' && p.title ? p.title : `HTTP ${res.status} from ${this.addr}`);
    throw new ApiError(res.status, code, detail, {
      field: typeof p.field === 'string' ? p.field : undefined,
      requestId: typeof p.request_id === 'string' ? p.request_id : (res.headers.get('x-request-id') ?? undefined),
      body: p,
    });
  }

  // ---- system
  health(): Promise<Health> { return this.request('GET', '/v1/health'); }
  status(): Promise<Status> { return this.request('GET', '/v1/status'); }
  me(): Promise<Me> { return this.request('GET', '/v1/auth/me'); }
  presets(): Promise<{ items: Preset[] }> { return this.request('GET', '/v1/presets'); }

  // ---- people's sessions and tokens
  /** Email + password login. Returns the user and the console session cookie value (to mint an API token). */
  async login(email: string, password: string): Promise<LoginResult> {
    const res = await this.send('POST', '/v1/auth/login', { body: { email, password } });
    const body = (await this.parse(res)) as { user: Record<string, unknown>; expires_at: string };
    const setCookies = typeof (res.headers as { getSetCookie?: () => string[] }).getSetCookie === 'function'
      ? (res.headers as unknown as { getSetCookie(): string[] }).getSetCookie()
      : [res.headers.get('set-cookie') ?? ''];
    let cookie: string | null = null;
    for (const c of setCookies) {
      const m = /(?:^|[;,]\s*)lk_session=([^;]+)/.exec(c);
      if (m) cookie = m[1]!;
    }
    return { ...body, cookie };
  }
  logout(): Promise<{ revoked: boolean }> { return this.request('POST', '/v1/auth/logout'); }
  createToken(name: string, ttl?: number): Promise<ApiToken> { return this.request('POST', '/v1/tokens', { body: { name, ...(ttl ? { ttl } : {}) } }); }

  // ---- vaults
  listVaults(): Promise<{ items: Vault[] }> { return this.request('GET', '/v1/vaults'); }
  createVault(body: { name: string; description?: string; fallback?: string[] }): Promise<Vault> { return this.request('POST', '/v1/vaults', { body }); }
  updateVault(name: string, body: { fallback?: string[]; description?: string | null; passthrough?: boolean }): Promise<Vault> {
    return this.request('PATCH', `/v1/vaults/${seg(name)}`, { body });
  }
  /** `expectSecrets`: only if the vault holds exactly that many secrets (else 409 vault_changed) */
  deleteVault(name: string, expectSecrets?: number): Promise<{ deleted: string; secrets: number }> {
    return this.request('DELETE', `/v1/vaults/${seg(name)}`, expectSecrets === undefined ? {} : { query: { expect_secrets: expectSecrets } });
  }

  // ---- secrets
  listSecrets(vault: string, q: SecretListQuery = {}): Promise<Page<SecretMeta>> {
    return this.request('GET', `/v1/vaults/${seg(vault)}/secrets`, { query: { ...q } });
  }
  createSecret(vault: string, body: SecretCreate): Promise<{ items: SecretMeta[] }> {
    return this.request('POST', `/v1/vaults/${seg(vault)}/secrets`, { body });
  }
  putSecret(vault: string, name: string, body: SecretPut): Promise<SecretMeta> {
    return this.request('PUT', `/v1/vaults/${seg(vault)}/secrets/${seg(name)}`, { body });
  }
  getSecret(vault: string, name: string): Promise<SecretDetail> {
    return this.request('GET', `/v1/vaults/${seg(vault)}/secrets/${seg(name)}`);
  }
  readSecret(vault: string, name: string, version?: number): Promise<SecretValue> {
    return this.request('GET', `/v1/vaults/${seg(vault)}/secrets/${seg(name)}/value`, { query: { version } });
  }
  deleteSecret(vault: string, name: string): Promise<{ deleted: string; vault: string; versions: number }> {
    return this.request('DELETE', `/v1/vaults/${seg(vault)}/secrets/${seg(name)}`);
  }
  rotateSecret(vault: string, name: string): Promise<SecretMeta> {
    return this.request('POST', `/v1/vaults/${seg(vault)}/secrets/${seg(name)}/rotate`);
  }
  rollbackSecret(vault: string, name: string, version: number): Promise<SecretMeta> {
    return this.request('POST', `/v1/vaults/${seg(vault)}/secrets/${seg(name)}/rollback`, { body: { version } });
  }
  migrateSecret(vault: string, name: string, to: string): Promise<SecretMeta & { from: string; versions: number; revoked_grants: number }> {
    return this.request('POST', `/v1/vaults/${seg(vault)}/secrets/${seg(name)}/migrate`, { body: { to } });
  }
  rotateAll(vault: string, body: { after?: string; limit?: number } = {}): Promise<RotateAllResult> {
    const b: { after?: string; limit?: number } = {};
    if (body.after) b.after = body.after;
    if (body.limit !== undefined) b.limit = body.limit;
    return this.request('POST', `/v1/vaults/${seg(vault)}/rotate-all`, { body: b });
  }

  // ---- audit
  audit(q: AuditQuery = {}): Promise<Page<AuditEvent>> { return this.request('GET', '/v1/audit', { query: { ...q } }); }
  verifyAudit(checkpoint?: Checkpoint | null): Promise<VerifyResult> {
    return checkpoint ? this.request('POST', '/v1/audit/verify', { body: { checkpoint } }) : this.request('GET', '/v1/audit/verify');
  }
  auditCheckpoint(): Promise<Checkpoint> { return this.request('GET', '/v1/audit/checkpoint'); }

  // ---- keys
  keys(): Promise<KeyStatus> { return this.request('GET', '/v1/keys'); }
  rotateKey(): Promise<{ kek_version: number }> { return this.request('POST', '/v1/keys/rotate'); }
  rewrap(body: { limit?: number } = {}): Promise<RewrapResult> { return this.request('POST', '/v1/keys/rewrap', { body }); }

  // ---- forward proxy
  /** The forward proxy's CA certificate (PEM text; no auth needed). */
  async caCertificate(): Promise<string> {
    const res = await this.send('GET', '/v1/ca.pem', {});
    if (!res.ok) await this.parse(res); // throws the problem as ApiError
    const text = await res.text();
    if (!text.includes('-----BEGIN CERTIFICATE-----')) throw new ApiError(res.status, 'bad_response', `the server at ${this.addr} did not answer with a PEM certificate`);
    return text;
  }
  /** Whether the forward proxy runs, and on which port. */
  proxyInfo(): Promise<ProxyInfo> { return this.request('GET', '/v1/proxy'); }

  // ---- people (instance)
  listUsers(): Promise<{ items: User[] }> { return this.request('GET', '/v1/users'); }
  createUser(body: { email: string; password?: string; role?: 'owner' | 'admin' | 'member' }): Promise<UserCreated> { return this.request('POST', '/v1/users', { body }); }
  setUserRole(email: string, role: 'owner' | 'admin' | 'member'): Promise<User> { return this.request('PATCH', `/v1/users/${seg(email)}`, { body: { role } }); }
  removeUser(email: string): Promise<{ removed: string }> { return this.request('DELETE', `/v1/users/${seg(email)}`); }

  // ---- vault membership
  listMembers(vault: string): Promise<{ items: Member[] }> { return this.request('GET', `/v1/vaults/${seg(vault)}/members`); }
  addMember(vault: string, body: { email: string; role?: 'admin' | 'member' }): Promise<Member> {
    return this.request('POST', `/v1/vaults/${seg(vault)}/members`, { body });
  }
  removeMember(vault: string, email: string): Promise<{ removed: string; vault: string }> {
    return this.request('DELETE', `/v1/vaults/${seg(vault)}/members/${seg(email)}`);
  }
  listVaultAgents(vault: string): Promise<{ items: Member[] }> { return this.request('GET', `/v1/vaults/${seg(vault)}/agents`); }
  addVaultAgent(vault: string, name: string): Promise<Member> { return this.request('POST', `/v1/vaults/${seg(vault)}/agents`, { body: { name } }); }
  removeVaultAgent(vault: string, name: string): Promise<{ removed: string; vault: string }> {
    return this.request('DELETE', `/v1/vaults/${seg(vault)}/agents/${seg(name)}`);
  }

  // ---- agents and sessions
  listAgents(): Promise<{ items: Agent[] }> { return this.request('GET', '/v1/agents'); }
  createAgent(body: { name: string; vaults?: string[]; description?: string }): Promise<AgentCreated> { return this.request('POST', '/v1/agents', { body }); }
  revokeAgent(name: string): Promise<{ revoked: string; tokens: number }> { return this.request('DELETE', `/v1/agents/${seg(name)}`); }
  rotateAgentToken(name: string): Promise<{ name: string; token: string }> { return this.request('POST', `/v1/agents/${seg(name)}/rotate-token`); }
  /** A short-lived session scoped to one vault (ttl in seconds); a person names the agent, an agent mints its own. */
  createSession(body: { vault: string; ttl?: number; agent?: string }): Promise<AgentSession> { return this.request('POST', '/v1/sessions', { body }); }

  // ---- grants
  listGrants(vault: string, q: { status?: GrantStatus; agent?: string } = {}): Promise<{ items: Grant[] }> {
    return this.request('GET', `/v1/vaults/${seg(vault)}/grants`, { query: { ...q } });
  }
  /** A person's direct grant (approved at once). */
  createGrant(vault: string, body: GrantCreate): Promise<Grant> { return this.request('POST', `/v1/vaults/${seg(vault)}/grants`, { body }); }
  /** An agent's access request (pending). */
  requestGrant(vault: string, body: GrantRequest): Promise<Grant> { return this.request('POST', `/v1/vaults/${seg(vault)}/grants`, { body }); }
  approveGrant(vault: string, id: string, body: { expires?: string } = {}): Promise<Grant> {
    return this.request('POST', `/v1/vaults/${seg(vault)}/grants/${seg(id)}/approve`, { body });
  }
  denyGrant(vault: string, id: string, body: { reason?: string } = {}): Promise<Grant> {
    return this.request('POST', `/v1/vaults/${seg(vault)}/grants/${seg(id)}/deny`, { body });
  }
  revokeGrant(vault: string, id: string): Promise<Grant> { return this.request('POST', `/v1/vaults/${seg(vault)}/grants/${seg(id)}/revoke`); }
  /** Vending (agent tokens): the raw value under an approved read grant; 403 `grant_required` with `grant_state` otherwise. */
  vendSecret(name: string, vault?: string): Promise<VendResult> { return this.request('GET', `/v1/agent/secrets/${seg(name)}`, { query: { vault } }); }
  discover(): Promise<Discovery> { return this.request('GET', '/v1/discover'); }

  // ---- services
  listServices(vault: string): Promise<{ items: Service[] }> { return this.request('GET', `/v1/vaults/${seg(vault)}/services`); }
  getService(vault: string, name: string): Promise<Service> { return this.request('GET', `/v1/vaults/${seg(vault)}/services/${seg(name)}`); }
  createService(vault: string, spec: ServiceSpec): Promise<Service> { return this.request('POST', `/v1/vaults/${seg(vault)}/services`, { body: spec }); }
  /** Create or replace (absent optional fields take their defaults). */
  putService(vault: string, spec: ServiceSpec): Promise<Service> {
    const { name, ...body } = spec;
    return this.request('PUT', `/v1/vaults/${seg(vault)}/services/${seg(name)}`, { body });
  }
  deleteService(vault: string, name: string): Promise<{ deleted: string; vault: string; revoked_grants: number }> {
    return this.request('DELETE', `/v1/vaults/${seg(vault)}/services/${seg(name)}`);
  }

  // ---- proposals
  listProposals(vault: string, q: { status?: ProposalStatus } = {}): Promise<{ items: ProposalSummary[] }> {
    return this.request('GET', `/v1/vaults/${seg(vault)}/proposals`, { query: { ...q } });
  }
  getProposal(vault: string, id: string): Promise<ProposalView> { return this.request('GET', `/v1/vaults/${seg(vault)}/proposals/${seg(id)}`); }
  createProposal(vault: string, body: ProposalCreate): Promise<ProposalCreated> { return this.request('POST', `/v1/vaults/${seg(vault)}/proposals`, { body }); }
  approveProposal(vault: string, id: string, credentials: Record<string, string> = {}): Promise<ProposalApproved> {
    return this.request('POST', `/v1/vaults/${seg(vault)}/proposals/${seg(id)}/approve`, { body: Object.keys(credentials).length ? { credentials } : {} });
  }
  rejectProposal(vault: string, id: string, body: { reason?: string } = {}): Promise<ProposalSummary> {
    return this.request('POST', `/v1/vaults/${seg(vault)}/proposals/${seg(id)}/reject`, { body });
  }
  proposalByApprovalToken(token: string): Promise<ProposalView> { return this.request('GET', '/v1/proposals/approval', { query: { token } }); }
}
