/**
 * The control plane's perimeter, as one plugin: security headers (helmet's, computed once; one set
 * for the console's pages and files, a shorter and stricter one for the API), a closed CORS
 * policy with a cross-origin check for cookie-authenticated writes, and tiered rate limits
 * (@fastify/rate-limit's stores), counted in memory or, with a Redis URL, shared by every replica.
 *
 * Rate-limit tiers (all fixed windows; `max` 0 turns a tier off):
 *   global    per client IP, every request that is not authenticated by a credential
 *             (no token or cookie presented, public routes, static files), checked before auth
 *   actor     per authenticated person or agent (key = actor id), checked after auth
 *   login     per IP, POST /v1/auth/login (in addition to the per-account lockout in core/auth.ts)
 *   token     per IP, presented credentials that fail authentication (401s); once over, every
 *             credentialed request from that IP is refused before authentication for the window
 *   proposal  per actor, POST /v1/vaults/:vault/proposals
 *   request   per agent, POST /v1/vaults/:vault/grants (an agent's access request)
 *   approval  per IP, GET /v1/proposals/approval?token=
 *
 * Redis down: requests are still served, counted in this process's memory instead, with a
 * warning in the log (at most one every 30 s) — fail open to per-replica limits, never to none.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { LatchkeyError, StartupError } from '../core/errors.js';
import { isApiPath, problem, servedPath } from './http.js';
import { SESSION_COOKIE } from './routes/access.js';
import type { Perimeter } from './hot-read.js';
import { bearerToken as bearer } from '../proxy/headers.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** the perimeter's checks, lent to the secret-read hot path (hot-read.ts) */
    latchkeyPerimeter?: Perimeter;
  }
}

// ---------------------------------------------------------------- configuration

export interface Limit {
  /** requests per window; 0 = this tier is off */
  max: number;
  windowMs: number;
}

export const RATE_TIERS = ['global', 'actor', 'login', 'token', 'proposal', 'request', 'approval'] as const;
export type RateTier = (typeof RATE_TIERS)[number];
export type RateLimits = Record<RateTier, Limit>;

const MIN = 60_000;
export const DEFAULT_RATE_LIMITS: Readonly<RateLimits> = Object.freeze({
  global: { max: 600, windowMs: MIN },
  actor: { max: 6000, windowMs: MIN },
  login: { max: 10, windowMs: MIN },
  token: { max: 30, windowMs: MIN },
  proposal: { max: 30, windowMs: MIN },
  request: { max: 30, windowMs: MIN },
  approval: { max: 60, windowMs: MIN },
});

/** `600` (per minute), `600/1m`, `20/30s`, `5000/1h`, `0` or `off`. */
export function parseLimit(text: string, what: string): Limit {
  const t = text.trim().toLowerCase();
  if (t === 'off' || t === '0') return { max: 0, windowMs: MIN };
  const m = /^(\d{1,9})(?:\s*\/\s*(\d{1,6})?\s*(ms|s|m|h))?$/.exec(t);
  if (!m) throw new StartupError(`${what} must be a number of requests per minute, or N/<window> such as 20/30s, 600/1m, 5000/1h, or off`, 2);
  const unit = { ms: 1, s: 1000, m: MIN, h: 60 * MIN }[(m[3] ?? 'm') as 'ms' | 's' | 'm' | 'h'];
  const windowMs = (m[2] === undefined ? 1 : Number(m[2])) * unit;
  if (windowMs < 1000 || windowMs > 24 * 60 * MIN) throw new StartupError(`${what}: the window must be between 1 s and 24 h`, 2);
  return { max: Number(m[1]), windowMs };
}

/**
 * Limits from the environment: LATCHKEY_RATE_LIMIT=off turns every tier off;
 * LATCHKEY_RATE_LIMIT_<TIER> (GLOBAL, ACTOR, LOGIN, TOKEN, PROPOSAL, REQUEST, APPROVAL) sets one.
 */
export function rateLimitsFromEnv(env: NodeJS.ProcessEnv): Partial<RateLimits> {
  const out: Partial<RateLimits> = {};
  const all = env.LATCHKEY_RATE_LIMIT?.trim().toLowerCase();
  if (all) {
    if (all !== 'off' && all !== 'on') throw new StartupError('LATCHKEY_RATE_LIMIT must be on or off (set tiers with LATCHKEY_RATE_LIMIT_<TIER>)', 2);
    if (all === 'off') for (const t of RATE_TIERS) out[t] = { max: 0, windowMs: MIN };
  }
  for (const t of RATE_TIERS) {
    const name = `LATCHKEY_RATE_LIMIT_${t.toUpperCase()}`;
    const v = env[name];
    if (v !== undefined && v.trim() !== '') out[t] = parseLimit(v, name);
  }
  return out;
}

export interface SecurityOptions {
  /** the control plane is served over TLS: HSTS is sent */
  tls: boolean;
  /** overrides per tier (merged over DEFAULT_RATE_LIMITS) */
  rateLimits?: Partial<RateLimits>;
  /** share counters through this Redis (redis:// or rediss://) */
  redisUrl?: string | null;
  /** key prefix in Redis (default `latchkey:rl:`) */
  redisPrefix?: string;
  /** the security headers (securityHeaders()), when the caller already has them */
  headers?: SecurityHeaders;
}

// ---------------------------------------------------------------- headers

export const CONTENT_SECURITY_POLICY = {
  'default-src': ["'self'"],
  'script-src': ["'self'"],
  'style-src': ["'self'"],
  'img-src': ["'self'", 'data:'],
  'connect-src': ["'self'"],
  'frame-ancestors': ["'none'"],
  'base-uri': ["'none'"],
  'form-action': ["'self'"],
  'object-src': ["'none'"],
};

/**
 * The API's answers (JSON, problem+json, proxied responses) are never pages: nothing may load from
 * them and nothing may frame them.
 */
export const API_CONTENT_SECURITY_POLICY = {
  'default-src': ["'none'"],
  'frame-ancestors': ["'none'"],
};

/** Powerful browser features the console never uses, denied to it and to anything it could embed. */
export const PERMISSIONS_POLICY = [
  'accelerometer', 'autoplay', 'bluetooth', 'camera', 'display-capture', 'encrypted-media', 'geolocation', 'gyroscope', 'hid',
  'idle-detection', 'magnetometer', 'microphone', 'midi', 'payment', 'screen-wake-lock', 'serial', 'usb', 'xr-spatial-tracking',
].map((f) => `${f}=()`).join(', ');

export const HSTS_MAX_AGE = 31_536_000;

// ---------------------------------------------------------------- counters (memory, or Redis with a memory fallback)

type IncrResult = { current: number; ttl: number };
type IncrCb = (err: Error | null, res: IncrResult | null) => void;
interface StoreLike { incr(key: string, cb: IncrCb, timeWindow: number, max: number): void; child(o: unknown): StoreLike }
type StoreCtor = new (...args: unknown[]) => StoreLike;

interface RedisLike {
  status: string;
  defineCommand(name: string, def: unknown): void;
  on(ev: string, fn: (...a: unknown[]) => void): unknown;
  once(ev: string, fn: (...a: unknown[]) => void): unknown;
  removeListener(ev: string, fn: (...a: unknown[]) => void): unknown;
  quit(): Promise<unknown>;
  disconnect(): void;
}

function throttled(everyMs: number) {
  let last = 0;
  return () => {
    const now = Date.now();
    if (now - last < everyMs) return false;
    last = now;
    return true;
  };
}

// ---------------------------------------------------------------- the plugin

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const APPROVAL_PATH = '/v1/proposals/approval';

/** Requests the app's auth hook authenticates (see app.ts): /v1 routes that are not public. */
function authenticated(req: FastifyRequest): boolean {
  return servedPath(req).startsWith('/v1/') && !req.routeOptions.config?.public;
}

/** The request carries a credential the auth hook will check (a bearer token or the session cookie). */
function presentsCredential(req: FastifyRequest): boolean {
  return !!(bearer(req.headers.authorization) || req.cookies?.[SESSION_COOKIE]);
}

/**
 * The Origin is this server: the same host (and port) as the Host header, and https when this
 * listener is TLS. On a plain-http listener an https Origin is accepted too, for a TLS-terminating
 * reverse proxy in front (which must pass the Host header through).
 */
function sameOrigin(origin: string, req: FastifyRequest, tls: boolean): boolean {
  if (origin === 'null') return false;
  try {
    const u = new URL(origin);
    const scheme = tls ? u.protocol === 'https:' : u.protocol === 'http:' || u.protocol === 'https:';
    return scheme && u.host.toLowerCase() === String(req.host ?? '').toLowerCase();
  } catch {
    return false;
  }
}

function rateLimited(reply: FastifyReply, tier: RateTier, max: number, seconds: number): LatchkeyError {
  const s = Math.max(1, seconds);
  reply.header('Retry-After', String(s));
  reply.header('RateLimit-Limit', String(max));
  reply.header('RateLimit-Remaining', '0');
  reply.header('RateLimit-Reset', String(s));
  return new LatchkeyError(429, 'rate_limited', `too many requests (${tier} limit: ${max}); retry after ${s} s`, undefined, { retry_after: s, limit: tier });
}

type Check = { tier: RateTier; max: number; remaining: number; ttlSeconds: number; exceeded: boolean };
/** On a raw request the hot path counted and found over the actor limit (hot-read.ts): refused without counting again. */
const COUNTED_OVER = Symbol('latchkey.counted-over');
/** Counts a request in one tier: at once when counted in this process, else (Redis) when Redis answers. */
type Limiter = (req: FastifyRequest) => Check | Promise<Check>;

export interface SecurityHeaders {
  /** the console's pages and files: helmet's full set for documents */
  document: Array<[string, string]>;
  /**
   * the API (`/v1`) and the base-URL proxy: the headers every response must carry (CSP, X-Frame-Options,
   * nosniff, Referrer-Policy, Permissions-Policy, HSTS under TLS) and Cross-Origin-Resource-Policy,
   * without helmet's headers that only mean something for a document a browser renders
   * (Cross-Origin-Opener-Policy, Origin-Agent-Cluster, X-DNS-Prefetch-Control, X-Download-Options,
   * X-Permitted-Cross-Domain-Policies, X-XSS-Protection). Their size counted: with them a secret
   * read's answer was 1.2 KB, and leaving them out saved 5-8 % of a read's CPU.
   */
  api: Array<[string, string]>;
}

/**
 * The security headers, computed once by helmet from our policy (plus Permissions-Policy, which
 * helmet does not set). helmet's middleware is deterministic for a fixed configuration (no CSP
 * nonces here), so running it once against a recording response gives exactly the headers it
 * would set on every response; @fastify/helmet instead rebuilds the middleware per request, which
 * cost about 6 % of a secret read's CPU.
 */
export async function securityHeaders(tls: boolean): Promise<SecurityHeaders> {
  const { default: helmet } = await import('helmet');
  const common = {
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    strictTransportSecurity: tls ? { maxAge: HSTS_MAX_AGE, includeSubDomains: false } : false,
    crossOriginResourcePolicy: { policy: 'same-origin' },
  } as const;
  const record = (mw: ReturnType<typeof helmet>): Array<[string, string]> => {
    const out = new Map<string, string>();
    const res = {
      setHeader: (name: string, value: unknown) => void out.set(name, String(value)),
      removeHeader: (name: string) => void out.delete(name),
    };
    let failed: unknown = null;
    mw({} as never, res as never, (err?: unknown) => { failed = err ?? null; });
    if (failed) throw failed;
    out.set('Permissions-Policy', PERMISSIONS_POLICY);
    return [...out];
  };
  return {
    document: record(helmet({ ...common, contentSecurityPolicy: { useDefaults: false, directives: CONTENT_SECURITY_POLICY }, crossOriginOpenerPolicy: { policy: 'same-origin' } })),
    api: record(helmet({
      ...common, contentSecurityPolicy: { useDefaults: false, directives: API_CONTENT_SECURITY_POLICY },
      crossOriginOpenerPolicy: false, originAgentCluster: false, xDnsPrefetchControl: false, xDownloadOptions: false, xPermittedCrossDomainPolicies: false, xXssProtection: false,
    })),
  };
}

/** The perimeter plugin; register it in buildApp BEFORE the auth hook (its onRequest hooks must run first). */
export function securityPlugin(opts: SecurityOptions) {
  const plugin = async (app: FastifyInstance) => {
    const limits = Object.fromEntries(RATE_TIERS.map((t) => [t, opts.rateLimits?.[t] ?? DEFAULT_RATE_LIMITS[t]])) as RateLimits;
    const warn = throttled(30_000);

    // ---- headers on every response, set in the first hook, so they survive errors (a hook that
    // throws later, auth or a rate limit, cannot drop them: Fastify's error path keeps the reply's
    // headers). On the reply, not the raw response: a header set on the raw response is set again
    // by Fastify's writeHead (Node's "progressive headers" slow path), which made the security
    // headers ~15 % of an authenticated request's CPU.
    const sets = opts.headers ?? (await securityHeaders(opts.tls));
    const object = (h: Array<[string, string]>) => Object.fromEntries(h.map(([k, v]) => [k.toLowerCase(), v]));
    const headers = { api: object(sets.api), document: object(sets.document) };
    app.addHook('onRequest', (req, reply, done) => {
      reply.headers(isApiPath(servedPath(req)) ? headers.api : headers.document);
      done();
    });

    // ---- counters
    // @ts-expect-error the stores are CommonJS files without their own type declarations
    const { default: LocalStore } = (await import('@fastify/rate-limit/store/LocalStore.js')) as { default: StoreCtor };
    // @ts-expect-error as above
    const { default: RedisStore } = (await import('@fastify/rate-limit/store/RedisStore.js')) as { default: StoreCtor };

    let redis: RedisLike | null = null;
    if (opts.redisUrl) {
      const { Redis } = await import('ioredis');
      const client = new Redis(opts.redisUrl, {
        connectionName: `latchkey-rl-${process.pid}`, // visible in CLIENT LIST
        enableOfflineQueue: false, // a command while disconnected fails at once (and falls back) instead of queueing
        maxRetriesPerRequest: 1,
        commandTimeout: 1000,
        connectTimeout: 3000,
        retryStrategy: (n: number) => Math.min(n * 200, 5000),
      }) as unknown as RedisLike;
      client.on('error', (err) => {
        if (warn()) app.log.warn({ code: (err as { code?: string })?.code }, 'rate limits: Redis unreachable; counting in this process until it is back');
      });
      redis = client;
      app.addHook('onClose', async () => {
        await Promise.race([client.quit().catch(() => client.disconnect()), new Promise((r) => setTimeout(r, 1000))]);
        client.disconnect();
      });
      // start counting in Redis from the first request when it is there; never block start-up on it
      await new Promise<void>((resolve) => {
        const finish = (ok: boolean) => {
          clearTimeout(timer);
          client.removeListener('ready', onReady);
          client.removeListener('error', onError);
          if (!ok) app.log.warn('rate limits: Redis is not reachable at start-up; counting in this process until it is');
          resolve();
        };
        const onReady = () => finish(true);
        const onError = () => finish(false);
        const timer = setTimeout(() => finish(false), 3000);
        if (client.status === 'ready') return finish(true);
        client.once('ready', onReady);
        client.once('error', onError);
      });
    }
    const prefix = opts.redisPrefix ?? 'latchkey:rl:';

    /** Redis when it answers, this process's memory when it does not. */
    class SharedStore implements StoreLike {
      private readonly local: StoreLike = new LocalStore(false, false, 10_000);
      private readonly shared: StoreLike | null = redis ? new RedisStore(false, false, redis, prefix) : null;
      incr(key: string, cb: IncrCb, timeWindow: number, max: number) {
        if (!this.shared) return this.local.incr(key, cb, timeWindow, max);
        this.shared.incr(key, (err, res) => {
          if (!err && res) return cb(null, res);
          if (warn()) app.log.warn({ code: (err as { code?: string } | null)?.code }, 'rate limits: Redis command failed; counting in this process');
          this.local.incr(key, cb, timeWindow, max);
        }, timeWindow, max);
      }
      child() {
        return new SharedStore();
      }
    }

    // Each tier counts in a store of its own, under the key `<tier>:<who>`, as the plugin's own
    // limiters did (so replicas of either kind share counts), and straight into the store: its
    // per-request wrapper took several promises per request, and an in-process count needs none.
    const limiter = (tier: RateTier, key: (req: FastifyRequest) => string): Limiter | null => {
      // whole numbers, as the plugin made them (a fractional window would be refused by Redis's PEXPIRE)
      const max = Math.floor(limits[tier].max);
      const windowMs = Math.floor(limits[tier].windowMs);
      if (!(max > 0) || !(windowMs > 0)) return null;
      const store = new SharedStore();
      const check = (res: IncrResult): Check => ({ tier, max, remaining: Math.max(0, max - res.current), ttlSeconds: Math.ceil(res.ttl / 1000), exceeded: res.current > max });
      return (req) => {
        let now: Check | Error | null = null;
        let later: ((c: Check | Error) => void) | null = null;
        store.incr(`${tier}:${key(req)}`, (err, res) => {
          const c = err || !res ? (err ?? new Error('the rate-limit store gave no count')) : check(res);
          if (later) later(c);
          else now = c;
        }, windowMs, max);
        // set by the store's callback when it answered at once (TypeScript cannot see that)
        const got = now as Check | Error | null;
        if (got instanceof Error) throw got;
        if (got) return got;
        return new Promise<Check>((resolve, reject) => {
          later = (c) => (c instanceof Error ? reject(c) : resolve(c));
        });
      };
    };
    const byIp = (req: FastifyRequest) => `ip:${req.ip}`;
    const byActor = (req: FastifyRequest) => {
      const p = req.ctx?.principal;
      return p && (p.kind === 'user' || p.kind === 'agent') ? `${p.kind}:${p.id}` : `ip:${req.ip}`;
    };
    const L = {
      global: limiter('global', byIp),
      actor: limiter('actor', byActor),
      login: limiter('login', byIp),
      token: limiter('token', byIp),
      proposal: limiter('proposal', byActor),
      request: limiter('request', byActor),
      approval: limiter('approval', byIp),
    };

    type Counted = { over: Check } | { headers: Array<[string, string]> };
    /** Counts the request in each tier: the one over (the longest wait first), else the RateLimit headers of the tightest. At once when every tier answers at once. */
    function count(req: FastifyRequest, tiers: Array<Limiter | null>): Counted | Promise<Counted> {
      const active = tiers.filter((t): t is Limiter => !!t);
      if (!active.length) return { headers: [] };
      const checks = active.map((t) => t(req));
      return checks.some((c) => c instanceof Promise) ? Promise.all(checks).then(outcome) : outcome(checks as Check[]);
    }
    function outcome(checks: Check[]): Counted {
      const over = checks.filter((c) => c.exceeded).sort((a, b) => b.ttlSeconds - a.ttlSeconds)[0];
      if (over) return { over };
      const tight = checks.reduce((a, b) => (b.remaining / b.max < a.remaining / a.max ? b : a));
      return { headers: [['RateLimit-Limit', String(tight.max)], ['RateLimit-Remaining', String(tight.remaining)], ['RateLimit-Reset', String(tight.ttlSeconds)]] };
    }

    /** Counts the request in each tier; refuses with 429 if any is over, else reports the tightest. */
    async function enforce(req: FastifyRequest, reply: FastifyReply, tiers: Array<Limiter | null>) {
      const c = await count(req, tiers);
      if ('over' in c) throw rateLimited(reply, c.over.tier, c.over.max, c.over.ttlSeconds);
      for (const [k, v] of c.headers) reply.header(k, v);
    }

    // IPs whose failed credentials went over the token tier: credentialed requests are refused before
    // authentication until `until`. A cache of the (shared) counter: each replica learns it on its next failure.
    const blocked = new Map<string, { until: number; max: number }>();
    const blockedFor = (ip: string) => {
      const b = blocked.get(ip);
      if (!b) return null;
      if (b.until <= Date.now()) {
        blocked.delete(ip);
        return null;
      }
      return b;
    };

    // ---- before authentication: preflight, cross-origin writes, per-IP tiers
    app.addHook('onRequest', async (req, reply) => {
      if (req.method === 'OPTIONS' && req.headers.origin !== undefined && req.headers['access-control-request-method'] !== undefined) {
        reply.header('X-Request-Id', req.id);
        throw new LatchkeyError(403, 'cors_not_allowed', 'cross-origin requests are not allowed; the console is served from this origin');
      }
      const login = req.routeOptions.config?.rateTier === 'login';
      const cookieAuth = !bearer(req.headers.authorization) && !!req.cookies?.[SESSION_COOKIE];
      if (UNSAFE.has(req.method) && servedPath(req).startsWith('/v1/') && (cookieAuth || login)) {
        const origin = req.headers.origin;
        const site = req.headers['sec-fetch-site'];
        const foreign = origin !== undefined ? !sameOrigin(origin, req, opts.tls) : site === 'cross-site' || site === 'same-site';
        if (foreign) {
          reply.header('X-Request-Id', req.id);
          throw new LatchkeyError(403, 'cross_origin_refused', 'a request from another origin cannot use the console session; use a bearer token');
        }
      }
      if (servedPath(req).startsWith('/proxy/')) return; // the base-URL proxy authenticates (and meters) its own traffic
      if (authenticated(req) && presentsCredential(req)) {
        const b = blockedFor(req.ip);
        if (b) {
          reply.header('X-Request-Id', req.id);
          throw rateLimited(reply, 'token', b.max, Math.ceil((b.until - Date.now()) / 1000));
        }
        return; // counted per actor once authenticated
      }
      const tiers = [L.global];
      if (login) tiers.push(L.login);
      if (req.routeOptions.url === APPROVAL_PATH && (req.method === 'GET' || req.method === 'HEAD')) tiers.push(L.approval);
      try {
        await enforce(req, reply, tiers);
      } catch (err) {
        reply.header('X-Request-Id', req.id);
        throw err;
      }
    });

    // the same checks, with the same counters, for the secret-read hot path (hot-read.ts), which
    // answers without a FastifyRequest: the actor tier's key reads only the address and the principal
    const perimeter: Perimeter = {
      blocked: (ip) => blockedFor(ip) !== null,
      countActor: (principal, ip, raw) => {
        const c = count({ ip, ctx: { principal } } as unknown as FastifyRequest, [L.actor]);
        const done = (x: Counted) => {
          if (!('over' in x)) return x.headers;
          // refused by Fastify's hook below, which must not count it a second time
          (raw as unknown as Record<symbol, Check>)[COUNTED_OVER] = x.over;
          return null;
        };
        return c instanceof Promise ? c.then(done) : done(c);
      },
    };
    app.decorate('latchkeyPerimeter', perimeter);

    // ---- after authentication (all onRequest hooks, the auth hook included, have run): per-actor tiers
    app.addHook('preParsing', async (req, reply) => {
      const p = req.ctx?.principal;
      if (!p || (p.kind !== 'user' && p.kind !== 'agent')) return;
      const counted = (req.raw as unknown as Record<symbol, Check | undefined>)[COUNTED_OVER];
      if (counted) throw rateLimited(reply, counted.tier, counted.max, counted.ttlSeconds);
      const tier = req.routeOptions.config?.rateTier;
      const tiers = [L.actor];
      if (tier === 'proposal' && req.method === 'POST') tiers.push(L.proposal);
      if (tier === 'request' && req.method === 'POST' && p.kind === 'agent') tiers.push(L.request);
      await enforce(req, reply, tiers);
    });

    // ---- on the way out: failed credentials count; CORS stays closed; every 429 says when to retry
    const onSendAsync = async (req: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> => {
      if (reply.statusCode === 401 && L.token && authenticated(req) && presentsCredential(req) && req.ctx?.principal.kind === 'anonymous') {
        const c = await L.token(req);
        if (c.exceeded) {
          blocked.set(req.ip, { until: Date.now() + Math.max(1, c.ttlSeconds) * 1000, max: c.max });
          if (blocked.size > 10_000) for (const [ip, b] of blocked) if (b.until <= Date.now()) blocked.delete(ip);
          const err = rateLimited(reply, 'token', c.max, c.ttlSeconds);
          reply.code(429).type('application/problem+json').removeHeader('www-authenticate');
          return JSON.stringify(problem(429, err.code, err.message, req.id, undefined, err.extra));
        }
      }
      if (reply.statusCode === 429 && !reply.hasHeader('retry-after')) {
        let s = 60;
        try {
          const body = JSON.parse(String(payload)) as { retry_after?: unknown };
          if (typeof body.retry_after === 'number' && body.retry_after > 0) s = Math.ceil(body.retry_after);
        } catch { /* not JSON: the default stands */ }
        reply.header('Retry-After', String(s));
      }
      return payload;
    };
    // a callback hook: the common answer (neither 401 nor 429) passes without a promise
    app.addHook('onSend', (req, reply, payload, done) => {
      for (const h of Object.keys(reply.getHeaders())) {
        if (h.toLowerCase().startsWith('access-control-')) {
          reply.removeHeader(h);
          reply.raw.removeHeader(h);
        }
      }
      if (reply.statusCode !== 401 && reply.statusCode !== 429) {
        done(null, payload);
        return;
      }
      onSendAsync(req, reply, payload).then((p) => done(null, p), (err: Error) => done(err));
    });

  };
  // like fastify-plugin: the hooks apply to the whole app, not an encapsulated child
  (plugin as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')] = true;
  (plugin as unknown as Record<symbol, unknown>)[Symbol.for('fastify.display-name')] = 'latchkey-security';
  return plugin;
}
