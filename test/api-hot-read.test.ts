/**
 * The secret-read hot path (src/server/hot-read.ts) against the Fastify route it stands in for:
 * two real servers, one with the hot path and one without, given the same data, must answer every
 * kind of read alike (status, problem body, every header but the per-request ones), audit it alike
 * (one event per read or denial, never two), count it in the same rate-limit tier, and log it
 * without the token or the value. The hot path's counter proves the reads really went through it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as netConnect } from 'node:net';
import { Writable } from 'node:stream';
// @ts-expect-error a CommonJS file without type declarations: the store the rate-limit tiers count in
import LocalStore from '@fastify/rate-limit/store/LocalStore.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../src/server/start.js';

const MASTER = '5e'.repeat(32);
const SENTINEL_VALUE = 'sk_live_HOTREAD_SENTINEL_6b1f0c';
/** headers that differ per request by nature */
const PER_REQUEST = new Set(['x-request-id', 'date', 'ratelimit-remaining', 'ratelimit-reset', 'content-length']);

type Res = { status: number; headers: Record<string, string>; json: any; text: string };

async function get(base: string, path: string, token?: string, extra: Record<string, string> = {}): Promise<Res> {
  const r = await fetch(base + path, { headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...extra } });
  const text = await r.text();
  let json: any = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  return { status: r.status, headers: Object.fromEntries(r.headers), json, text };
}

async function post(base: string, path: string, token: string, body: unknown): Promise<Res> {
  const r = await fetch(base + path, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, headers: Object.fromEntries(r.headers), json: text ? JSON.parse(text) : null, text };
}

/** A response with what varies per request (and per server: tokens, ids, times) taken out. */
function shape(r: Res) {
  const headers = Object.fromEntries(Object.entries(r.headers).filter(([k]) => !PER_REQUEST.has(k)));
  const json = r.json && typeof r.json === 'object' ? { ...r.json, request_id: r.json.request_id === undefined ? undefined : typeof r.json.request_id } : r.json;
  return { status: r.status, headers, json };
}

/** Every count of the per-actor tier in this process (the servers run in it), by key. */
const actorCounts = new Map<string, number>();
{
  const proto = (LocalStore as unknown as { prototype: { incr: (key: string, ...rest: unknown[]) => unknown } }).prototype;
  const incr = proto.incr;
  proto.incr = function (this: unknown, key: string, ...rest: unknown[]) {
    if (key.startsWith('actor:')) actorCounts.set(key, (actorCounts.get(key) ?? 0) + 1);
    return incr.call(this, key, ...rest);
  };
}

describe('secret reads: the hot path answers as the Fastify route does', () => {
  const homes: string[] = [];
  const logs = { hot: '', fastify: '' };
  let log = '';
  const sides: Array<{ name: 'hot' | 'fastify'; s: RunningServer; owner: string; agent: string }> = [];

  beforeAll(async () => {
    for (const hot of [true, false]) {
      const home = mkdtempSync(join(tmpdir(), 'latchkey-hot-'));
      homes.push(home);
      const side = hot ? 'hot' : 'fastify';
      const logStream = new Writable({ write(chunk, _enc, cb) { log += chunk.toString('utf8'); logs[side] += chunk.toString('utf8'); cb(); } });
      const s = await startServer({
        home, host: '127.0.0.1', port: 0, proxyPort: 0, logLevel: 'debug', logStream, hotRead: hot,
        env: { LATCHKEY_MASTER_KEY: MASTER }, rateLimits: { actor: { max: 40, windowMs: 60_000 } },
      });
      const owner = s.initialized!.ownerToken;
      expect((await post(s.url, '/v1/vaults/default/secrets', owner, { name: 'HOT_KEY', value: SENTINEL_VALUE })).status).toBe(201);
      expect((await post(s.url, '/v1/vaults/default/secrets', owner, { name: 'skill:github:token', value: 'ghp_second' })).status).toBe(201);
      const agent = await post(s.url, '/v1/agents', owner, { name: 'hot-bot', vaults: ['default'] });
      expect(agent.status).toBe(201);
      sides.push({ name: side, s, owner, agent: agent.json.token });
    }
  });

  afterAll(async () => {
    for (const x of sides) await x.s.close();
    for (const h of homes) rmSync(h, { recursive: true, force: true });
  });

  /** Runs one request on both servers; the answers must be alike. Returns them (hot first). */
  async function both(path: string, who: 'owner' | 'agent' | string | null, extra: Record<string, string> = {}): Promise<[Res, Res]> {
    const out = [] as Res[];
    for (const x of sides) {
      const token = who === 'owner' ? x.owner : who === 'agent' ? x.agent : who ?? undefined;
      out.push(await get(x.s.url, path, token, extra));
    }
    expect(shape(out[0]!), path).toEqual(shape(out[1]!));
    return out as [Res, Res];
  }

  async function auditOf(x: (typeof sides)[number], action: string) {
    return (await get(x.s.url, `/v1/audit?action=${action}&limit=1000`, x.owner)).json.items as Array<Record<string, any>>;
  }

  it('every kind of read and refusal: the same status, problem, headers and audit events on both', async () => {
    const hot0 = sides[0]!.s.app.hotReads();
    const [ok] = await both('/v1/vaults/default/secrets/HOT_KEY/value', 'owner');
    expect(ok.status).toBe(200);
    expect(ok.json).toEqual({ name: 'HOT_KEY', vault: 'default', version: 1, value: SENTINEL_VALUE });
    expect(ok.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(ok.headers['cache-control']).toBe('no-store');
    expect(ok.headers['content-security-policy']).toBe("default-src 'none';frame-ancestors 'none'");
    expect(ok.headers['ratelimit-limit']).toBe('40');
    // a namespaced name, percent-encoded, and a given version
    expect((await both('/v1/vaults/default/secrets/skill%3Agithub%3Atoken/value?version=1', 'owner'))[0].json.value).toBe('ghp_second');
    // refused inside the read (already audited there): answered by the hot path itself
    expect((await both('/v1/vaults/default/secrets/NOPE/value', 'owner'))[0].json.code).toBe('secret_not_found');
    expect((await both('/v1/vaults/default/secrets/HOT_KEY/value?version=7', 'owner'))[0].json.code).toBe('version_not_found');
    expect((await both('/v1/vaults/nope/secrets/HOT_KEY/value', 'owner'))[0].status).toBe(404);
    const denied = (await both('/v1/vaults/default/secrets/HOT_KEY/value', 'agent'))[0];
    expect(denied.status).toBe(403);
    expect(denied.text).not.toContain(SENTINEL_VALUE);
    expect(sides[0]!.s.app.hotReads() - hot0).toBe(6);
    // left to Fastify, untouched: no token, a bad one, a bad or unknown query, another method
    const hot1 = sides[0]!.s.app.hotReads();
    expect((await both('/v1/vaults/default/secrets/HOT_KEY/value', null))[0].status).toBe(401);
    expect((await both('/v1/vaults/default/secrets/HOT_KEY/value', 'lk_pat_notarealtoken'))[0].status).toBe(401);
    expect((await both('/v1/vaults/default/secrets/HOT_KEY/value?version=abc', 'owner'))[0].json.field).toBe('version');
    expect((await both('/v1/vaults/default/secrets/HOT_KEY/value?version=0', 'owner'))[0].json.field).toBe('version');
    expect((await both('/v1/vaults/default/secrets/HOT_KEY/value?version=01', 'owner'))[0].json.value).toBe(SENTINEL_VALUE);
    expect((await both('/v1/vaults/default/secrets/HOT_KEY/value?version=1&version=1', 'owner'))[0].status).toBe(400);
    expect((await both('/v1/vaults/default/secrets/HOT_KEY/value?verbose=1', 'owner'))[0].status).toBe(400);
    expect((await both('/v1/vaults/default/secrets/HOT_KEY/value/', 'owner'))[0].status).toBe(404);
    expect((await both('/v1/vaults/default/secrets/bad%00name/value', 'owner'))[0].status).toBe(400);
    expect(sides[0]!.s.app.hotReads()).toBe(hot1);
    expect(sides[1]!.s.app.hotReads()).toBe(0);

    // the same audit trail: each read and each refusal recorded once, with the same fields
    for (const action of ['secret.read', 'auth.failure']) {
      const [a, b] = await Promise.all(sides.map((x) => auditOf(x, action)));
      const strip = (e: Record<string, any>) => ({ actor: e.actor.replace(/:.*/, ''), action: e.action, vault: e.vault, target: e.target, outcome: e.outcome, details: e.details });
      expect(a!.map(strip), action).toEqual(b!.map(strip));
    }
    const reads = await auditOf(sides[0]!, 'secret.read');
    expect(reads.filter((e) => e.outcome === 'ok')).toHaveLength(3); // HOT_KEY, skill:github:token, and HOT_KEY by version=01 (through Fastify)
    expect(reads.filter((e) => e.outcome === 'denied')).toHaveLength(1);
    // the request id answered is the one audited
    expect(reads.some((e) => e.request_id === ok.headers['x-request-id'])).toBe(true);
  });

  it('the per-actor limit counts hot reads and Fastify requests in one tier, each request once; over it, the 429 comes from Fastify', async () => {
    for (const x of sides) {
      const before = [...actorCounts.values()].reduce((a, b) => a + b, 0);
      let last: Res | null = null;
      let requests = 0;
      for (let i = 0; i < 60 && last?.status !== 429; i++, requests++) {
        last = await get(x.s.url, i % 2 ? '/v1/vaults/default/secrets/HOT_KEY/value' : '/v1/vaults', x.owner);
      }
      expect(last!.status, x.name).toBe(429);
      expect(last!.json.limit).toBe('actor');
      expect(Number(last!.headers['retry-after'])).toBeGreaterThan(0);
      const again = await get(x.s.url, '/v1/vaults/default/secrets/HOT_KEY/value', x.owner);
      expect(again.status).toBe(429);
      expect(again.text).not.toContain(SENTINEL_VALUE);
      requests++;
      // every request counted once, the refused ones too (the hot path hands an actor over its
      // limit to Fastify marked as counted, and Fastify does not count it again)
      expect([...actorCounts.values()].reduce((a, b) => a + b, 0) - before, x.name).toBe(requests);
    }
  });

  it('refusals are logged alike (debug), answers too (info)', () => {
    const msgs = (text: string) => text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    const refused = (text: string) => msgs(text).filter((l) => l.msg === 'request refused' && /not_found|forbidden|denied|validation/.test(String(l.code))).map((l) => `${l.status} ${l.code}`).sort();
    expect(refused(logs.hot).length).toBeGreaterThan(3);
    expect(refused(logs.hot)).toEqual(refused(logs.fastify));
  });

  it('once the server is closing, a read on a busy keep-alive connection gets 503 and the connection ends; close() finishes', async () => {
    const home = mkdtempSync(join(tmpdir(), 'latchkey-hot-'));
    homes.push(home);
    const s = await startServer({ home, host: '127.0.0.1', port: 0, proxyPort: 0, logLevel: 'silent', env: { LATCHKEY_MASTER_KEY: MASTER } });
    const owner = s.initialized!.ownerToken;
    expect((await post(s.url, '/v1/vaults/default/secrets', owner, { name: 'HOT_KEY', value: SENTINEL_VALUE })).status).toBe(201);
    const socket = netConnect(Number(new URL(s.url).port), '127.0.0.1');
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.on('error', () => {});
    const ended = new Promise<void>((res) => socket.on('close', () => res()));
    const head = `GET /v1/vaults/default/secrets/HOT_KEY/value HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${owner}\r\n`;
    const ask = () => socket.write(`${head}\r\n`);
    const answers = async (n: number) => {
      for (let i = 0; i < 200 && (got.match(/HTTP\/1\.1 /g) ?? []).length < n; i++) await new Promise((r) => setTimeout(r, 10));
    };
    ask();
    await answers(1);
    expect(got).toMatch(/^HTTP\/1\.1 200 /);
    const hotBefore = s.app.hotReads();
    expect(hotBefore).toBe(1);
    // the next request begun (so the connection is busy, not idle, when the server starts closing)
    // and finished once it is closing
    socket.write(head);
    await new Promise((r) => setTimeout(r, 50));
    const closed = s.close();
    await new Promise((r) => setTimeout(r, 200));
    socket.write('\r\n');
    await answers(2);
    const second = got.slice(got.lastIndexOf('HTTP/1.1 '));
    expect(second).toMatch(/^HTTP\/1\.1 503 /);
    expect(second.toLowerCase()).toContain('connection: close');
    expect(second).not.toContain(SENTINEL_VALUE);
    await Promise.race([ended, new Promise((_, rej) => setTimeout(() => rej(new Error('the connection stayed open')), 5000))]);
    await Promise.race([closed, new Promise((_, rej) => setTimeout(() => rej(new Error('close() did not finish')), 5000))]);
    expect(s.app.hotReads()).toBe(hotBefore);
  });

  it('logs each hot read as Fastify logs a request, without the token or the value', () => {
    const lines = log.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    const done = lines.filter((l) => l.msg === 'request completed' && l.res?.statusCode === 200);
    expect(done.length).toBeGreaterThan(2);
    const reqIds = new Set(lines.filter((l) => l.msg === 'incoming request' && l.req?.path === '/v1/vaults/default/secrets/HOT_KEY/value').map((l) => l.reqId));
    expect(reqIds.size).toBeGreaterThan(2);
    expect(log).not.toContain(SENTINEL_VALUE);
    for (const x of sides) {
      expect(log).not.toContain(x.owner);
      expect(log).not.toContain(x.agent);
    }
  });
});
