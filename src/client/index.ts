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
  location: string;
  version: string;
  started_at?: string;
  vaults: number;
  secrets: number;
  by_category: Record<string, number>;
  key: { kek_version: number; master_key_source: string };
  last_rotation: string | null;
  audit: { seq: number; hash: string; events: number };
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
  /** versions sealed under an older KEK (a count; older servers sent a boolean) */
  needs_rewrap: number | boolean;
}

export interface RewrapResult { rewrapped: number; remaining: number; kek_version: number; done: boolean }

export interface LoginResult { user: Record<string, unknown>; expires_at: string; cookie: string | null }
export interface ApiToken { id: string; name: string; token: string; expires_at: string | null; created_at: string }

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
  updateVault(name: string, body: { fallback?: string[]; description?: string | null }): Promise<Vault> {
    return this.request('PATCH', `/v1/vaults/${seg(name)}`, { body });
  }
  deleteVault(name: string): Promise<{ deleted: string; secrets: number }> { return this.request('DELETE', `/v1/vaults/${seg(name)}`); }

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
}
