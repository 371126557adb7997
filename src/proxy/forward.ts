/**
 * The forward proxy listener (`HTTPS_PROXY=http://<token>:<vault>@127.0.0.1:7471`).
 *
 * - Credentials: `Proxy-Authorization: Basic base64(token:vault)` (what clients send for a proxy
 *   URL with user info), or `Proxy-Authorization: Bearer <token>` with the default vault
 *   (LATCHKEY_VAULT, else `default`). Missing → 407 with `Proxy-Authenticate`.
 * - `CONNECT host:port`: the pipeline decides (checkTunnel). A host a service matches is
 *   intercepted: the tunnel is answered 200, TLS is terminated with a leaf from the instance CA
 *   for the CONNECT host, and every inner request is handed to the pipeline with the CONNECT
 *   target as its destination, whatever the inner Host header says (the Host header is rewritten
 *   to the CONNECT authority). Authorization and revocation are checked by the pipeline per inner
 *   request, so a revoked grant cuts an open keep-alive tunnel at its next request.
 *   A host no service matches is refused with 403 and a hint, unless the vault allows blind
 *   passthrough: then a plain TCP tunnel to an address the egress guard admits.
 * - Plain `http://` absolute-form requests (and WebSocket upgrades) go to the pipeline directly.
 *
 * Every error this listener makes itself carries `X-Latchkey-Error: <code>`. Nothing here logs or
 * echoes a token.
 */
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import type { InstanceCa } from './ca.js';
import { leafHost } from './ca.js';
import { ProxyError, type PinoLike, type ProxyPipeline, type ProxyTarget } from './pipeline.js';
import { endWith, rawHead } from './headers.js';

export interface ForwardProxyOptions {
  pipeline: ProxyPipeline;
  ca: InstanceCa;
  /** the vault when the client names none (Bearer, or Basic without a password): LATCHKEY_VAULT or `default` */
  defaultVault?: string;
  log?: PinoLike;
  /** idle keep-alive of connections inside intercepted tunnels (ms, default 60 s) */
  keepAliveMs?: number;
}

export interface ProxyCredentials {
  token: string;
  vault: string;
}

const REALM = 'Basic realm="latchkey", charset="UTF-8"';
const PROPOSE_HINT = (vault: string, host: string) =>
  `ask a person to add a service for ${host} to vault '${vault}', or propose one: POST /v1/vaults/${vault}/proposals ` +
  `{"message": "why", "services": [{"name": "...", "host": "${host}", "auth": {"type": "bearer", "key": "KEY"}}], "credentials": [{"action": "set", "key": "KEY"}]}`;

/** Token and vault from a Proxy-Authorization header; null when absent or malformed. */
export function parseProxyAuthorization(header: string | string[] | undefined, defaultVault = 'default'): ProxyCredentials | null {
  if (typeof header !== 'string') return null;
  const m = /^\s*(Basic|Bearer)\s+(\S+)\s*$/i.exec(header);
  if (!m) return null;
  if (m[1]!.toLowerCase() === 'bearer') return { token: m[2]!, vault: defaultVault };
  if (!/^[A-Za-z0-9+/=_-]+$/.test(m[2]!)) return null;
  const decoded = Buffer.from(m[2]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const user = colon === -1 ? decoded : decoded.slice(0, colon);
  const pass = colon === -1 ? '' : decoded.slice(colon + 1);
  const token = safeDecode(user).trim();
  if (!token) return null;
  return { token, vault: safeDecode(pass).trim() || defaultVault };
}

/** Clients normally decode %XX in proxy user info; some do not. */
function safeDecode(s: string): string {
  if (!s.includes('%')) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** `host:port` of a CONNECT request (IPv6 in brackets); null when malformed. */
export function parseAuthority(authority: string | undefined, defaultPort: number | null = null): { host: string; port: number } | null {
  if (!authority || authority.length > 300) return null;
  const m = /^(\[[0-9a-fA-F:.%]+\]|[^:[\]/\s@?#]+)(?::(\d{1,5}))?$/.exec(authority);
  if (!m) return null;
  const port = m[2] !== undefined ? Number(m[2]) : defaultPort;
  if (port === null || port < 1 || port > 65535) return null;
  const host = leafHost(m[1]!);
  if (!host) return null;
  return { host, port };
}

function clientIpOf(sock: { remoteAddress?: string } | undefined): string {
  const a = sock?.remoteAddress ?? '';
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

function problemBody(status: number, code: string, detail: string, hint?: string): string {
  return JSON.stringify({
    type: `https://latchkey.dev/problems/${code}`, title: STATUS_CODES[status] ?? 'Error', status, code, detail, ...(hint ? { hint } : {}),
  });
}

/** A response written straight onto a socket (CONNECT answers, before any HTTP server owns it). */
export function rawReply(socket: Duplex, status: number, code: string, detail: string, hint?: string, extra: Record<string, string> = {}): void {
  // a socket taken from the HTTP server (upgrade, CONNECT) has no error listener of Node's any more
  if (!socket.listenerCount('error')) socket.on('error', () => socket.destroy());
  const body = problemBody(status, code, detail, hint);
  const head = rawHead([
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
    'Content-Type: application/problem+json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    `X-Latchkey-Error: ${code}`,
    'Connection: close',
  ], extra);
  if (!socket.writable) return void socket.destroy();
  endWith(socket, head + body);
}

/**
 * Node's `clientError` (a request that cannot be parsed, or too slow): a problem answer marked as
 * Latchkey's own (X-Latchkey-Error), on every listener, never a silent close or a framework text.
 */
export function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || !socket.writable) return void socket.destroy();
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return rawReply(socket, 408, 'request_timeout', 'the request took too long to arrive');
  if (err.code === 'HPE_HEADER_OVERFLOW') return rawReply(socket, 431, 'headers_too_large', 'the request headers are too large');
  rawReply(socket, 400, 'bad_request', 'the request could not be parsed');
}

function httpReply(res: ServerResponse, status: number, code: string, detail: string, hint?: string, extra: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = problemBody(status, code, detail, hint);
  res.writeHead(status, { 'content-type': 'application/problem+json', 'content-length': Buffer.byteLength(body), 'x-latchkey-error': code, 'cache-control': 'no-store', ...extra });
  res.end(body);
}

/** A pipeline error as an HTTP answer (its status and code; a 401 is a 407 on a forward proxy). */
function errorReply(err: unknown): { status: number; code: string; detail: string; hint?: string; extra: Record<string, string> } {
  if (err instanceof ProxyError) {
    const status = err.status === 401 ? 407 : err.status;
    return { status, code: err.code, detail: err.message, hint: err.hint, extra: { ...(err.headers ?? {}), ...(status === 407 ? { 'Proxy-Authenticate': REALM } : {}) } };
  }
  return { status: 502, code: 'proxy_error', detail: 'the proxy could not complete the request', extra: {} };
}

/**
 * Makes the request name the destination it is routed to: Host is the target's authority, and the
 * proxy's own headers (which carry the token) are gone, whatever the client sent.
 */
function pinRequest(req: IncomingMessage, authority: string): void {
  const drop = new Set(['host', 'proxy-authorization', 'proxy-connection']);
  for (const k of drop) delete req.headers[k];
  req.headers.host = authority;
  const raw: string[] = [];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    if (drop.has(req.rawHeaders[i]!.toLowerCase())) continue;
    raw.push(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
  }
  req.rawHeaders.length = 0;
  req.rawHeaders.push('Host', authority, ...raw);
}

function authorityOf(host: string, port: number, scheme: 'http' | 'https'): string {
  const h = host.includes(':') ? `[${host}]` : host;
  return (scheme === 'https' && port === 443) || (scheme === 'http' && port === 80) ? h : `${h}:${port}`;
}

interface TunnelInfo {
  /** what the tunnel carries: TLS (intercepted) or plain HTTP */
  scheme: 'https' | 'http';
  creds: ProxyCredentials;
  host: string;
  port: number;
  clientIp: string;
}

export class ForwardProxy {
  readonly server: Server;
  /** parses the requests inside intercepted tunnels (never listens) */
  private readonly inner: Server;
  private readonly tunnels = new WeakMap<object, TunnelInfo>();
  /** every socket taken over by CONNECT, closed with the proxy */
  private readonly hijacked = new Set<Duplex>();
  private readonly defaultVault: string;
  private closed = false;

  constructor(private readonly opts: ForwardProxyOptions) {
    this.defaultVault = opts.defaultVault || 'default';
    // no request timeout: bodies stream both ways with no cap (uploads, SSE, long polls)
    this.server = createServer({ requestTimeout: 0, headersTimeout: 30_000, keepAliveTimeout: 5_000 });
    this.inner = createServer({ requestTimeout: 0, headersTimeout: 30_000, keepAliveTimeout: opts.keepAliveMs ?? 60_000 });
    this.server.on('request', (req, res) => void this.onPlainRequest(req, res));
    this.server.on('upgrade', (req, socket, head) => void this.onPlainUpgrade(req, socket, head));
    this.server.on('connect', (req, socket, head) => void this.onConnect(req, socket, head));
    this.server.on('clientError', answerClientError);
    this.inner.on('request', (req, res) => void this.onTunnelRequest(req, res));
    this.inner.on('upgrade', (req, socket, head) => void this.onTunnelUpgrade(req, socket, head));
    this.inner.on('connect', (_req, socket) => rawReply(socket, 405, 'connect_in_tunnel', 'CONNECT inside an intercepted tunnel is not supported'));
    // a malformed request inside an intercepted tunnel gets the same answer as outside it
    this.inner.on('clientError', answerClientError);
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      this.server.listen({ host, port }, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    this.inner.closeAllConnections();
    for (const s of this.hijacked) s.destroy();
    this.hijacked.clear();
    await done;
  }

  private credentials(header: string | string[] | undefined): ProxyCredentials | null {
    return parseProxyAuthorization(header, this.defaultVault);
  }

  private track(socket: Duplex): void {
    this.hijacked.add(socket);
    socket.once('close', () => this.hijacked.delete(socket));
  }

  // ---- CONNECT

  private async onConnect(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    this.track(socket);
    socket.on('error', () => socket.destroy());
    const target = parseAuthority(req.url);
    if (!target) return rawReply(socket, 400, 'bad_connect_target', 'CONNECT needs host:port');
    const creds = this.credentials(req.headers['proxy-authorization']);
    if (!creds) {
      return rawReply(socket, 407, 'proxy_auth_required', 'proxy authentication is required: use HTTPS_PROXY=http://<token>:<vault>@<latchkey-host>:<port>', undefined, { 'Proxy-Authenticate': REALM });
    }
    const clientIp = clientIpOf(req.socket);
    let decision: { match: boolean; passthrough: boolean };
    try {
      decision = await this.opts.pipeline.checkTunnel(creds.token, creds.vault, target.host, target.port, clientIp);
    } catch (err) {
      // 407 bad token, 403 no grant / no service (with the pipeline's hint), 503 audit down
      return this.opts.pipeline.writeSocketError(socket, err, 'forward');
    }
    if (socket.destroyed) return;
    if (decision.match) return this.intercept(socket, head, { scheme: 'https', creds, host: target.host, port: target.port, clientIp });
    if (decision.passthrough) return this.passthrough(socket, head, target.host, target.port, creds);
    // (the pipeline raises this itself; kept so that no answer here ever means "tunnel anyway")
    return rawReply(socket, 403, 'no_service', `no service in vault '${creds.vault}' matches ${target.host}:${target.port}`, PROPOSE_HINT(creds.vault, target.host));
  }

  private async intercept(socket: Duplex, head: Buffer, info: TunnelInfo): Promise<void> {
    let context;
    try {
      context = await this.opts.ca.secureContext(info.host);
    } catch (err) {
      this.opts.log?.error({ code: (err as { code?: string }).code, host: info.host }, 'forward proxy: no leaf certificate');
      return rawReply(socket, 502, 'ca_unavailable', `the proxy could not make a certificate for ${info.host}`);
    }
    if (socket.destroyed) return;
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    // a client that neither starts TLS nor sends a request, or never finishes its handshake, does not hold the socket
    const idle = setTimeout(() => socket.destroy(), 15_000);
    idle.unref();
    socket.once('close', () => clearTimeout(idle));
    // the client's first byte says what the tunnel carries: a TLS handshake (0x16), or plain HTTP
    // (clients such as undici tunnel http:// URLs through CONNECT too)
    const start = (first: Buffer) => {
      socket.unshift(first);
      if (first[0] !== 0x16) {
        clearTimeout(idle);
        // port 443 is HTTPS: plain HTTP there would carry the injected credential in cleartext
        if (info.port === 443) return rawReply(socket, 400, 'tls_required', `the tunnel to ${info.host}:443 must carry TLS; plain HTTP is not forwarded to an HTTPS port`);
        this.tunnels.set(socket, { ...info, scheme: 'http' });
        this.inner.emit('connection', socket);
        socket.resume(); // paused while peeking; the parser takes the peeked bytes first
        return;
      }
      const tls = new TLSSocket(socket as Socket, { isServer: true, secureContext: context, ALPNProtocols: ['http/1.1'] });
      this.tunnels.set(tls, info);
      this.track(tls);
      tls.on('error', () => tls.destroy());
      tls.once('secure', () => clearTimeout(idle));
      this.inner.emit('connection', tls);
    };
    if (head.length) return start(head);
    socket.once('data', (d: Buffer) => {
      socket.pause();
      start(d);
    });
  }

  /** A blind tunnel (the vault allows passthrough): TCP to an address the pipeline's egress guard admits. */
  private async passthrough(socket: Duplex, head: Buffer, host: string, port: number, creds: { token: string | null; vault: string }): Promise<void> {
    let up: Socket;
    try {
      up = await this.opts.pipeline.dialChecked(host, port);
    } catch (err) {
      return this.opts.pipeline.writeSocketError(socket, err, 'forward');
    }
    this.track(up);
    if (socket.destroyed) return void up.destroy();
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
    socket.once('close', () => up.destroy());
    up.once('close', () => socket.destroy());
    // revocation reaches the open tunnel too (checked again every second)
    const unwatch = this.opts.pipeline.watch({ destroy: () => { up.destroy(); socket.destroy(); } }, () => this.opts.pipeline.stillAllowed({ ...creds, mode: 'forward' }, null));
    up.once('close', unwatch);
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length) up.write(head);
    socket.pipe(up);
    up.pipe(socket);
  }

  // ---- inside an intercepted tunnel

  private async onTunnelRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const info = this.tunnels.get(req.socket);
    if (!info) return httpReply(res, 500, 'proxy_error', 'tunnel state lost');
    const path = this.tunnelPath(req.url);
    if (!path) return httpReply(res, 400, 'bad_request_target', 'the request target must be a path');
    pinRequest(req, authorityOf(info.host, info.port, info.scheme));
    const t: ProxyTarget = { mode: 'forward', token: info.creds.token, vault: info.creds.vault, scheme: info.scheme, host: info.host, port: info.port, path, clientIp: info.clientIp };
    try {
      await this.opts.pipeline.handle(t, req, res);
    } catch (err) {
      const e = errorReply(err);
      httpReply(res, e.status, e.code, e.detail, e.hint, e.extra);
    }
  }

  private async onTunnelUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const info = this.tunnels.get(req.socket);
    const path = this.tunnelPath(req.url);
    if (!info || !path) return rawReply(socket, 400, 'bad_request_target', 'the request target must be a path');
    pinRequest(req, authorityOf(info.host, info.port, info.scheme));
    const t: ProxyTarget = { mode: 'forward', token: info.creds.token, vault: info.creds.vault, scheme: info.scheme, host: info.host, port: info.port, path, clientIp: info.clientIp };
    try {
      await this.opts.pipeline.handleUpgrade(t, req, socket, head);
    } catch (err) {
      const e = errorReply(err);
      rawReply(socket, e.status, e.code, e.detail, e.hint, e.extra);
    }
  }

  /** Origin-form inside a tunnel; an absolute-form URL keeps only its path (the tunnel fixes the destination). */
  private tunnelPath(url: string | undefined): string | null {
    if (!url) return null;
    if (url.startsWith('/')) return url;
    if (/^https?:\/\//i.test(url)) {
      try {
        const u = new URL(url);
        return u.pathname + u.search;
      } catch {
        return null;
      }
    }
    return null;
  }

  // ---- plain http:// absolute-form

  private plainTarget(req: IncomingMessage): { t: Omit<ProxyTarget, 'token' | 'vault'>; authority: string } | { error: [number, string, string, string?] } {
    const url = req.url ?? '';
    if (!/^https?:\/\//i.test(url)) {
      return { error: [400, 'not_a_proxy_request', 'this is the Latchkey forward proxy: send absolute-form requests or CONNECT',
        'set HTTPS_PROXY and HTTP_PROXY to http://<token>:<vault>@<this host>:<this port>, or use `latchkey run -- <command>`'] };
    }
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      return { error: [400, 'bad_request_target', 'the request URL is not valid'] };
    }
    const scheme = u.protocol === 'https:' ? 'https' : 'http';
    const host = leafHost(u.hostname);
    if (!host || u.username || u.password) return { error: [400, 'bad_request_target', 'the request URL has no valid host'] };
    const port = u.port ? Number(u.port) : scheme === 'https' ? 443 : 80;
    return { t: { mode: 'forward', scheme, host, port, path: u.pathname + u.search, clientIp: clientIpOf(req.socket) }, authority: authorityOf(host, port, scheme) };
  }

  private async onPlainRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const p = this.plainTarget(req);
    if ('error' in p) return httpReply(res, ...p.error);
    const creds = this.credentials(req.headers['proxy-authorization']);
    if (!creds) return httpReply(res, 407, 'proxy_auth_required', 'proxy authentication is required: use HTTP_PROXY=http://<token>:<vault>@<latchkey-host>:<port>', undefined, { 'proxy-authenticate': REALM });
    pinRequest(req, p.authority);
    try {
      await this.opts.pipeline.handle({ ...p.t, token: creds.token, vault: creds.vault }, req, res);
    } catch (err) {
      const e = errorReply(err);
      httpReply(res, e.status, e.code, e.detail, e.hint, e.extra);
    }
  }

  private async onPlainUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    this.track(socket);
    socket.on('error', () => socket.destroy());
    const p = this.plainTarget(req);
    if ('error' in p) return rawReply(socket, ...p.error);
    const creds = this.credentials(req.headers['proxy-authorization']);
    if (!creds) return rawReply(socket, 407, 'proxy_auth_required', 'proxy authentication is required', undefined, { 'Proxy-Authenticate': REALM });
    pinRequest(req, p.authority);
    try {
      await this.opts.pipeline.handleUpgrade({ ...p.t, token: creds.token, vault: creds.vault }, req, socket, head);
    } catch (err) {
      const e = errorReply(err);
      rawReply(socket, e.status, e.code, e.detail, e.hint, e.extra);
    }
  }
}
