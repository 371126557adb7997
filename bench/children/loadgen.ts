/**
 * Bench child: the load generator (undici Pool, keep-alive), in its own process so its CPU is
 * measured and reported apart from the server's. Commands over IPC:
 *
 *   {type:'closed', id, target}  closed loop: `connections` workers, each sends the next request as
 *                                soon as its previous one is answered; warm-up first, then measure.
 *   {type:'open', id, target}    open loop: requests are scheduled at a fixed rate on a timer and each
 *                                latency is measured from its SCHEDULED send time (no coordinated omission).
 *   {type:'close', id}           close all pools.
 *
 * target = {url, token, paths[], expect{path: value}, connections, warmupMs, durationMs, rate?, serverPid}.
 * Replies carry raw latencies (ms) so the parent can merge rounds, plus CPU of server, self, machine.
 */
import { openLoop as runOpenLoop } from '../lib/openloop.js';
import { Pool } from 'undici';
import { CpuWindow } from '../lib/stats.js';

interface Target {
  url: string;
  token: string;
  paths: string[];
  expect?: Record<string, string>;
  connections: number;
  warmupMs: number;
  durationMs: number;
  rate?: number;
  serverPid: number;
  /** parse and check every Nth response body (0 = never) */
  validateEvery?: number;
}

const pools = new Map<string, Pool>();

function poolFor(url: string, connections: number): Pool {
  const key = `${url}#${connections}`;
  let p = pools.get(key);
  if (!p) {
    p = new Pool(url, { connections, pipelining: 1, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 600_000 });
    pools.set(key, p);
  }
  return p;
}

let seq = 0;

/** One GET; returns true when the answer is right (200 and, when sampled, the expected value). */
async function one(pool: Pool, t: Target, headers: Record<string, string>, path: string): Promise<boolean> {
  const { statusCode, body } = await pool.request({ path, method: 'GET', headers });
  const text = await body.text();
  if (statusCode !== 200) return false;
  const every = t.validateEvery ?? 0;
  if (every && t.expect && (seq++ % every === 0)) {
    const j = JSON.parse(text) as { value?: string };
    if (j.value !== t.expect[path]) return false;
  }
  return true;
}

async function closedLoop(t: Target, durationMs: number, record: boolean) {
  const pool = poolFor(t.url, t.connections);
  const headers = { authorization: `Bearer ${t.token}` };
  const lat: number[] = [];
  let i = 0;
  let ok = 0;
  let errors = 0;
  let firstError: string | null = null;
  const start = performance.now();
  const end = start + durationMs;
  const worker = async () => {
    while (performance.now() < end) {
      const path = t.paths[i++ % t.paths.length]!;
      const t0 = performance.now();
      try {
        const good = await one(pool, t, headers, path);
        const t1 = performance.now();
        if (!good) {
          errors++;
          firstError ??= 'bad status or value';
        } else if (t1 <= end) {
          ok++;
          if (record) lat.push(t1 - t0);
        }
      } catch (err) {
        errors++;
        firstError ??= String((err as Error)?.message ?? err);
      }
    }
  };
  await Promise.all(Array.from({ length: t.connections }, worker));
  return { ok, errors, firstError, lat, wallMs: durationMs };
}

function openLoop(t: Target, rate: number, durationMs: number, record: boolean) {
  const pool = poolFor(t.url, t.connections);
  const headers = { authorization: `Bearer ${t.token}` };
  return runOpenLoop(rate, durationMs, record, async (i) => ((await one(pool, t, headers, t.paths[i % t.paths.length]!)) ? null : 'bad status or value'));
}

process.on('disconnect', () => process.exit(0));
process.on('message', async (m: any) => {
  try {
    if (m?.type === 'close') {
      await Promise.all([...pools.values()].map((p) => p.close()));
      pools.clear();
      process.send?.({ id: m.id, ok: true });
      return;
    }
    const t = m.target as Target;
    if (m?.type === 'closed') {
      if (t.warmupMs > 0) await closedLoop(t, t.warmupMs, false);
      const cpu = new CpuWindow({ server: t.serverPid }).start();
      const r = await closedLoop(t, t.durationMs, true);
      const c = cpu.stop();
      process.send?.({ id: m.id, ...r, cpu: { server: c.server, loadgen: c.self, machine: c.machine, other: c.other } });
    } else if (m?.type === 'open') {
      const rate = t.rate ?? 500;
      if (t.warmupMs > 0) await openLoop(t, rate, t.warmupMs, false);
      const cpu = new CpuWindow({ server: t.serverPid }).start();
      const r = await openLoop(t, rate, t.durationMs, true);
      const c = cpu.stop();
      process.send?.({ id: m.id, ...r, cpu: { server: c.server, loadgen: c.self, machine: c.machine, other: c.other } });
    } else {
      process.send?.({ id: m?.id, error: `unknown command ${m?.type}` });
    }
  } catch (err) {
    process.send?.({ id: m?.id, error: String((err as Error)?.stack ?? err) });
  }
});
process.send?.({ type: 'ready', pid: process.pid });
