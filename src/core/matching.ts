/**
 * Service configuration, the library the proxy and the control plane share. PURE: no I/O, no
 * store, no clock; every function takes what it needs and returns a value or throws a
 * LatchkeyError naming the failing field (never a credential value).
 *
 * - Host matchers: `api.stripe.com` (exact), `*.github.com` (exactly one extra label: matches
 *   `api.github.com`, not `github.com`, not `a.b.github.com`), optional `:port` (absent = any
 *   port), optional path prefix (`api.example.com/v1` matches `/v1` and `/v1/...`, not `/v10`).
 *   Host names are lower-cased and must be ASCII labels of [a-z0-9-] (IDN hosts in punycode,
 *   `xn--...`): no Unicode look-alikes, no underscores, no IP-literal wildcards, no IPv6.
 * - Matching (`matchService`): the best service for (host, port, path, method): exact host beats
 *   a wildcard, a longer path prefix beats a shorter one, an explicit port beats any port; then
 *   whether the method and path are allowed by the service's lists (empty list = all).
 * - Auth rules: bearer, basic, header (+ prefix), query, template headers with `{{ KEY }}`;
 *   `credentialKeys` lists the secrets a rule needs, `applyAuth` turns values into the headers and
 *   query parameters to inject.
 */
import { invalid, LatchkeyError } from './errors.js';
import { checkSecretName, LIMITS } from './names.js';

// ---- limits

export const SERVICE_LIMITS = {
  name: 63,
  host: 253,
  pathPrefix: 512,
  methods: 16,
  pathPrefixes: 32,
  templateHeaders: 16,
  headerValue: 4096,
  prefix: 256,
  description: LIMITS.description,
  quotaMin: 1,
  quotaMax: 100_000,
} as const;

export const SERVICE_NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,62}$/;

// ---- host matchers

export interface HostMatcher {
  /** the host pattern, lower case: `api.stripe.com` or `*.github.com` */
  host: string;
  wildcard: boolean;
  /** for a wildcard, the part after `*.` */
  base: string;
  /** null = any port */
  port: number | null;
  /** null = any path; otherwise starts with `/` and has no trailing `/` */
  pathPrefix: string | null;
}

const LABEL_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const IPV4_RE = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** RFC 3986 pchar and '/', without '?' and '#'. */
const PATH_RE = /^\/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*$/;

function checkHostName(h: string, field: string, allowIp: boolean): void {
  if (h.length === 0) throw invalid(field, 'needs a host name');
  if (h.length > SERVICE_LIMITS.host) throw invalid(field, `is longer than ${SERVICE_LIMITS.host} characters`);
  const labels = h.split('.');
  for (const l of labels) {
    if (!LABEL_RE.test(l)) {
      throw invalid(field, 'must be a host name of letters a-z, digits and hyphens separated by dots (IDN hosts in punycode: xn--...)');
    }
  }
  if (/^\d+$/.test(labels[labels.length - 1]!)) {
    if (!allowIp) throw invalid(field, 'a wildcard cannot cover IP addresses');
    if (!IPV4_RE.test(h)) throw invalid(field, 'is neither a host name nor an IPv4 address');
  }
}

/** Validates a path prefix (or an allowed path) and strips a trailing slash; `/` alone means everything (null). */
export function checkPathPrefix(p: unknown, field: string): string | null {
  if (typeof p !== 'string' || p.length === 0) throw invalid(field, 'must be a path starting with /');
  if (p.length > SERVICE_LIMITS.pathPrefix) throw invalid(field, `is longer than ${SERVICE_LIMITS.pathPrefix} characters`);
  if (!PATH_RE.test(p)) throw invalid(field, 'must start with / and hold only URL path characters (no ?, #, spaces)');
  if (normalizePath(p) === null) throw invalid(field, 'must not contain . or .. segments or encoded slashes');
  const trimmed = p.replace(/\/+$/, '');
  return trimmed === '' ? null : trimmed;
}

/** Parses `host[:port][/path-prefix]`. Throws a 400 naming `field`. */
export function parseHostMatcher(input: unknown, field = 'host'): HostMatcher {
  if (typeof input !== 'string' || input.length === 0) throw invalid(field, 'is required (like api.stripe.com, *.github.com or api.example.com/v1)');
  if (input.length > SERVICE_LIMITS.host + 6 + SERVICE_LIMITS.pathPrefix) throw invalid(field, 'is too long');
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(input)) throw invalid(field, 'give the host without a scheme (api.stripe.com, not https://api.stripe.com)');
  if (/[\s\\?#@]/.test(input)) throw invalid(field, 'must not contain spaces, \\, ?, # or @');
  const slash = input.indexOf('/');
  const authority = slash === -1 ? input : input.slice(0, slash);
  const pathPrefix = slash === -1 ? null : checkPathPrefix(input.slice(slash), field);
  if (authority.startsWith('[') || (authority.match(/:/g) ?? []).length > 1) throw invalid(field, 'IPv6 addresses are not supported; use a host name');
  let hostPart = authority;
  let port: number | null = null;
  const colon = authority.lastIndexOf(':');
  if (colon !== -1) {
    const ps = authority.slice(colon + 1);
    if (!/^\d{1,5}$/.test(ps) || Number(ps) < 1 || Number(ps) > 65535) throw invalid(field, 'the port must be a number from 1 to 65535');
    port = Number(ps);
    hostPart = authority.slice(0, colon);
  }
  let host = hostPart.toLowerCase();
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (host.startsWith('*.')) {
    const base = host.slice(2);
    checkHostName(base, field, false);
    if (!base.includes('.')) throw invalid(field, 'a wildcard must cover a domain with at least two labels (like *.github.com)');
    return { host, wildcard: true, base, port, pathPrefix };
  }
  if (host.includes('*')) throw invalid(field, 'a wildcard is allowed only as the whole first label (like *.github.com)');
  checkHostName(host, field, true);
  return { host, wildcard: false, base: host, port, pathPrefix };
}

export function formatHostMatcher(m: Pick<HostMatcher, 'host' | 'port' | 'pathPrefix'>): string {
  return `${m.host}${m.port !== null ? `:${m.port}` : ''}${m.pathPrefix ?? ''}`;
}

/** Lower-cases a request host, drops a trailing dot and IPv6 brackets. */
export function normalizeHost(host: string): string {
  let h = host.toLowerCase();
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  return h;
}

export function hostMatches(m: HostMatcher, host: string, port: number | null): boolean {
  if (m.port !== null && m.port !== port) return false;
  const h = normalizeHost(host);
  if (!m.wildcard) return h === m.host;
  if (!h.endsWith('.' + m.base)) return false;
  const label = h.slice(0, h.length - m.base.length - 1);
  return label.length > 0 && !label.includes('.');
}

/**
 * The request path for matching: without its query. Null when it is ambiguous (dot segments, also
 * encoded or with path parameters like `..;x`, encoded slashes or backslashes, control characters,
 * a `#`, which no request target carries): an upstream could resolve it to a path other than the
 * one the prefix check saw (the whole target is forwarded as sent), so no path rule admits it.
 */
export function normalizePath(path: string): string | null {
  if (path.includes('#')) return null;
  let p = path;
  const q = p.indexOf('?');
  if (q !== -1) p = p.slice(0, q);
  if (p === '') p = '/';
  if (!p.startsWith('/')) return null;
  if (/[\x00-\x20\x7f\\]/.test(p) || /%(?:2f|5c|00)/i.test(p)) return null;
  for (const seg of p.split('/')) {
    const s = seg.replace(/%2e/gi, '.').split(/;|%3b/i)[0];
    if (s === '.' || s === '..') return null;
  }
  return p;
}

/** `prefix` (no trailing slash) covers `path` when equal or followed by `/`. */
export function pathHasPrefix(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(prefix + '/');
}

// ---- auth rules

export type AuthRule =
  | { type: 'bearer'; key: string }
  | { type: 'basic'; username_key: string; password_key?: string }
  | { type: 'header'; name: string; key: string; prefix?: string }
  | { type: 'query'; param: string; key: string }
  | { type: 'template'; headers: Record<string, string> };

export const AUTH_TYPES = ['bearer', 'basic', 'header', 'query', 'template'] as const;

const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const QUERY_PARAM_RE = /^[A-Za-z0-9_.\-~[\]]{1,128}$/;
const PLACEHOLDER_RE = /\{\{\s*([^{}\s]*)\s*\}\}/g;

/**
 * Headers a rule may never set: hop-by-hop and framing headers (the proxy owns them), Host, and
 * the proxy's own `X-Latchkey-*` headers.
 */
export const FORBIDDEN_HEADERS = new Set([
  'host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization',
  'proxy-connection', 'te', 'trailer', 'trailers', 'upgrade', 'expect',
]);

export function checkHeaderName(n: unknown, field: string): string {
  if (typeof n !== 'string' || n.length === 0 || n.length > 128 || !TOKEN_RE.test(n)) throw invalid(field, 'must be an HTTP header name (letters, digits and !#$%&\'*+-.^_`|~)');
  const l = n.toLowerCase();
  if (FORBIDDEN_HEADERS.has(l) || l.startsWith('x-latchkey-')) throw invalid(field, `the header ${n} cannot be injected (hop-by-hop, framing, Host or Latchkey's own)`);
  return n;
}

function checkLiteral(v: unknown, field: string, max: number): string {
  if (typeof v !== 'string') throw invalid(field, 'must be a string');
  if (v.length > max) throw invalid(field, `is longer than ${max} characters`);
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(v)) throw invalid(field, 'must not contain line breaks or control characters');
  return v;
}

function checkObject(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(field, 'must be an object');
  return v as Record<string, unknown>;
}

function onlyKeys(o: Record<string, unknown>, allowed: string[], field: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw invalid(`${field}.${k}`, 'is not a known field for this auth type');
}

/** The `{{ KEY }}` names in a template value, validated; throws on an unclosed or malformed placeholder. */
function templateKeys(t: string, field: string): string[] {
  const keys: string[] = [];
  for (const m of t.matchAll(PLACEHOLDER_RE)) keys.push(checkSecretName(m[1], field));
  const rest = t.replace(PLACEHOLDER_RE, '');
  if (rest.includes('{{') || rest.includes('}}')) throw invalid(field, 'has a malformed placeholder; write {{ KEY }}');
  return keys;
}

/** Validates an auth rule (fields named `<field>.key` etc.) and returns it normalized. */
export function parseAuthRule(input: unknown, field = 'auth'): AuthRule {
  const o = checkObject(input, field);
  switch (o.type) {
    case 'bearer':
      onlyKeys(o, ['type', 'key'], field);
      return { type: 'bearer', key: checkSecretName(o.key, `${field}.key`) };
    case 'basic': {
      onlyKeys(o, ['type', 'username_key', 'password_key'], field);
      const r: AuthRule = { type: 'basic', username_key: checkSecretName(o.username_key, `${field}.username_key`) };
      if (o.password_key !== undefined && o.password_key !== null) r.password_key = checkSecretName(o.password_key, `${field}.password_key`);
      return r;
    }
    case 'header': {
      onlyKeys(o, ['type', 'name', 'key', 'prefix'], field);
      const r: AuthRule = { type: 'header', name: checkHeaderName(o.name, `${field}.name`), key: checkSecretName(o.key, `${field}.key`) };
      if (o.prefix !== undefined && o.prefix !== null && o.prefix !== '') r.prefix = checkLiteral(o.prefix, `${field}.prefix`, SERVICE_LIMITS.prefix);
      return r;
    }
    case 'query':
      onlyKeys(o, ['type', 'param', 'key'], field);
      if (typeof o.param !== 'string' || !QUERY_PARAM_RE.test(o.param)) throw invalid(`${field}.param`, 'must be a query parameter name (1-128 of letters, digits, _ . - ~ [ ])');
      return { type: 'query', param: o.param, key: checkSecretName(o.key, `${field}.key`) };
    case 'template': {
      onlyKeys(o, ['type', 'headers'], field);
      const h = checkObject(o.headers, `${field}.headers`);
      const names = Object.keys(h);
      if (names.length === 0) throw invalid(`${field}.headers`, 'needs at least one header');
      if (names.length > SERVICE_LIMITS.templateHeaders) throw invalid(`${field}.headers`, `may set at most ${SERVICE_LIMITS.templateHeaders} headers`);
      const seen = new Set<string>();
      const headers: Record<string, string> = {};
      let refs = 0;
      for (const n of names) {
        const f = `${field}.headers.${n}`;
        checkHeaderName(n, f);
        if (seen.has(n.toLowerCase())) throw invalid(f, 'is given twice (header names are case-insensitive)');
        seen.add(n.toLowerCase());
        const v = checkLiteral(h[n], f, SERVICE_LIMITS.headerValue);
        refs += templateKeys(v, f).length;
        headers[n] = v;
      }
      if (refs === 0) throw invalid(`${field}.headers`, 'must reference at least one credential as {{ KEY }}');
      return { type: 'template', headers };
    }
    default:
      throw invalid(`${field}.type`, `must be one of ${AUTH_TYPES.join(', ')}`);
  }
}

/** Every credential a rule references, with the field that names it (for error messages). */
export function credentialRefs(rule: AuthRule, field = 'auth'): Array<{ key: string; field: string }> {
  switch (rule.type) {
    case 'bearer':
    case 'query':
    case 'header':
      return [{ key: rule.key, field: `${field}.key` }];
    case 'basic':
      return [{ key: rule.username_key, field: `${field}.username_key` }, ...(rule.password_key ? [{ key: rule.password_key, field: `${field}.password_key` }] : [])];
    case 'template': {
      const out: Array<{ key: string; field: string }> = [];
      for (const [n, v] of Object.entries(rule.headers)) for (const key of templateKeys(v, `${field}.headers.${n}`)) out.push({ key, field: `${field}.headers.${n}` });
      return out;
    }
  }
}

/** The distinct secret names a rule references, in order of first use. */
export function credentialKeys(rule: AuthRule): string[] {
  return [...new Set(credentialRefs(rule).map((r) => r.key))];
}

/** Lower-case names of the headers a rule sets (the proxy drops the client's own copies). */
export function injectedHeaderNames(rule: AuthRule): string[] {
  switch (rule.type) {
    case 'bearer':
    case 'basic':
      return ['authorization'];
    case 'header':
      return [rule.name.toLowerCase()];
    case 'query':
      return [];
    case 'template':
      return Object.keys(rule.headers).map((h) => h.toLowerCase());
  }
}

export interface Injection {
  headers: Record<string, string>;
  query: Record<string, string>;
}

function value(values: Record<string, string> | Map<string, string>, key: string, inHeader: boolean): string {
  const v = values instanceof Map ? values.get(key) : Object.prototype.hasOwnProperty.call(values, key) ? values[key] : undefined;
  if (typeof v !== 'string') throw new LatchkeyError(502, 'credential_not_found', `credential '${key}' was not found for this service`);
  // a line break in a header value would split the request (header injection)
  if (inHeader && /[\x00\x0a\x0d]/.test(v)) throw new LatchkeyError(502, 'credential_invalid', `credential '${key}' contains a line break or NUL and cannot be sent in a header`);
  return v;
}

/** The headers and query parameters to inject, given the credential values (by secret name). */
export function applyAuth(rule: AuthRule, values: Record<string, string> | Map<string, string>): Injection {
  switch (rule.type) {
    case 'bearer':
      return { headers: { Authorization: `Bearer ${value(values, rule.key, true)}` }, query: {} };
    case 'basic': {
      const user = value(values, rule.username_key, false);
      const pass = rule.password_key ? value(values, rule.password_key, false) : '';
      return { headers: { Authorization: `Basic ${Buffer.from(`${user}:${pass}`, 'utf8').toString('base64')}` }, query: {} };
    }
    case 'header':
      return { headers: { [rule.name]: `${rule.prefix ?? ''}${value(values, rule.key, true)}` }, query: {} };
    case 'query':
      return { headers: {}, query: { [rule.param]: value(values, rule.key, false) } };
    case 'template': {
      const headers: Record<string, string> = {};
      for (const [n, t] of Object.entries(rule.headers)) headers[n] = t.replace(PLACEHOLDER_RE, (_m, key: string) => value(values, key, true));
      return { headers, query: {} };
    }
  }
}

// ---- service specs

/** A service as configured (what the API takes and returns, and what the proxy matches against). */
export interface ServiceConfig {
  name: string;
  /** the full matcher: host[:port][/path-prefix] */
  host: string;
  auth: AuthRule;
  /** upper case; empty = every method */
  methods: string[];
  /** empty = every path (under the matcher's own prefix) */
  path_prefixes: string[];
  quota_per_minute: number | null;
  enabled: boolean;
  description: string | null;
}

const SPEC_FIELDS = ['name', 'host', 'auth', 'methods', 'path_prefixes', 'quota_per_minute', 'enabled', 'description'];

export function checkServiceName(n: unknown, field = 'name'): string {
  if (typeof n !== 'string' || !SERVICE_NAME_RE.test(n)) throw invalid(field, 'must be 1-63 lower-case letters, digits, _ . - (starting with a letter or digit)');
  return n;
}

/**
 * Validates a service spec (PUT semantics: absent optional fields take their defaults). `name`
 * comes from the spec unless given (the PUT path names it). Fields are reported under `prefix`.
 */
export function parseServiceSpec(input: unknown, opts: { name?: string; prefix?: string } = {}): ServiceConfig {
  const pre = opts.prefix ? `${opts.prefix}.` : '';
  const o = checkObject(input, opts.prefix || 'body');
  for (const k of Object.keys(o)) if (!SPEC_FIELDS.includes(k)) throw invalid(`${pre}${k}`, 'is not a known field');
  let name: string;
  if (opts.name !== undefined) {
    if (o.name !== undefined && o.name !== opts.name) throw invalid(`${pre}name`, 'differs from the name in the path');
    name = checkServiceName(opts.name, `${pre}name`);
  } else name = checkServiceName(o.name, `${pre}name`);
  const m = parseHostMatcher(o.host, `${pre}host`);
  const auth = parseAuthRule(o.auth, `${pre}auth`);
  let methods: string[] = [];
  if (o.methods !== undefined && o.methods !== null) {
    if (!Array.isArray(o.methods)) throw invalid(`${pre}methods`, 'must be an array of HTTP methods');
    if (o.methods.length > SERVICE_LIMITS.methods) throw invalid(`${pre}methods`, `may list at most ${SERVICE_LIMITS.methods} methods`);
    methods = [...new Set(o.methods.map((x, i) => {
      if (typeof x !== 'string' || x.length > 20 || !TOKEN_RE.test(x)) throw invalid(`${pre}methods[${i}]`, 'must be an HTTP method like GET');
      return x.toUpperCase();
    }))];
  }
  let path_prefixes: string[] = [];
  if (o.path_prefixes !== undefined && o.path_prefixes !== null) {
    if (!Array.isArray(o.path_prefixes)) throw invalid(`${pre}path_prefixes`, 'must be an array of paths starting with /');
    if (o.path_prefixes.length > SERVICE_LIMITS.pathPrefixes) throw invalid(`${pre}path_prefixes`, `may list at most ${SERVICE_LIMITS.pathPrefixes} paths`);
    const out: string[] = [];
    let all = false;
    o.path_prefixes.forEach((p, i) => {
      const c = checkPathPrefix(p, `${pre}path_prefixes[${i}]`);
      if (c === null) all = true;
      else if (!out.includes(c)) out.push(c);
    });
    path_prefixes = all ? [] : out;
  }
  let quota: number | null = null;
  if (o.quota_per_minute !== undefined && o.quota_per_minute !== null) {
    const q = o.quota_per_minute;
    if (typeof q !== 'number' || !Number.isInteger(q) || q < SERVICE_LIMITS.quotaMin || q > SERVICE_LIMITS.quotaMax) {
      throw invalid(`${pre}quota_per_minute`, `must be a whole number from ${SERVICE_LIMITS.quotaMin} to ${SERVICE_LIMITS.quotaMax}`);
    }
    quota = q;
  }
  if (o.enabled !== undefined && typeof o.enabled !== 'boolean') throw invalid(`${pre}enabled`, 'must be true or false');
  let description: string | null = null;
  if (o.description !== undefined && o.description !== null) {
    if (typeof o.description !== 'string') throw invalid(`${pre}description`, 'must be a string');
    if (o.description.length > SERVICE_LIMITS.description) throw invalid(`${pre}description`, `is longer than ${SERVICE_LIMITS.description} characters`);
    description = o.description;
  }
  return { name, host: formatHostMatcher(m), auth, methods, path_prefixes, quota_per_minute: quota, enabled: o.enabled !== false, description };
}

// ---- matching

/** What matchService needs of a service (a ServiceConfig, or anything with these fields). */
export interface Matchable {
  name: string;
  host: string;
  methods?: readonly string[];
  path_prefixes?: readonly string[];
  enabled?: boolean;
}

export interface ServiceMatch<S extends Matchable> {
  service: S;
  matcher: HostMatcher;
  /** true when both the method and the path are allowed */
  allowed: boolean;
  methodAllowed: boolean;
  pathAllowed: boolean;
  /** why not, when not allowed */
  reason: 'service_disabled' | 'method_not_allowed' | 'path_not_allowed' | null;
}

// parsing a matcher is cheap but not free; the proxy matches on every request
const MATCHER_CACHE = new Map<string, HostMatcher | null>();

function cachedMatcher(host: string): HostMatcher | null {
  let m = MATCHER_CACHE.get(host);
  if (m === undefined) {
    try {
      m = parseHostMatcher(host);
    } catch {
      m = null; // an invalid stored matcher matches nothing
    }
    if (MATCHER_CACHE.size > 10_000) MATCHER_CACHE.clear();
    MATCHER_CACHE.set(host, m);
  }
  return m;
}

/**
 * The best service for a request, or null when none matches the host, port and the matcher's
 * path prefix. A disabled service takes part in the ranking and, when it is the best, refuses
 * (`service_disabled`): disabling a narrow service must not hand its paths to a broader one and
 * its credential. Ranking: exact host over wildcard, then the longer matcher path prefix,
 * then an explicit port over any port, then name (deterministic). Then whether the method and
 * path are allowed (`methods` and `path_prefixes`; empty = all; an ambiguous path is allowed
 * only when no path rule applies).
 */
export function matchService<S extends Matchable>(services: readonly S[], host: string, port: number | null, path: string, method: string): ServiceMatch<S> | null {
  const np = normalizePath(path);
  let best: { s: S; m: HostMatcher } | null = null;
  for (const s of services) {
    const m = cachedMatcher(s.host);
    if (!m || !hostMatches(m, host, port)) continue;
    if (m.pathPrefix !== null && (np === null || !pathHasPrefix(np, m.pathPrefix))) continue;
    if (!best || better(m, s, best.m, best.s)) best = { s, m };
  }
  if (!best) return null;
  if (best.s.enabled === false) return { service: best.s, matcher: best.m, allowed: false, methodAllowed: true, pathAllowed: true, reason: 'service_disabled' };
  const methods = best.s.methods ?? [];
  const prefixes = best.s.path_prefixes ?? [];
  const methodAllowed = methods.length === 0 || methods.includes(method.toUpperCase());
  const pathAllowed = prefixes.length === 0 || (np !== null && prefixes.some((p) => pathHasPrefix(np, p)));
  return {
    service: best.s, matcher: best.m, allowed: methodAllowed && pathAllowed, methodAllowed, pathAllowed,
    reason: !methodAllowed ? 'method_not_allowed' : !pathAllowed ? 'path_not_allowed' : null,
  };
}

function better(a: HostMatcher, sa: Matchable, b: HostMatcher, sb: Matchable): boolean {
  if (a.wildcard !== b.wildcard) return !a.wildcard;
  const al = a.pathPrefix?.length ?? 0;
  const bl = b.pathPrefix?.length ?? 0;
  if (al !== bl) return al > bl;
  if ((a.port === null) !== (b.port === null)) return a.port !== null;
  // equally specific: an enabled service wins over a disabled one (a replacement made beside an
  // old service that was then disabled); only a strictly more specific disabled one refuses
  if ((sa.enabled === false) !== (sb.enabled === false)) return sa.enabled !== false;
  return sa.name < sb.name;
}
