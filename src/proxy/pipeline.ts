/**
 * The injection proxy's pipeline, shared by the base-URL mode (control plane, `/proxy/...`) and
 * the forward mode (CONNECT / MITM, absolute-form http://). For every request:
 *
 *   audit healthy? -> agent token -> vault membership -> service match (host, port, method, path)
 *   -> `use` grant (EVERY request: revocation acts inside open tunnels) -> quota -> credentials
 *   through the fallback chain -> injection (replacing the client's header) -> egress-guarded
 *   upstream call (undici, dialing exactly the checked address) -> response streamed back with
 *   every injected value redacted -> `proxy.request` audited in a batch after the response.
 *
 * Bodies stream both ways with no buffering and no size cap. Every error the proxy itself makes
 * carries `X-Latchkey-Error: <code>`; no error, log line or audit row holds a credential value.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex, Readable, Transform } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { brotliDecompressSync, createBrotliDecompress, createGunzip, createInflate, gunzipSync, inflateSync } from 'node:zlib';
import type { Agent, Dispatcher } from 'undici';
import type { Core } from '../core/core.js';
import { LatchkeyError } from '../core/errors.js';
import { applyAuth, credentialKeys, hostMatches, matchService, parseHostMatcher, type HostMatcher, type Injection, type ServiceConfig } from '../core/matching.js';
import type { OpContext, Principal } from '../core/principal.js';
import { howToPropose, howToRequestUse, PROXY_TOKEN_HINT, ProxyAccess, type LocatedCredentials, type ProxyCaller } from '../core/proxy-access.js';
import { AuditBatch } from './audit-batch.js';
import { egressErrorOf, EgressDeniedError, EgressGuard, guardedConnector, type Resolver } from './egress.js';
import { clientResponseHeaders, endWith, pathForAudit, rawHead, upstreamRequestHeaders, withoutToken, withQuery } from './headers.js';
import { needlesFor, Redactor } from './redact.js';

export interface ProxyTarget {
  mode: 'base' | 'forward';
  token: string | null;
  vault: string;
  /** base-URL mode: the service named in the URL */
  service?: string;
  scheme: 'https' | 'http';
  /**
   * forward mode: the host asked for. Base-URL mode: ignored for a service with an exact host
   * (the service's host is used); for a wildcard service (`*.github.com`), the concrete host the
   * client chose (header `X-Latchkey-Host`), which must match the wildcard.
   */
  host: string;
  /** forward mode: the port asked for; base-URL mode: ignored (the service's port, else 443) */
  port: number;
  /** path + query as sent upstream */
  path: string;
  clientIp: string;
  /**
   * Headers every response to this request carries (lower-case names), under the upstream's own:
   * the control plane's security headers in base-URL mode. Given with the response head rather
   * than set on the response beforehand, so Node writes the head in one pass.
   */
  responseHeaders?: Readonly<Record<string, string>>;
}

export interface PinoLike {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface PipelineOptions {
  /** LATCHKEY_EGRESS_ALLOW: comma list of CIDRs or host names */
  egressAllow?: string;
  /** LATCHKEY_UPSTREAM_CA: path of a PEM file of extra CAs trusted for upstream TLS */
  upstreamCa?: string;
  log?: PinoLike;
  /** tests: a DNS stand-in */
  resolver?: Resolver;
  /** audit batching (defaults: every 10 ms or 200 events) */
  auditIntervalMs?: number;
  auditMaxBatch?: number;
  /** upstream timeouts (ms): connect 10 s, response headers 300 s, idle body 300 s */
  connectTimeoutMs?: number;
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
}

/** An error the proxy itself answers, rendered as problem+json with `X-Latchkey-Error: <code>`. */
export class ProxyError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly hint?: string,
    readonly extra?: Record<string, unknown>,
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.name = 'ProxyError';
  }
}

const NOOP_LOG: PinoLike = { info() {}, warn() {}, error() {}, debug() {} };

/** Reads a PEM bundle and returns its certificates (throws naming the file). */
export function readPemBundle(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`LATCHKEY_UPSTREAM_CA: cannot read ${path}: ${(err as { code?: string }).code ?? (err as Error).message}`);
  }
  const certs = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (!certs.length) throw new Error(`LATCHKEY_UPSTREAM_CA: ${path} holds no PEM certificate`);
  return certs;
}

/** What a request resolved to, before going upstream. */
interface Prepared {
  caller: ProxyCaller;
  service: ServiceConfig | null;
  scheme: 'https' | 'http';
  host: string;
  port: number;
  path: string;
  injection: Injection;
  redactor: Redactor;
  credentials: string[];
  servedBy: Record<string, string>;
}

/** Facts for the audit row, filled in as the request goes. */
interface AuditFacts {
  principal: Principal;
  vault: string;
  service: string | null;
  host: string;
  port: number;
  credentials: string[];
  servedBy: Record<string, string>;
  passthrough?: boolean;
}

const EMPTY_REDACTOR = new Redactor([]);
/** A DNS host name as X-Latchkey-Host may give it (lower case by then). */
const HOST_NAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
/** How long what a service's credentials become on the wire (injection, redactor) is reused. */
const CREDENTIAL_TTL_MS = 30_000;

/** The request's path for the audit row: never the agent's token, wherever the client put it. */
function auditPath(t: ProxyTarget): string {
  if (!t.token || t.token.length < 8) return t.path;
  if (t.path.includes(t.token)) return t.path.split(t.token).join('[agent-token]');
  // percent-encoded: withoutToken refuses or drops it; the row keeps no trace of its form either
  return withoutToken(t.path, t.token) === t.path ? t.path : '/[a path carrying the agent token]';
}

function hostForUrl(h: string): string {
  return h.includes(':') && !h.startsWith('[') ? `[${h}]` : h;
}

function lkError(err: unknown, mode: 'base' | 'forward'): ProxyError | null {
  if (err instanceof ProxyError) return err;
  if (err instanceof LatchkeyError) {
    const extra = { ...(err.extra ?? {}) };
    const hint = typeof extra.hint === 'string' ? extra.hint : undefined;
    delete extra.hint;
    const headers: Record<string, string> = {};
    if (typeof extra.retry_after === 'number') headers['retry-after'] = String(extra.retry_after);
    if (err.status === 401) {
      return new ProxyError(mode === 'forward' ? 407 : 401, err.code, err.message, mode === 'forward' ? 'set HTTPS_PROXY=http://<agent token>:<vault>@<latchkey host>:<proxy port> (latchkey run does this)' : PROXY_TOKEN_HINT, extra);
    }
    return new ProxyError(err.status, err.code, err.message, hint, extra, headers);
  }
  return null;
}

/** How often connections without requests (WebSockets, passthrough tunnels) are checked again. */
const WATCH_MS = 1000;

function disabledService(s: { name: string }, vault: string): ProxyError {
  return new ProxyError(403, 'service_disabled', `service ${s.name} is disabled in vault ${vault}`, 'a vault admin enables it (PUT /v1/vaults/<vault>/services/<name> with "enabled": true)');
}

export class ProxyPipeline {
  readonly access: ProxyAccess;
  readonly guard: EgressGuard;
  readonly audit: AuditBatch;
  /** undici is loaded on the first proxied request, not at start-up (~0.15 s of module loading) */
  private dispatcher: Agent | null = null;
  private dispatcherP: Promise<Agent> | null = null;
  private log: PinoLike;
  private matchers = new Map<string, HostMatcher | null>();
  private closed = false;
  private readonly tlsCa: string[] | undefined;
  private readonly open = new Set<{ destroy(): void }>();

  constructor(readonly core: Core, readonly opts: PipelineOptions = {}) {
    this.log = opts.log ?? NOOP_LOG;
    this.access = new ProxyAccess(core);
    this.guard = new EgressGuard(opts.egressAllow, opts.resolver);
    this.tlsCa = opts.upstreamCa ? [...rootCertificates, ...readPemBundle(opts.upstreamCa)] : undefined;
    this.audit = new AuditBatch(core, {
      intervalMs: opts.auditIntervalMs, maxBatch: opts.auditMaxBatch,
      onError: (err, queued) => this.log.error({ code: (err as { code?: string })?.code, type: (err as Error)?.name, queued }, 'proxy audit batch could not be written; refusing new proxy requests until it is'),
    });
  }

  private agent(): Agent | Promise<Agent> {
    if (this.dispatcher) return this.dispatcher;
    this.dispatcherP ??= import('undici').then(({ Agent: UndiciAgent, buildConnector }) => {
      const opts = this.opts;
      this.dispatcher = new UndiciAgent({
        connect: guardedConnector(buildConnector, this.guard, { ca: this.tlsCa, timeout: opts.connectTimeoutMs ?? 10_000 }),
        keepAliveTimeout: 10_000,
        headersTimeout: opts.headersTimeoutMs ?? 300_000,
        bodyTimeout: opts.bodyTimeoutMs ?? 300_000,
      });
      return this.dispatcher;
    });
    return this.dispatcherP;
  }

  setLogger(log: PinoLike): void {
    this.log = log;
  }

  private matcher(host: string): HostMatcher | null {
    let m = this.matchers.get(host);
    if (m === undefined) {
      try {
        m = parseHostMatcher(host);
      } catch {
        m = null;
      }
      if (this.matchers.size > 10_000) this.matchers.clear();
      this.matchers.set(host, m);
    }
    return m;
  }

  private derived = new WeakMap<ServiceConfig, Map<string, { injection: Injection; redactor: Redactor; until: number }>>();

  /**
   * What a service's credentials become on the wire: the injected headers and query parameters,
   * and the redactor for the response (each value and its encodings). Derived once per (service
   * config, sealed credential rows) and reused for at most CREDENTIAL_TTL_MS: the rows are looked
   * up on every request, and a new version, a re-created or deleted secret, a moved KEK or a
   * changed service is a different key, so nothing stale is ever injected. The values are
   * decrypted only when an entry is made; an entry holds their forms, so none is kept longer.
   */
  private async wireFor(service: ServiceConfig, located: LocatedCredentials): Promise<{ injection: Injection; redactor: Redactor }> {
    let m = this.derived.get(service);
    if (!m) this.derived.set(service, (m = new Map()));
    const k = located.rows.join('\n');
    const hit = m.get(k);
    if (hit && hit.until > Date.now()) return hit;
    const values = await this.access.openCredentials(located);
    const injection = applyAuth(service.auth, values);
    Object.freeze(injection.headers);
    Object.freeze(injection.query);
    const extra = Object.values(injection.headers).flatMap((v) => {
      const b = /^Basic\s+(\S+)$/i.exec(v);
      return b ? [b[1]!, b[1]!.replace(/=+$/, '')] : [];
    });
    const now = Date.now();
    const e = { injection, redactor: new Redactor(needlesFor(values.values(), extra)), until: now + CREDENTIAL_TTL_MS };
    for (const [key, x] of m) if (x.until <= now) m.delete(key);
    if (m.size >= 64) m.clear();
    m.set(k, e);
    return e;
  }

  private ctx(principal: Principal, ip: string, requestId: string): OpContext {
    return { principal, ip: ip || null, requestId };
  }

  private checkHealthy(): void {
    if (this.closed) throw new ProxyError(503, 'proxy_closing', 'the proxy is shutting down');
    if (!this.audit.healthy) throw new ProxyError(503, 'audit_unavailable', 'the audit log cannot take proxy events right now; the proxy refuses requests until it can (retry shortly)', undefined, undefined, { 'retry-after': '1' });
  }

  private async authenticate(token: string | null, vault: string, mode: 'base' | 'forward', service: string | null = null) {
    try {
      return await this.access.authenticate(token, vault, service);
    } catch (err) {
      throw lkError(err, mode) ?? err;
    }
  }

  // ---- forward mode's CONNECT

  /**
   * Authorizes agent + vault for a host at CONNECT time. `match`: a granted, enabled service
   * matches the host (intercept, then every inner request goes through handle()). `passthrough`:
   * nothing granted matches but the vault allows blind tunnels. Otherwise throws ProxyError
   * 407 (token), 403 (no grant / no service / not a member), 503 (audit down).
   */
  async checkTunnel(token: string | null, vault: string, host: string, port: number, clientIp: string): Promise<{ match: boolean; passthrough: boolean }> {
    const requestId = randomUUID();
    const facts: AuditFacts = { principal: { kind: 'anonymous' }, vault, service: null, host, port, credentials: [], servedBy: {} };
    const started = performance.now();
    try {
      this.checkHealthy();
      const caller = await this.authenticate(token, vault, 'forward');
      facts.principal = caller.principal;
      const byHost = (list: ServiceConfig[]) => list.filter((s) => {
        const m = s.enabled ? this.matcher(s.host) : null;
        return !!m && hostMatches(m, host, port);
      });
      let candidates = byHost(await this.access.services(caller.vault));
      if (!candidates.length) candidates = byHost(await this.access.services(caller.vault, true));
      for (const c of candidates) {
        // the cached list only proposes; the service as stored now and the grant decide
        const fresh = await this.access.freshService(caller, c.name);
        if (!fresh || !byHost([fresh.config]).length) continue;
        try {
          if (await this.access.findUseGrant(caller, fresh.config, fresh.grantId)) return { match: true, passthrough: false };
        } catch (err) {
          throw lkError(err, 'forward') ?? err;
        }
      }
      if (caller.vault.passthrough === 1) {
        facts.passthrough = true;
        this.record(facts, 'CONNECT', `${host}:${port}`, 200, started, requestId, clientIp, null);
        return { match: false, passthrough: true };
      }
      if (candidates.length) {
        const s = candidates[0]!;
        throw new ProxyError(403, 'grant_required', `agent ${caller.principal.name} has no approved use grant for service ${s.name} (host ${host}) in vault ${caller.vault.name}`, howToRequestUse(caller.vault.name, s.name));
      }
      throw new ProxyError(403, 'no_service', `no service of vault ${caller.vault.name} matches ${host}:${port}, and the vault does not allow blind passthrough`, howToPropose(caller.vault.name, host));
    } catch (err) {
      const pe = lkError(err, 'forward') ?? new ProxyError(500, 'internal', 'internal proxy error');
      if (pe.code !== 'audit_unavailable' && pe.code !== 'proxy_closing' && (token || pe.status !== 407)) {
        this.record(facts, 'CONNECT', `${host}:${port}`, pe.status, started, requestId, clientIp, pe.code);
      }
      if (!(err instanceof ProxyError) && !(err instanceof LatchkeyError)) this.log.error({ type: (err as Error)?.name, code: (err as { code?: string })?.code }, 'proxy tunnel check failed');
      throw pe;
    }
  }

  /**
   * For a blind passthrough tunnel: a TCP connection to an egress-checked address of host:port.
   * Throws ProxyError 403 `egress_denied` or 502 `upstream_error`.
   */
  async dialChecked(host: string, port: number): Promise<Socket> {
    let addrs;
    try {
      addrs = await this.guard.resolve(host);
    } catch (err) {
      throw this.upstreamError(err, host);
    }
    let last: unknown = null;
    for (const a of addrs) {
      try {
        return await new Promise<Socket>((resolve, reject) => {
          const s = netConnect({ host: a.address, port });
          s.once('connect', () => {
            s.off('error', reject);
            resolve(s);
          });
          s.once('error', reject);
          s.setTimeout(this.opts.connectTimeoutMs ?? 10_000, () => s.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })));
        }).then((s) => {
          s.setTimeout(0);
          return s;
        });
      } catch (err) {
        last = err;
      }
    }
    throw this.upstreamError(last, host);
  }

  // ---- one request

  /** Everything up to the upstream call: throws ProxyError (or LatchkeyError) for any refusal. */
  private async prepare(t: ProxyTarget, method: string, facts: AuditFacts): Promise<Prepared> {
    this.checkHealthy();
    const caller = await this.authenticate(t.token, t.vault, t.mode, t.mode === 'base' ? (t.service ?? '') : null);
    facts.principal = caller.principal;
    const upPath = withoutToken(t.path, t.token);
    if (upPath === null) throw new ProxyError(400, 'token_in_url', 'the agent token is in the URL path; it never goes upstream', PROXY_TOKEN_HINT);
    let service: ServiceConfig | null = null;
    let grantId: string | null = null;
    let match: ReturnType<typeof matchService<ServiceConfig>> = null;
    let host: string;
    let port: number;
    let scheme: 'https' | 'http';
    if (t.mode === 'base') {
      const fresh = caller.service;
      if (!fresh) throw new ProxyError(404, 'service_not_found', `vault ${caller.vault.name} has no service '${t.service ?? ''}'`, howToPropose(caller.vault.name, '<host>'));
      const s = fresh.config;
      facts.service = s.name;
      if (!s.enabled) throw disabledService(s, caller.vault.name);
      const m = this.matcher(s.host);
      if (!m) throw new ProxyError(502, 'service_invalid', `service ${s.name} has a host matcher this server cannot use`);
      if (m.wildcard) {
        const h = (t.host || '').toLowerCase();
        if (!h) throw new ProxyError(400, 'host_required', `service ${s.name} covers ${m.host}; say which host with the header X-Latchkey-Host: <host>`);
        // a plain DNS name only: `evil%2ecom.github.com` or a full-width dot would match the one-label
        // wildcard here and become another name once a URL parser decodes it
        if (!HOST_NAME.test(h)) throw new ProxyError(400, 'host_invalid', `X-Latchkey-Host must be a plain host name (letters, digits, hyphens and dots), not ${JSON.stringify(h.slice(0, 80))}`);
        if (!hostMatches({ ...m, port: null }, h, null)) throw new ProxyError(403, 'host_not_allowed', `${h} is not covered by service ${s.name} (${m.host})`);
        host = h;
      } else host = m.host;
      port = m.port ?? 443;
      scheme = 'https';
      facts.host = host;
      facts.port = port;
      match = matchService([s], host, port, t.path, method);
      if (!match) {
        // the base URL named the service; only its own path prefix can fail to match
        throw new ProxyError(403, 'path_not_allowed', `service ${s.name} covers ${s.host}; the path ${pathForAudit(t.path).split('?')[0]} is outside it`, howToPropose(caller.vault.name, host));
      }
      grantId = fresh.grantId;
    } else {
      host = t.host.toLowerCase();
      port = t.port;
      scheme = t.scheme;
      facts.host = host;
      facts.port = port;
      // the cached list proposes a service; the row as stored now (and its grant) decides
      for (let attempt = 0; attempt < 2; attempt++) {
        const list = await this.access.services(caller.vault, attempt > 0);
        const m = matchService(list, host, port, t.path, method);
        if (!m) {
          match = null;
          continue;
        }
        const fresh = await this.access.freshService(caller, m.service.name);
        const fm = fresh ? matchService([fresh.config], host, port, t.path, method) : null;
        if (fresh && fm && fresh.config === m.service) {
          match = fm;
          grantId = fresh.grantId;
          break;
        }
        match = fm;
        grantId = fresh?.grantId ?? null;
      }
      if (!match) {
        if (caller.vault.passthrough === 1) {
          // blind passthrough allowed: forwarded with nothing injected
          facts.passthrough = true;
          return { caller, service: null, scheme, host, port, path: upPath, injection: { headers: {}, query: {} }, redactor: EMPTY_REDACTOR, credentials: [], servedBy: {} };
        }
        throw new ProxyError(403, 'no_service', `no service of vault ${caller.vault.name} matches ${host}:${port}`, howToPropose(caller.vault.name, host));
      }
    }
    service = match.service;
    facts.service = service.name;
    if (match.reason === 'service_disabled') throw disabledService(service, caller.vault.name);
    if (!match.allowed) {
      const what = match.reason === 'method_not_allowed'
        ? `method ${method} is not allowed (allowed: ${service.methods.join(', ')})`
        : `path ${pathForAudit(t.path).split('?')[0]} is not allowed (allowed: ${service.path_prefixes.join(', ')})`;
      throw new ProxyError(403, match.reason ?? 'not_allowed', `service ${service.name}: ${what}`, `propose a change to the service: POST /v1/vaults/${caller.vault.name}/proposals {"services": [{"name": "${service.name}", ...}]}`);
    }
    await this.access.requireUseGrant(caller, service, grantId);
    await this.access.chargeQuota(caller, service);
    facts.credentials = credentialKeys(service.auth);
    const located = await this.access.locateCredentials(caller.vault, service);
    facts.servedBy = located.servedBy;
    const { injection, redactor } = await this.wireFor(service, located);
    return { caller, service, scheme, host, port, path: withQuery(upPath, injection.query), injection, redactor, credentials: facts.credentials, servedBy: located.servedBy };
  }

  /**
   * Proxies one HTTP request end to end. Never throws: a refusal or failure becomes an error
   * response with `X-Latchkey-Error`, or (once the response has started) a reset stream.
   */
  async handle(t: ProxyTarget, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const requestId = randomUUID();
    const method = (req.method ?? 'GET').toUpperCase();
    const facts: AuditFacts = { principal: { kind: 'anonymous' }, vault: t.vault, service: t.service ?? null, host: t.host, port: t.port, credentials: [], servedBy: {} };
    let p: Prepared;
    try {
      p = await this.prepare(t, method, facts);
    } catch (err) {
      const pe = this.refusal(err, t.mode);
      this.sendError(res, pe, requestId, t.responseHeaders);
      if (pe.code !== 'audit_unavailable' && pe.code !== 'proxy_closing' && (t.token || (pe.status !== 401 && pe.status !== 407))) {
        this.record(facts, method, auditPath(t), pe.status, started, requestId, t.clientIp, pe.code);
      }
      req.resume();
      return;
    }
    await this.forward(t, req, res, p, facts, method, started, requestId);
  }

  private refusal(err: unknown, mode: 'base' | 'forward'): ProxyError {
    const pe = lkError(err, mode);
    if (pe) return pe;
    this.log.error({ type: (err as Error)?.name, code: (err as { code?: string })?.code, stack: (err as Error)?.stack?.split('\n').slice(1, 4).join(' | ') }, 'proxy request failed');
    return new ProxyError(500, 'internal', 'internal proxy error; the request id identifies it in the server log');
  }

  private upstreamError(err: unknown, host: string): ProxyError {
    const eg = egressErrorOf(err);
    if (eg instanceof EgressDeniedError) return new ProxyError(403, 'egress_denied', eg.message, 'the proxy refuses private, loopback, link-local and metadata addresses; an operator can allow a range with LATCHKEY_EGRESS_ALLOW');
    if (eg) return new ProxyError(502, 'upstream_error', `the upstream host ${host} could not be resolved`);
    const e = err as { code?: string; name?: string; cause?: { code?: string } };
    const code = e?.code ?? e?.cause?.code ?? e?.name ?? 'error';
    if (code === 'UND_ERR_HEADERS_TIMEOUT') return new ProxyError(504, 'upstream_timeout', `the upstream ${host} did not answer in time`);
    if (/CERT|SELF_SIGNED|UNABLE_TO|ERR_TLS|HOSTNAME/i.test(code)) {
      return new ProxyError(502, 'upstream_error', `TLS with the upstream ${host} failed (${code}): its certificate is not trusted or does not match`, 'an operator can trust an extra CA with LATCHKEY_UPSTREAM_CA=<pem file>');
    }
    return new ProxyError(502, 'upstream_error', `the upstream ${host} could not be reached (${code})`);
  }

  private async forward(t: ProxyTarget, req: IncomingMessage, res: ServerResponse, p: Prepared, facts: AuditFacts, method: string, started: number, requestId: string): Promise<void> {
    // undici takes an EventEmitter as its abort signal: cheaper than an AbortController per request
    const signal = new EventEmitter();
    let aborted = false;
    const abort = () => {
      if (aborted) return;
      aborted = true;
      signal.emit('abort');
    };
    let status = 0;
    let errorCode: string | null = null;
    let headersAt = 0;
    const onClose = () => {
      if (!res.writableFinished) abort();
    };
    res.on('close', onClose);
    req.on('error', abort);
    const cl = req.headers['content-length'];
    const hasBody = cl !== undefined ? cl !== '0' : req.headers['transfer-encoding'] !== undefined;
    const headers = upstreamRequestHeaders(req.rawHeaders, { token: t.token, inject: p.injection.headers });
    if (!p.redactor.empty) setHeader(headers, 'accept-encoding', 'identity');
    let up: Dispatcher.ResponseData;
    try {
      up = await (this.dispatcher ?? (await this.agent())).request({
        origin: `${p.scheme}://${hostForUrl(p.host)}:${p.port}`,
        path: p.path,
        method: method as Dispatcher.HttpMethod,
        headers,
        body: hasBody ? req : null,
        signal,
      });
    } catch (err) {
      res.off('close', onClose);
      if (aborted && (res.destroyed || req.destroyed)) {
        errorCode = 'client_closed';
        this.record(facts, method, auditPath(t), 499, started, requestId, t.clientIp, errorCode);
        return;
      }
      const pe = this.upstreamError(err, p.host);
      if (pe.code !== 'egress_denied') this.log.warn({ code: pe.code, host: p.host }, 'proxy upstream failed');
      this.sendError(res, pe, requestId, t.responseHeaders);
      req.resume();
      this.record(facts, method, auditPath(t), pe.status, started, requestId, t.clientIp, pe.code);
      return;
    }
    status = up.statusCode;
    headersAt = performance.now();
    const body: Readable = up.body;
    const stages: Transform[] = [];
    const drop: string[] = [];
    const encoding = encodingOf(up.headers);
    if (!p.redactor.empty && encoding && encoding !== 'identity') {
      // asked for identity, got a compressed body anyway: decode it so it can be redacted
      const dec = DECODERS[encoding]?.stream() ?? null;
      if (!dec) {
        // undici errors the abandoned body (UND_ERR_ABORTED): with no listener that killed the process
        body.on('error', () => {});
        body.destroy();
        res.off('close', onClose);
        const pe = unreadableEncoding(encoding, p.redactor);
        this.sendError(res, pe, requestId, t.responseHeaders);
        this.record(facts, method, auditPath(t), pe.status, started, requestId, t.clientIp, pe.code);
        return;
      }
      stages.push(dec);
      drop.push('content-encoding', 'content-length');
    }
    if (!p.redactor.empty) stages.push(p.redactor.stream());
    try {
      const out = clientResponseHeaders(up.headers as Record<string, string | string[] | undefined>, p.redactor, drop, t.responseHeaders);
      res.writeHead(status, out);
      // a streamed body (no length: SSE, chunked) shows its headers at once, even if its first bytes
      // are long in coming; when they are already here (an SSE event usually arrives with its
      // headers) the headers go out with them, in one write. A sized body sends them with its first bytes.
      if (out['content-length'] === undefined) setImmediate(() => !res.writableEnded && !res.destroyed && res.flushHeaders());
      await pump(body, stages, res);
    } catch (err) {
      errorCode = aborted || res.destroyed ? 'client_closed' : 'upstream_aborted';
      if (errorCode === 'upstream_aborted') this.log.warn({ code: (err as { code?: string })?.code, host: p.host }, 'proxy upstream response broke off');
      body.destroy();
      for (const st of stages) st.destroy();
      res.destroy();
    } finally {
      res.off('close', onClose);
    }
    this.record(facts, method, auditPath(t), status, started, requestId, t.clientIp, errorCode, headersAt);
  }

  /** Audits a `proxy.request` in the next batch. */
  private record(f: AuditFacts, method: string, path: string, status: number, started: number, requestId: string, ip: string, error: string | null, headersAt = 0): void {
    const now = performance.now();
    const outcome = error === null ? 'ok' : status === 401 || status === 403 || status === 404 || status === 407 || status === 429 ? 'denied' : 'error';
    this.audit.push(this.ctx(f.principal, ip, requestId), {
      action: 'proxy.request',
      vault: f.vault,
      target: f.service ? `service:${f.service}` : f.host ? `host:${f.host}` : null,
      outcome,
      details: {
        method, host: f.host, port: f.port, path: method === 'CONNECT' ? path : pathForAudit(path), status,
        latency_ms: Math.round(((headersAt || now) - started) * 100) / 100,
        ...(headersAt ? { duration_ms: Math.round((now - started) * 100) / 100 } : {}),
        service: f.service, credentials: f.credentials,
        ...(Object.keys(f.servedBy).length ? { served_by: f.servedBy } : {}),
        ...(f.passthrough ? { passthrough: true } : {}),
        ...(error ? { error } : {}),
      },
    });
  }

  private problemBody(pe: ProxyError, requestId: string): string {
    return JSON.stringify({
      type: `https://latchkey.dev/problems/${pe.code}`, title: STATUS_CODES[pe.status] ?? 'Error', status: pe.status, code: pe.code, detail: pe.message,
      ...(pe.hint ? { hint: pe.hint } : {}), ...(pe.extra ?? {}), request_id: requestId,
    });
  }

  private errorHeaders(pe: ProxyError, requestId: string, length: number, extra?: Readonly<Record<string, string>>): Record<string, string> {
    const h: Record<string, string> = {
      ...extra,
      'content-type': 'application/problem+json', 'content-length': String(length), 'x-latchkey-error': pe.code, 'x-request-id': requestId, 'cache-control': 'no-store',
      ...(pe.headers ?? {}),
    };
    if (pe.status === 401) h['www-authenticate'] = 'Bearer realm="latchkey"';
    if (pe.status === 407) h['proxy-authenticate'] = 'Basic realm="latchkey"';
    return h;
  }

  private sendError(res: ServerResponse, pe: ProxyError, requestId: string, extra?: Readonly<Record<string, string>>): void {
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    const body = this.problemBody(pe, requestId);
    res.writeHead(pe.status, this.errorHeaders(pe, requestId, Buffer.byteLength(body), extra));
    res.end(body);
  }

  /** Renders an error (ProxyError, LatchkeyError, anything) as the proxy's error response. */
  respondError(res: ServerResponse, err: unknown, mode: 'base' | 'forward' = 'forward', extra?: Readonly<Record<string, string>>): void {
    this.sendError(res, this.refusal(err, mode), randomUUID(), extra);
  }

  /** Renders a ProxyError onto a raw socket (upgrade requests, and for the forward proxy's CONNECT). */
  writeSocketError(socket: Duplex, err: unknown, mode: 'base' | 'forward' = 'forward'): void {
    if (!socket.listenerCount('error')) socket.on('error', () => socket.destroy());
    const pe = this.refusal(err, mode);
    const requestId = randomUUID();
    const body = this.problemBody(pe, requestId);
    const h = this.errorHeaders(pe, requestId, Buffer.byteLength(body));
    endWith(socket, rawHead([`HTTP/1.1 ${pe.status} ${STATUS_CODES[pe.status] ?? 'Error'}`, 'connection: close'], h) + body);
  }

  /**
   * Connections with no requests to check (WebSockets, blind passthrough tunnels) are checked
   * again every WATCH_MS: when the token, the agent, its membership or the grant is gone, the
   * connection is cut (SPEC §3: revocation reaches connections already open). Returns the unwatch.
   */
  watch(conn: { destroy(): void }, stillAllowed: () => Promise<void>): () => void {
    this.watched.set(conn, stillAllowed);
    this.watchTimer ??= setInterval(() => void this.recheckWatched(), WATCH_MS).unref();
    return () => {
      this.watched.delete(conn);
      if (!this.watched.size && this.watchTimer) {
        clearInterval(this.watchTimer);
        this.watchTimer = null;
      }
    };
  }

  private readonly watched = new Map<{ destroy(): void }, () => Promise<void>>();
  private watchTimer: NodeJS.Timeout | null = null;
  private rechecking = false;

  private async recheckWatched(): Promise<void> {
    if (this.rechecking) return;
    this.rechecking = true;
    try {
      for (const [conn, stillAllowed] of [...this.watched]) {
        // any refusal (revoked, expired, removed) cuts; so does a failed check: deny by default
        await stillAllowed().catch(() => {
          this.watched.delete(conn);
          conn.destroy();
        });
      }
    } finally {
      this.rechecking = false;
    }
  }

  /**
   * Whether an open connection may go on (the check `watch` repeats): its token still works, and
   * with a service, that service is still enabled and granted; without one (a blind tunnel), the
   * vault still allows passthrough. Throws the refusal a new request would get.
   */
  async stillAllowed(t: Pick<ProxyTarget, 'token' | 'vault' | 'mode' | 'service'>, service: ServiceConfig | null): Promise<void> {
    const caller = await this.authenticate(t.token, t.vault, t.mode, t.service ?? null);
    if (!service) {
      if (caller.vault.passthrough !== 1) throw new ProxyError(403, 'no_service', `vault ${caller.vault.name} no longer allows blind passthrough`);
      return;
    }
    const fresh = await this.access.freshService(caller, service.name);
    if (!fresh || !fresh.config.enabled) throw disabledService(service, caller.vault.name);
    await this.access.requireUseGrant(caller, fresh.config, fresh.grantId);
  }

  /** WebSocket / Upgrade pass-through after the same checks (frames are not redacted). */
  async handleUpgrade(t: ProxyTarget, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const started = performance.now();
    const requestId = randomUUID();
    const method = (req.method ?? 'GET').toUpperCase();
    const facts: AuditFacts = { principal: { kind: 'anonymous' }, vault: t.vault, service: t.service ?? null, host: t.host, port: t.port, credentials: [], servedBy: {} };
    socket.on('error', () => {});
    let p: Prepared;
    try {
      p = await this.prepare(t, method, facts);
    } catch (err) {
      const pe = this.refusal(err, t.mode);
      this.writeSocketError(socket, pe, t.mode);
      if (pe.code !== 'audit_unavailable' && pe.code !== 'proxy_closing' && (t.token || (pe.status !== 401 && pe.status !== 407))) {
        this.record(facts, method, auditPath(t), pe.status, started, requestId, t.clientIp, pe.code);
      }
      return;
    }
    const headers = upstreamRequestHeaders(req.rawHeaders, { token: t.token, inject: p.injection.headers });
    if (!p.redactor.empty) setHeader(headers, 'accept-encoding', 'identity');
    const protocol = String(req.headers.upgrade ?? 'websocket');
    let up: UpgradeOutcome;
    try {
      up = await upgradeOrAnswer(await this.agent(), { origin: `${p.scheme}://${hostForUrl(p.host)}:${p.port}`, path: p.path, method, headers, upgrade: protocol });
    } catch (err) {
      const pe = err instanceof AnswerTooLarge
        ? new ProxyError(502, 'upstream_answer_too_large', `the upstream refused the upgrade with an answer over ${MAX_REFUSAL_BYTES} bytes, more than the proxy holds to redact`)
        : this.upstreamError(err, p.host);
      this.writeSocketError(socket, pe, t.mode);
      this.record(facts, method, auditPath(t), pe.status, started, requestId, t.clientIp, pe.code);
      return;
    }
    if (up.answer) {
      // the upstream refused the upgrade with an ordinary answer (401, 426…): the agent gets it,
      // redacted as any answer is, and the connection ends with it
      const a = up.answer;
      const drop = ['content-length', 'transfer-encoding'];
      let plain = a.body;
      const enc = encodingOf(a.headers);
      if (!p.redactor.empty && enc && enc !== 'identity') {
        // asked for identity, got a compressed body anyway: decode it so it can be redacted
        const decoded = decodeWhole(enc, plain);
        if (!decoded) {
          const pe = unreadableEncoding(enc, p.redactor);
          this.writeSocketError(socket, pe, t.mode);
          this.record(facts, method, auditPath(t), pe.status, started, requestId, t.clientIp, pe.code);
          return;
        }
        plain = decoded;
        drop.push('content-encoding');
      }
      const body = p.redactor.redactBuffer(plain);
      const out = clientResponseHeaders(a.headers, p.redactor, drop, t.responseHeaders);
      const head = rawHead([`HTTP/1.1 ${a.status} ${STATUS_CODES[a.status] ?? ''}`.trimEnd(), `content-length: ${body.length}`, 'connection: close'], out);
      endWith(socket, Buffer.concat([Buffer.from(head, 'latin1'), body]));
      this.record(facts, method, auditPath(t), a.status, started, requestId, t.clientIp, null);
      return;
    }
    const upSock = up.socket;
    if (socket.destroyed) {
      upSock.destroy();
      return;
    }
    const out = clientResponseHeaders(up.headers as Record<string, string | string[] | undefined>, p.redactor, [], t.responseHeaders);
    socket.write(rawHead(['HTTP/1.1 101 Switching Protocols', 'connection: Upgrade', `upgrade: ${String(up.headers.upgrade ?? protocol)}`], out));
    if (head.length) upSock.write(head);
    const conn = { destroy: () => { upSock.destroy(); socket.destroy(); } };
    this.open.add(conn);
    const unwatch = this.watch(conn, () => this.stillAllowed(t, p.service));
    upSock.on('error', () => socket.destroy());
    socket.on('error', () => upSock.destroy());
    upSock.pipe(socket);
    socket.pipe(upSock);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      this.open.delete(conn);
      unwatch();
      upSock.destroy();
      socket.destroy();
      this.record(facts, method, auditPath(t), 101, started, requestId, t.clientIp, null);
    };
    upSock.on('close', finish);
    socket.on('close', finish);
  }

  /** Stops taking requests, closes upstream connections and flushes the audit batch. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.open) c.destroy();
    if (this.watchTimer) clearInterval(this.watchTimer);
    const d = this.dispatcher ?? (this.dispatcherP ? await this.dispatcherP : null);
    if (d) {
      await Promise.race([d.close(), new Promise((r) => setTimeout(r, 2000).unref())]);
      await d.destroy().catch(() => {});
    }
    await this.audit.close();
  }
}

/** An upgrade's outcome: the upstream switched protocols, or answered as to any request (body kept whole, up to a cap). */
type UpgradeOutcome =
  | { answer: null; headers: Record<string, string | string[] | undefined>; socket: Duplex }
  | { answer: { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer } };

/** What an upstream's refusal of an upgrade may hold (its answer is buffered to be redacted whole). */
const MAX_REFUSAL_BYTES = 1024 * 1024;

class AnswerTooLarge extends Error {}

/** The content encodings the proxy can decode to redact: as a stream, and a whole (bounded) body. */
const DECODERS: Readonly<Record<string, { stream: () => Transform; whole: (b: Buffer, o: { maxOutputLength: number }) => Buffer }>> = {
  gzip: { stream: createGunzip, whole: gunzipSync },
  'x-gzip': { stream: createGunzip, whole: gunzipSync },
  deflate: { stream: createInflate, whole: inflateSync },
  br: { stream: createBrotliDecompress, whole: brotliDecompressSync },
};

function encodingOf(headers: Record<string, string | string[] | undefined> | IncomingHttpHeaders): string {
  const e = headers['content-encoding'];
  return e === undefined ? '' : String(e).trim().toLowerCase();
}

/** 502 for an answer in an encoding the proxy cannot read; the upstream's text is redacted before it is quoted. */
function unreadableEncoding(encoding: string, redactor: Redactor): ProxyError {
  return new ProxyError(502, 'upstream_encoding', `the upstream answered with content-encoding ${redactor.redactString(encoding).slice(0, 40)}, which the proxy cannot redact`);
}

/** A whole compressed body decoded (at most 8 × MAX_REFUSAL_BYTES), or null: an unknown encoding, or it does not decode. */
function decodeWhole(encoding: string, body: Buffer): Buffer | null {
  try {
    return DECODERS[encoding]?.whole(body, { maxOutputLength: 8 * MAX_REFUSAL_BYTES }) ?? null;
  } catch {
    return null;
  }
}

/**
 * Asks the upstream to upgrade. undici's `upgrade()` turns an ordinary answer (a 401, a 426) into
 * an error; this keeps it, so the agent sees what the upstream said.
 */
function upgradeOrAnswer(d: Dispatcher, o: { origin: string; path: string; method: string; headers: string[]; upgrade: string }): Promise<UpgradeOutcome> {
  return new Promise((resolve, reject) => {
    let answer: { status: number; headers: Record<string, string | string[] | undefined>; chunks: Buffer[]; size: number } | null = null;
    const handler: Dispatcher.DispatchHandler = {
      // (undici tells the handler API apart by this method; without it the handler is refused)
      onRequestStart() {},
      onRequestUpgrade(_c, _status, headers, socket) {
        resolve({ answer: null, headers: headers as Record<string, string | string[] | undefined>, socket });
      },
      onResponseStart(_c, status, headers) {
        answer = { status, headers: headers as Record<string, string | string[] | undefined>, chunks: [], size: 0 };
      },
      onResponseData(c, chunk) {
        if (!answer) return;
        answer.size += chunk.length;
        if (answer.size > MAX_REFUSAL_BYTES) c.abort(new AnswerTooLarge(`the upstream's answer to the upgrade is over ${MAX_REFUSAL_BYTES} bytes`));
        else answer.chunks.push(chunk);
      },
      onResponseEnd() {
        if (!answer) return reject(new Error('the upstream ended the upgrade without an answer'));
        resolve({ answer: { status: answer.status, headers: answer.headers, body: Buffer.concat(answer.chunks) } });
      },
      onResponseError(_c, err) {
        reject(err);
      },
    };
    // an Agent routes by origin (the type omits it)
    d.dispatch({ ...o, method: o.method as Dispatcher.HttpMethod } as Dispatcher.DispatchOptions, handler);
  });
}

/**
 * src -> stages -> res with backpressure (pipe), lighter than stream.pipeline (which allocates an
 * AbortController per call). Resolves when res has finished; rejects on any error or an early close.
 */
function pump(src: Readable, stages: Transform[], res: ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    let done = false;
    const fail = (err: unknown) => {
      if (done) return;
      done = true;
      reject(err ?? new Error('premature close'));
    };
    const streams: Array<Readable | Transform> = [src, ...stages];
    for (const s of streams) s.once('error', fail);
    res.once('error', fail);
    res.once('finish', () => {
      if (done) return;
      done = true;
      resolve();
    });
    res.once('close', () => {
      if (!res.writableFinished) fail(new Error('client closed'));
    });
    src.once('close', () => {
      // an upstream body that closes before it ended broke off
      if (!src.readableEnded) fail(new Error('upstream closed'));
    });
    let cur: Readable = src;
    for (const st of stages) cur = cur.pipe(st);
    cur.pipe(res);
  });
}

function setHeader(flat: string[], name: string, value: string): void {
  for (let i = 0; i < flat.length; i += 2) {
    if (flat[i]!.toLowerCase() === name) {
      flat.splice(i, 2);
      i -= 2;
    }
  }
  flat.push(name, value);
}
