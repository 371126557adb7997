/**
 * Header hygiene for the proxy: what goes upstream (no hop-by-hop or proxy headers, no agent
 * token, no Latchkey headers, the injected auth replacing the client's own) and what comes back
 * (no hop-by-hop headers, injected values redacted).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Redactor } from './redact.js';

/** RFC 9110 §7.6.1 connection-specific headers, and the proxy's own. */
export const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'trailers',
  'transfer-encoding', 'upgrade',
]);

/** Also never forwarded upstream: Host (set from the target), Expect (answered by Node), HTTP/2 pseudo headers. */
const NOT_UPSTREAM = new Set(['host', 'expect', 'http2-settings']);

/** The token of an `Authorization: Bearer <token>` header, or null: the one parser, for the API and the proxy. */
export function bearerToken(h: string | undefined): string | null {
  if (!h) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m ? m[1]! : null;
}

/** Where an agent may put its token (base-URL mode): Authorization: Bearer, x-api-key, X-Latchkey-Token. */
export function agentTokenFrom(h: IncomingHttpHeaders): string | null {
  const x = h['x-latchkey-token'];
  if (typeof x === 'string' && x.trim()) return x.trim();
  const b = bearerToken(h.authorization);
  if (b?.startsWith('lk_')) return b;
  const k = h['x-api-key'];
  if (typeof k === 'string' && k.trim().startsWith('lk_')) return k.trim();
  // a Bearer value that is not one of ours still counts as the presented token (a clear 401)
  if (b) return b;
  if (typeof k === 'string' && k.trim()) return k.trim();
  return null;
}

/** Header names listed in Connection: (they are hop-by-hop too). */
function connectionTokens(rawHeaders: string[]): Set<string> {
  const out = new Set<string>();
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() !== 'connection') continue;
    for (const t of rawHeaders[i + 1]!.split(',')) {
      const n = t.trim().toLowerCase();
      if (n) out.add(n);
    }
  }
  return out;
}

export interface UpstreamHeaderOptions {
  /** the agent token: any header carrying it is dropped */
  token: string | null;
  /** headers to inject (their names replace whatever the client sent under them) */
  inject: Record<string, string>;
}

/**
 * The request headers to send upstream, as undici's flat [name, value, ...] array (keeps
 * repeated headers and the client's casing).
 */
export function upstreamRequestHeaders(rawHeaders: string[], o: UpstreamHeaderOptions): string[] {
  const conn = connectionTokens(rawHeaders);
  const injected = new Set(Object.keys(o.inject).map((k) => k.toLowerCase()));
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const value = rawHeaders[i + 1]!;
    const l = name.toLowerCase();
    if (HOP_BY_HOP.has(l) || NOT_UPSTREAM.has(l) || conn.has(l) || l.startsWith('x-latchkey-') || l.startsWith(':')) continue;
    if (injected.has(l)) continue;
    if (o.token && value.includes(o.token)) continue; // Authorization: Bearer lk_..., x-api-key: lk_...
    out.push(name, value);
  }
  for (const [k, v] of Object.entries(o.inject)) out.push(k, v);
  return out;
}

/**
 * Response headers for the client: hop-by-hop removed, values redacted, and no `X-Latchkey-*`
 * header of the upstream's (a proxy error is marked with X-Latchkey-Error and nothing else may look like one).
 */
export function clientResponseHeaders(h: Record<string, string | string[] | undefined>, r: Redactor, drop: Iterable<string> = [], base?: Readonly<Record<string, string>>): Record<string, string | string[]> {
  const conn = new Set<string>();
  const c = h.connection;
  for (const v of Array.isArray(c) ? c : c ? [c] : []) for (const t of v.split(',')) if (t.trim()) conn.add(t.trim().toLowerCase());
  const dropSet = new Set(drop);
  // `base`: headers of ours every answer carries, under the upstream's own
  const out: Record<string, string | string[]> = { ...base };
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    const l = k.toLowerCase();
    if (HOP_BY_HOP.has(l) || conn.has(l) || dropSet.has(l) || l.startsWith('x-latchkey-')) continue;
    out[k] = Array.isArray(v) ? v.map((x) => r.redactString(x)) : r.redactString(v);
  }
  return out;
}

/**
 * The agent's token never goes upstream in the URL either: query parameters carrying it are
 * dropped (an SDK given the agent token as its API key may send it as `?key=`); in the path it is
 * refused (null), as there is nothing to drop it from.
 */
export function withoutToken(path: string, token: string | null): string | null {
  if (!token || token.length < 8) return path;
  const q = path.indexOf('?');
  const base = q === -1 ? path : path.slice(0, q);
  const has = (s: string) => {
    if (s.includes(token)) return true;
    if (!s.includes('%') && !s.includes('+')) return false; // nothing encoded: the common case
    try {
      return decodeURIComponent(s.replace(/\+/g, ' ')).includes(token);
    } catch {
      return false;
    }
  };
  if (has(base)) return null;
  if (q === -1 || !has(path.slice(q + 1))) return path;
  const kept = path.slice(q + 1).split('&').filter((kv) => kv && !has(kv));
  return kept.length ? `${base}?${kept.join('&')}` : base;
}

/** `/a/b?x=1&y=2` -> `/a/b?x=&y=` (the audit keeps parameter names, never values). */
export function pathForAudit(path: string): string {
  const q = path.indexOf('?');
  if (q === -1) return path.length > 2048 ? path.slice(0, 2048) : path;
  const names = path.slice(q + 1).split('&').filter(Boolean).map((kv) => `${kv.split('=')[0]}=`);
  const p = path.slice(0, q);
  return `${p.length > 2048 ? p.slice(0, 2048) : p}?${names.join('&').slice(0, 1024)}`;
}

/** Sets (replaces) query parameters on a path + query. */
export function withQuery(path: string, params: Record<string, string>): string {
  const keys = Object.keys(params);
  if (!keys.length) return path;
  const q = path.indexOf('?');
  const base = q === -1 ? path : path.slice(0, q);
  const kept = q === -1 ? [] : path.slice(q + 1).split('&').filter((kv) => {
    if (!kv) return false;
    let name = kv.split('=')[0]!;
    try {
      name = decodeURIComponent(name.replace(/\+/g, ' '));
    } catch {
      /* keep as is */
    }
    return !keys.includes(name);
  });
  for (const k of keys) kept.push(`${encodeURIComponent(k)}=${encodeURIComponent(params[k]!)}`);
  return `${base}?${kept.join('&')}`;
}

/** Percent-decoded path segments, or null when one is malformed (a lone `%`, bad UTF-8). */
export function decodeSegments(...segments: string[]): string[] | null {
  try {
    return segments.map((s) => decodeURIComponent(s));
  } catch {
    return null;
  }
}

/** A response head for a raw socket: the first lines as given, then every value of every header. */
export function rawHead(lines: string[], headers: Readonly<Record<string, string | number | string[] | undefined>> = {}): string {
  const out = [...lines];
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) for (const x of Array.isArray(v) ? v : [v]) out.push(`${k}: ${x}`);
  return out.join('\r\n') + '\r\n\r\n';
}

/**
 * Ends a raw socket with its last answer and destroys it once that is flushed, so a client that
 * keeps its side open does not keep the socket.
 */
export function endWith(socket: Duplex, data: string | Buffer): void {
  if (!socket.destroyed) socket.end(data, () => socket.destroy());
}
