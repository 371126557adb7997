/**
 * Rate limits on real servers: the tiers (login, global per IP, per actor, failed tokens, proposals,
 * access requests, approval links), the 429 shape (problem+json `rate_limited`, Retry-After,
 * RateLimit-*), configuration from options and the environment, counters in memory, counters
 * shared through Redis by two servers on one database (both backends), and serving on when Redis
 * is down.
 *
 * Redis at LATCHKEY_TEST_REDIS_URL (default redis://127.0.0.1:6379): required when
 * LATCHKEY_REQUIRE_PG=1, otherwise its tests are skipped with one loud line.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_RATE_LIMITS, parseLimit, rateLimitsFromEnv, type RateLimits } from '../src/server/security.js';
import { startServer, type RunningServer, type ServerOptions } from '../src/server/start.js';
import { describeBackends } from './helpers/backends.js';

const MASTER = '7c'.repeat(32);
const EMAIL = 'owner@example.test';
const PASSWORD = 'correct horse battery staple';
const REDIS_URL = process.env.LATCHKEY_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const REQUIRE_REDIS = process.env.LATCHKEY_REQUIRE_PG === '1';

async function probeRedis(): Promise<string | null> {
  const c = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, connectTimeout: 2000, retryStrategy: () => null });
  c.on('error', () => {});
  try {
    await c.connect();
    return (await c.ping()) === 'PONG' ? null : 'no PONG';
  } catch (err) {
    return (err as Error).message;
  } finally {
    c.disconnect();
  }
}
const redisProblem = await probeRedis();
if (redisProblem && !REQUIRE_REDIS) process.stderr.write(`\n*** Redis rate-limit tests SKIPPED: unreachable at ${REDIS_URL}: ${redisProblem} (LATCHKEY_REQUIRE_PG=1 makes this fail) ***\n`);

type Res = { status: number; headers: Headers; json: any; text: string };

async function call(base: string, method: string, path: string, o: { token?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<Res> {
  const r = await fetch(base + path, {
    method,
    headers: { ...(o.token ? { authorization: `Bearer ${o.token}` } : {}), ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}), ...o.headers },
    body: o.body === undefined ? undefined : JSON.stringify(o.body),
  });
  const text = await r.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, json, text };
}

/** The 429 every tier answers with. */
function expect429(r: Res, tier: string, limit: number, windowSeconds = 60) {
  expect(r.status, r.text).toBe(429);
  expect(r.headers.get('content-type')).toContain('application/problem+json');
  expect(r.json).toMatchObject({ status: 429, code: 'rate_limited', type: expect.stringMatching(/rate_limited$/), limit: tier, request_id: expect.any(String) });
  expect(r.json.request_id).toBe(r.headers.get('x-request-id'));
  const retry = Number(r.headers.get('retry-after'));
  expect(Number.isInteger(retry) && retry >= 1 && retry <= windowSeconds, `Retry-After ${r.headers.get('retry-after')}`).toBe(true);
  expect(r.json.retry_after).toBe(retry);
  expect(r.headers.get('ratelimit-limit')).toBe(String(limit));
  expect(r.headers.get('ratelimit-remaining')).toBe('0');
  expect(r.headers.get('ratelimit-reset')).toBe(String(retry));
  // the perimeter headers are on refusals too
  expect(r.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
  expect(r.headers.get('x-frame-options')).toBe('DENY');
}

const perMin = (max: number) => ({ max, windowMs: 60_000 });

describe('rate limits (memory)', () => {
  const homes: string[] = [];
  const servers: RunningServer[] = [];

  async function boot(rateLimits: Partial<RateLimits>, extra: Partial<ServerOptions> = {}): Promise<RunningServer> {
    const home = mkdtempSync(join(tmpdir(), 'latchkey-rl-'));
    homes.push(home);
    const s = await startServer({ home, host: '127.0.0.1', port: 0, proxyPort: 0, logLevel: 'silent', env: { LATCHKEY_MASTER_KEY: MASTER }, rateLimits, ...extra });
    servers.push(s);
    return s;
  }

  afterAll(async () => {
    for (const s of servers) await s.close();
    for (const h of homes) rmSync(h, { recursive: true, force: true });
  });

  it('login burst: the 4th attempt in a minute from one IP is 429 problem+json with Retry-After and RateLimit-*; the right password does not get past it', async () => {
    const s = await boot({ login: perMin(3) });
    const owner = s.initialized!.ownerToken;
    expect((await call(s.url, 'PATCH', '/v1/auth/me', { token: owner, body: { email: EMAIL, password: PASSWORD } })).status).toBe(200);
    for (let i = 0; i < 3; i++) {
      const r = await call(s.url, 'POST', '/v1/auth/login', { body: { email: EMAIL, password: `wrong password ${i}` } });
      expect(r.status).toBe(401);
      expect(r.headers.get('ratelimit-limit')).toBe('3');
      expect(r.headers.get('ratelimit-remaining')).toBe(String(2 - i));
    }
    const blocked = await call(s.url, 'POST', '/v1/auth/login', { body: { email: EMAIL, password: PASSWORD } });
    expect429(blocked, 'login', 3);
    expect(blocked.headers.get('set-cookie')).toBeNull();
    // other anonymous routes are not the login tier
    expect((await call(s.url, 'GET', '/v1/health')).status).toBe(200);
  });

  it('global tier: anonymous requests per IP; authenticated requests are counted per actor instead', async () => {
    const s = await boot({ global: perMin(4) });
    const owner = s.initialized!.ownerToken;
    for (let i = 0; i < 4; i++) {
      const r = await call(s.url, 'GET', i % 2 ? '/v1/health' : '/v1/vaults'); // public, and no credential presented
      expect(r.status).toBe(i % 2 ? 200 : 401);
      expect(r.headers.get('ratelimit-remaining')).toBe(String(3 - i));
    }
    expect429(await call(s.url, 'GET', '/v1/health'), 'global', 4);
    expect429(await call(s.url, 'GET', '/v1/vaults'), 'global', 4);
    expect429(await call(s.url, 'GET', '/'), 'global', 4); // the console's files too
    const authed = await call(s.url, 'GET', '/v1/vaults', { token: owner });
    expect(authed.status).toBe(200);
    expect(authed.headers.get('ratelimit-limit')).toBe(String(DEFAULT_RATE_LIMITS.actor.max));
  });

  it('per actor: keyed by the person or agent (not the token, not the IP)', async () => {
    const s = await boot({ actor: perMin(5) });
    const owner = s.initialized!.ownerToken;
    const agent = await call(s.url, 'POST', '/v1/agents', { token: owner, body: { name: 'rl-bot', vaults: ['default'] } }); // 1
    expect(agent.status).toBe(201);
    const pat = await call(s.url, 'POST', '/v1/tokens', { token: owner, body: { name: 'second' } }); // 2
    expect(pat.status).toBe(201);
    for (let i = 3; i <= 5; i++) {
      const r = await call(s.url, 'GET', '/v1/vaults', { token: owner });
      expect(r.status).toBe(200);
      expect(r.headers.get('ratelimit-limit')).toBe('5');
      expect(r.headers.get('ratelimit-remaining')).toBe(String(5 - i));
    }
    expect429(await call(s.url, 'GET', '/v1/vaults', { token: owner }), 'actor', 5);
    // another token of the same person shares the count
    expect429(await call(s.url, 'GET', '/v1/status', { token: pat.json.token }), 'actor', 5);
    // the agent (same IP) has its own
    for (let i = 0; i < 5; i++) expect((await call(s.url, 'GET', '/v1/discover', { token: agent.json.token })).status).toBe(200);
    expect429(await call(s.url, 'GET', '/v1/discover', { token: agent.json.token }), 'actor', 5);
    // anonymous traffic from the same IP is the global tier
    expect((await call(s.url, 'GET', '/v1/health')).status).toBe(200);
  });

  it('bad-token burst: failed credentials per IP; over the limit every credentialed request from the IP is refused before auth (no more audit rows), until the window ends', async () => {
    const s = await boot({ token: { max: 3, windowMs: 2000 } });
    const owner = s.initialized!.ownerToken;
    const forged = 'lk_pat_' + randomBytes(32).toString('base64url');
    for (let i = 0; i < 3; i++) expect((await call(s.url, 'GET', '/v1/vaults', { token: i === 1 ? 'not-a-latchkey-token' : forged })).status).toBe(401);
    const over = await call(s.url, 'GET', '/v1/vaults', { token: forged });
    expect429(over, 'token', 3, 2);
    expect(over.headers.get('www-authenticate')).toBeNull();
    expect429(await call(s.url, 'GET', '/v1/vaults', { token: forged }), 'token', 3, 2);
    // a forged session cookie is a failed credential too, and is refused now
    expect429(await call(s.url, 'GET', '/v1/auth/me', { headers: { cookie: `lk_session=${'a'.repeat(43)}` } }), 'token', 3, 2);
    // while the IP is over, even a valid token from it is refused before authentication
    expect429(await call(s.url, 'GET', '/v1/vaults', { token: owner }), 'token', 3, 2);
    // requests without a credential are not this tier
    expect((await call(s.url, 'GET', '/v1/health')).status).toBe(200);

    await new Promise((r) => setTimeout(r, 2100));
    expect((await call(s.url, 'GET', '/v1/vaults', { token: owner })).status).toBe(200);
    const audit = await call(s.url, 'GET', '/v1/audit?action=auth.failure&limit=50', { token: owner });
    expect(audit.status).toBe(200);
    // 3 refused with 401 + the 4th (counted, then answered 429); the requests refused before auth wrote nothing
    expect(audit.json.items.length).toBe(4);
  });

  it('stricter tiers: proposals and access requests per agent, approval-link reads per IP; a person granting directly is not an access request', async () => {
    const s = await boot({ proposal: perMin(2), request: perMin(2), approval: perMin(2) });
    const owner = s.initialized!.ownerToken;
    const agent = (await call(s.url, 'POST', '/v1/agents', { token: owner, body: { name: 'tier-bot', vaults: ['default'] } })).json.token as string;
    expect((await call(s.url, 'PUT', '/v1/vaults/default/secrets/API_KEY', { token: owner, body: { value: 'v-1' } })).status).toBe(201);

    const propose = (i: number) => call(s.url, 'POST', '/v1/vaults/default/proposals', { token: agent, body: { message: `p${i}`, credentials: [{ action: 'set', key: `K_${i}` }] } });
    expect((await propose(1)).status).toBe(201);
    const second = await propose(2);
    expect(second.status).toBe(201);
    expect(second.headers.get('ratelimit-limit')).toBe('2');
    expect(second.headers.get('ratelimit-remaining')).toBe('0');
    expect429(await propose(3), 'proposal', 2);
    expect((await call(s.url, 'GET', '/v1/vaults/default/proposals', { token: agent })).status).toBe(200);

    const ask = () => call(s.url, 'POST', '/v1/vaults/default/grants', { token: agent, body: { secret: 'API_KEY', mode: 'read', reason: 'tests' } });
    expect((await ask()).status).toBe(201);
    expect((await ask()).status).toBe(200); // the same request again: the pending one, nothing new, still counted
    expect429(await ask(), 'request', 2);
    for (let i = 0; i < 3; i++) {
      const g = await call(s.url, 'POST', '/v1/vaults/default/grants', { token: owner, body: { agent: 'tier-bot', secret: 'API_KEY', mode: 'use' } });
      expect(g.status, g.text).not.toBe(429);
    }

    const approval = () => call(s.url, 'GET', `/v1/proposals/approval?token=lk_appr_${randomBytes(24).toString('base64url')}`);
    for (let i = 0; i < 2; i++) expect([401, 404]).toContain((await approval()).status);
    expect429(await approval(), 'approval', 2);
  });

  it("core's per-account login lockout (kept) answers 429 login_locked with Retry-After", async () => {
    const s = await boot({});
    const owner = s.initialized!.ownerToken;
    expect((await call(s.url, 'PATCH', '/v1/auth/me', { token: owner, body: { email: EMAIL, password: PASSWORD } })).status).toBe(200);
    for (let i = 0; i < 5; i++) expect((await call(s.url, 'POST', '/v1/auth/login', { body: { email: EMAIL, password: `nope nope ${i}` } })).status).toBe(401);
    const locked = await call(s.url, 'POST', '/v1/auth/login', { body: { email: EMAIL, password: PASSWORD } });
    expect(locked.status).toBe(429);
    expect(locked.json.code).toBe('login_locked');
    const retry = Number(locked.headers.get('retry-after'));
    expect(retry).toBeGreaterThan(60);
    expect(retry).toBe(locked.json.retry_after);
    // defaults are in force: login 10/min per IP, 6 used
    expect(locked.headers.get('ratelimit-limit')).toBe(String(DEFAULT_RATE_LIMITS.login.max));
    expect(locked.headers.get('ratelimit-remaining')).toBe(String(DEFAULT_RATE_LIMITS.login.max - 6));
  });

  it('a burst of concurrent wrong logins cannot get past the per-account lockout: at most 5 passwords are checked', async () => {
    const s = await boot({ login: perMin(1000) });
    const owner = s.initialized!.ownerToken;
    expect((await call(s.url, 'PATCH', '/v1/auth/me', { token: owner, body: { email: EMAIL, password: PASSWORD } })).status).toBe(200);
    const burst = await Promise.all(Array.from({ length: 15 }, (_, i) => call(s.url, 'POST', '/v1/auth/login', { body: { email: EMAIL, password: `guess ${i}` } })));
    const statuses = burst.map((r) => r.status);
    expect(statuses.filter((x) => x === 401).length).toBeLessThanOrEqual(5);
    expect(statuses.filter((x) => x === 401).length + statuses.filter((x) => x === 429).length).toBe(15);
    for (const r of burst.filter((x) => x.status === 429)) expect(r.json.code).toBe('login_locked');
    // and the account is locked now, for the right password too
    const after = await call(s.url, 'POST', '/v1/auth/login', { body: { email: EMAIL, password: PASSWORD } });
    expect([after.status, after.json.code]).toEqual([429, 'login_locked']);
  });

  it('limits from the environment; LATCHKEY_RATE_LIMIT=off; a bad value stops start-up naming the variable', async () => {
    expect(parseLimit('600', 'X')).toEqual({ max: 600, windowMs: 60_000 });
    expect(parseLimit('20/30s', 'X')).toEqual({ max: 20, windowMs: 30_000 });
    expect(parseLimit('5000 / 1h', 'X')).toEqual({ max: 5000, windowMs: 3_600_000 });
    expect(parseLimit('7/m', 'X')).toEqual({ max: 7, windowMs: 60_000 });
    expect(parseLimit('off', 'X').max).toBe(0);
    for (const bad of ['', 'ten', '-1', '5/0s', '5/2d', '5/500ms', '1.5']) expect(() => parseLimit(bad, 'LATCHKEY_RATE_LIMIT_LOGIN'), bad).toThrow(/LATCHKEY_RATE_LIMIT_LOGIN/);
    expect(rateLimitsFromEnv({ LATCHKEY_RATE_LIMIT_ACTOR: '100', LATCHKEY_RATE_LIMIT_GLOBAL: '' })).toEqual({ actor: { max: 100, windowMs: 60_000 } });
    expect(Object.values(rateLimitsFromEnv({ LATCHKEY_RATE_LIMIT: 'off' })).every((l) => l.max === 0)).toBe(true);
    expect(() => rateLimitsFromEnv({ LATCHKEY_RATE_LIMIT: 'maybe' })).toThrow(/LATCHKEY_RATE_LIMIT /);

    const home = mkdtempSync(join(tmpdir(), 'latchkey-rl-env-'));
    homes.push(home);
    const base = { home, host: '127.0.0.1', port: 0, proxyPort: 0, logLevel: 'silent' };
    await expect(startServer({ ...base, env: { LATCHKEY_MASTER_KEY: MASTER, LATCHKEY_RATE_LIMIT_TOKEN: 'lots' } })).rejects.toThrow(/LATCHKEY_RATE_LIMIT_TOKEN/);
    expect(readdirSync(home), 'a configuration error leaves the data dir alone').toEqual([]);

    const s = await startServer({ ...base, env: { LATCHKEY_MASTER_KEY: MASTER, LATCHKEY_RATE_LIMIT_GLOBAL: '2/10s' } });
    servers.push(s);
    const first = await call(s.url, 'GET', '/v1/health');
    expect(first.headers.get('ratelimit-limit')).toBe('2');
    expect(Number(first.headers.get('ratelimit-reset'))).toBeLessThanOrEqual(10);
    await call(s.url, 'GET', '/v1/health');
    expect429(await call(s.url, 'GET', '/v1/health'), 'global', 2, 10);
    // options override the environment
    await s.close();
    const s2 = await startServer({ ...base, env: { LATCHKEY_MASTER_KEY: MASTER, LATCHKEY_RATE_LIMIT: 'off' }, rateLimits: { actor: perMin(3) } });
    servers.push(s2);
    for (let i = 0; i < 30; i++) {
      const h = await call(s2.url, 'GET', '/v1/health');
      expect(h.status).toBe(200);
      expect(h.headers.get('ratelimit-limit')).toBeNull();
    }
    const owner = s.initialized!.ownerToken; // s2 runs on s's data dir
    expect(s2.initialized).toBeNull();
    for (let i = 0; i < 3; i++) expect((await call(s2.url, 'GET', '/v1/vaults', { token: owner })).status).toBe(200);
    expect429(await call(s2.url, 'GET', '/v1/vaults', { token: owner }), 'actor', 3);
  });

  it('Redis unreachable: the server starts, keeps serving and limiting in memory, and logs a warning without the URL or password', async () => {
    const port = await closedPort();
    const log = new PassThrough();
    let logged = '';
    log.on('data', (d) => (logged += d));
    const t0 = Date.now();
    const s = await boot({ actor: perMin(3) }, { redisUrl: `redis://:hunter2-redis-pw@127.0.0.1:${port}`, logLevel: 'warn', logStream: log });
    expect(Date.now() - t0).toBeLessThan(10_000);
    const owner = s.initialized!.ownerToken;
    for (let i = 0; i < 3; i++) expect((await call(s.url, 'GET', '/v1/vaults', { token: owner })).status).toBe(200);
    expect429(await call(s.url, 'GET', '/v1/vaults', { token: owner }), 'actor', 3);
    await new Promise((r) => setTimeout(r, 50));
    expect(logged).toMatch(/rate limits: Redis/);
    expect(logged).not.toContain('hunter2');
  });
});

async function closedPort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => res(port));
    });
  });
}

describeBackends('rate limits shared through Redis by two servers', (ctx) => {
  if (redisProblem) {
    if (REQUIRE_REDIS) it('Redis is reachable', () => { throw new Error(`Redis is required (LATCHKEY_REQUIRE_PG=1) but unreachable at ${REDIS_URL}: ${redisProblem}`); });
    else it.skip('Redis is unreachable; skipped', () => {});
    return;
  }
  const prefix = `latchkey:rl:test:${randomBytes(6).toString('hex')}:`;
  let a: RunningServer;
  let b: RunningServer;
  let redis: Redis;
  let owner: string;

  async function keys(): Promise<string[]> {
    const out: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      out.push(...batch);
    } while (cursor !== '0');
    return out;
  }

  beforeAll(async () => {
    redis = new Redis(REDIS_URL);
    const opts = {
      home: ctx.home, databaseUrl: ctx.databaseUrl, host: '127.0.0.1', port: 0, proxyPort: 0, logLevel: 'silent', env: { LATCHKEY_MASTER_KEY: MASTER },
      redisUrl: REDIS_URL, redisPrefix: prefix, rateLimits: { actor: perMin(5), login: perMin(4), token: perMin(3) },
    };
    a = await startServer(opts);
    b = await startServer(opts); // the same database: a second replica
    owner = a.initialized!.ownerToken;
    expect(b.initialized).toBeNull();
  });

  const ours = async () => ((await redis.client('LIST')) as string).split('\n').filter((l) => l.includes(`name=latchkey-rl-${process.pid} `)).length;

  afterAll(async () => {
    await a?.close();
    await b?.close();
    if (redis) {
      expect(await ours(), 'each server closes its Redis connection').toBe(0);
      const k = await keys();
      if (k.length) await redis.del(...k);
      expect(await keys()).toEqual([]);
      await redis.quit();
    }
  });

  it('per actor: 3 requests on server A + 3 on server B -> the 6th is 429', async () => {
    const seen: string[] = [];
    for (const s of [a, a, a, b, b]) {
      const r = await call(s.url, 'GET', '/v1/vaults', { token: owner });
      expect(r.status, r.text).toBe(200);
      seen.push(r.headers.get('ratelimit-remaining')!);
    }
    expect(seen).toEqual(['4', '3', '2', '1', '0']);
    expect429(await call(b.url, 'GET', '/v1/vaults', { token: owner }), 'actor', 5);
    expect429(await call(a.url, 'GET', '/v1/vaults', { token: owner }), 'actor', 5);
    // the counters live in Redis under the configured prefix
    const k = await keys();
    expect(k.some((x) => x.startsWith(prefix) && x.includes('actor:user:'))).toBe(true);
    expect(await ours(), 'one Redis connection per server').toBe(2);
  });

  it('login and failed tokens are shared too', async () => {
    for (const s of [a, b, a, b]) expect((await call(s.url, 'POST', '/v1/auth/login', { body: { email: 'nobody@example.test', password: 'whatever-whatever' } })).status).toBe(401);
    expect429(await call(a.url, 'POST', '/v1/auth/login', { body: { email: 'nobody@example.test', password: 'whatever-whatever' } }), 'login', 4);

    const forged = 'lk_agent_' + randomBytes(32).toString('base64url');
    for (const s of [a, b, a]) expect((await call(s.url, 'GET', '/v1/discover', { token: forged })).status).toBe(401);
    expect429(await call(b.url, 'GET', '/v1/discover', { token: forged }), 'token', 3);
    expect429(await call(a.url, 'GET', '/v1/discover', { token: forged }), 'token', 3);
  });
});
