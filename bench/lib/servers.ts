/** Starting the processes under test: the real Latchkey server and the bare baselines. */
import { request } from 'undici';
import { profileArgs } from './profile.js';
import { benchPath, cleanEnv, forkTracked, rpc, stopChild, waitMessage, type Tracked } from './proc.js';

export interface LatchkeyChild {
  proc: Tracked;
  url: string;
  /** the forward proxy's URL, when started with BENCH_PROXY_PORT in `env` */
  proxyUrl: string | null;
  token: string;
  pid: number;
  startMs: number;
  /** in-process bulk create through core.secrets.create (each its own audited transaction) */
  seed(prefix: string, count: number, concurrency?: number): Promise<number>;
  /** the event loop's busy milliseconds since the child started */
  loopMs(): Promise<number>;
  stop(): Promise<void>;
}

/** Starts Latchkey on `home`; a fresh home is initialised (its owner token returned), an initialised one needs `token`. */
export async function startLatchkey(home: string, opts: { token?: string; env?: Record<string, string>; /** file-name tag when --profile is on */ profileTag?: string } = {}): Promise<LatchkeyChild> {
  const env = opts.env ?? {};
  const proc = forkTracked(benchPath('children/latchkey-server.js'), [], { env: cleanEnv({ BENCH_HOME: home, ...env }), execArgv: profileArgs(opts.profileTag ?? 'latchkey') });
  const ready = await waitMessage<{ url: string; proxyUrl?: string | null; token: string | null; pid: number; startMs: number }>(proc, 'ready', 60_000).catch(async (err) => {
    await stopChild(proc, 500);
    throw err;
  });
  const token = ready.token ?? opts.token;
  if (!token) {
    await stopChild(proc, 1000);
    throw new Error(`Latchkey at ${home} was already initialised and no token was given`);
  }
  return {
    proc, url: ready.url, proxyUrl: ready.proxyUrl ?? null, token, pid: ready.pid, startMs: ready.startMs,
    async seed(prefix, count, concurrency = 16) {
      const r = await rpc<{ ms: number }>(proc, 'seed', { prefix, count, concurrency });
      return r.ms;
    },
    loopMs: () => loopMs(proc),
    async stop() {
      if (proc.child.exitCode === null && proc.child.connected) {
        await rpc(proc, 'stop', {}, 15_000).catch(() => {});
      }
      await stopChild(proc, 5000);
    },
  };
}

export interface BareChild {
  proc: Tracked;
  url: string;
  pid: number;
  /** the event loop's busy milliseconds since the child started */
  loopMs(): Promise<number>;
  stop(): Promise<void>;
}

async function loopMs(proc: Tracked): Promise<number> {
  return (await rpc<{ activeMs: number }>(proc, 'elu', {})).activeMs;
}

/** A bare node:http baseline (bench/children/bare-server.ts); `dir` holds the floor's database. */
export async function startBare(mode: 'ceiling' | 'seed' | 'floor', token: string, secrets: Array<{ name: string; value: string }>, opts: { vault?: string; dir?: string } = {}): Promise<BareChild> {
  const proc = forkTracked(benchPath('children/bare-server.js'), [mode], { env: cleanEnv(), execArgv: mode === 'seed' ? [] : profileArgs(mode) });
  try {
    const r = await rpc<{ url: string; pid: number }>(proc, 'init', { token, vault: opts.vault ?? 'default', secrets, dir: opts.dir }, 120_000);
    return { proc, url: r.url, pid: r.pid, loopMs: () => loopMs(proc), stop: () => stopChild(proc, 2000) };
  } catch (err) {
    await stopChild(proc, 500);
    throw err;
  }
}

export async function startLoadgen(): Promise<Tracked> {
  const proc = forkTracked(benchPath('children/loadgen.js'), [], { env: cleanEnv() });
  await waitMessage(proc, 'ready', 30_000);
  return proc;
}

/** A JSON request from the parent (setup and single-shot measurements, not load). */
export async function api<T = any>(base: string, token: string | null, method: string, path: string, body?: unknown, timeoutMs = 300_000): Promise<{ status: number; json: T; ms: number }> {
  const t0 = performance.now();
  const r = await request(new URL(path, base), {
    method: method as 'GET',
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  const text = await r.body.text();
  const ms = performance.now() - t0;
  let json: any = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = { raw: text.slice(0, 500) };
  }
  return { status: r.statusCode, json, ms };
}

/** Runs `fn` over items with `concurrency` workers. */
export async function parallel<T>(items: T[], concurrency: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      await fn(items[i]!, i);
    }
  }));
}
