/**
 * proxy: the injection proxy (SPEC §6) against its baselines, all in one run, each system its own
 * process (CPU reported per process):
 *
 *   upstream   a real HTTPS server on loopback (children/upstream-server.ts), own test CA; it only
 *              answers requests carrying the real credential, so every proxied answer proves injection
 *   Latchkey   the real server (children/latchkey-server.ts) with its forward proxy on, loopback
 *              egress allowed (LATCHKEY_EGRESS_ALLOW=127.0.0.1/32) and the upstream CA trusted
 *              (LATCHKEY_UPSTREAM_CA); one agent with a `use` grant on one bearer service
 *   bare       a bare forwarding proxy: node:http + undici, no auth, no injection (children/bare-proxy.ts)
 *   client     the load generator (children/proxy-client.ts)
 *
 * Routes to the upstream: `direct` (HTTPS, keep-alive, the real credential), `base` (Latchkey's
 * base-URL mode, http://…/proxy/default/up/…, agent token), `forward` (HTTPS_PROXY style: CONNECT,
 * TLS inside the tunnel verified against the Latchkey CA, keep-alive tunnels), `bare`.
 *
 * Measured (SPEC §9): (1) added latency at a steady 1,000 req/s, open loop, latency from the scheduled
 * send time; (2) closed-loop throughput vs the bare proxy; (3) a NEW CONNECT with the leaf already
 * cached: CONNECT + TLS + first response vs a new direct TLS connection; (4) streaming time to first
 * byte (SSE) vs direct; (5) the Latchkey process's RSS while a large body streams through it.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { check, emptyResult, type Benchmark, type BenchOptions, type BenchResult } from '../lib/harness.js';
import { benchPath, cleanEnv, forkTracked, freePort, makeTempDir, removeTempDir, rpc, stopChild, waitMessage, type Tracked } from '../lib/proc.js';
import { profileArgs } from '../lib/profile.js';
import { api, startLatchkey, type LatchkeyChild } from '../lib/servers.js';
import { fmt, fmtPct, round1, summarize, type LatencySummary } from '../lib/stats.js';

const OPEN_RATE = 1000;
const OPEN_CONNECTIONS = 16;
const CLOSED_CONNECTIONS = 16;
const MiB = 1024 * 1024;
const SSE_PATH = '/sse?events=3&gap=5';

interface Route {
  key: string;
  kind: 'pool' | 'proxy';
  url: string;
  origin: string;
  prefix: string;
  headers: Record<string, string>;
  ca?: string;
}

type Cpu = Record<string, number | null>;

interface RunOut {
  ok: number;
  errors: number;
  firstError: string | null;
  lat: number[];
  wallMs: number;
  maxSendLagMs?: number;
  cpu: Cpu;
}

interface Merged {
  system: string;
  ok: number;
  errors: number;
  firstError: string | null;
  seconds: number;
  rps: number;
  lat: LatencySummary;
  cpu: Cpu;
  maxSendLagMs?: number;
  perRound: number[];
}

function merge(system: string, runs: RunOut[]): Merged {
  const seconds = runs.reduce((a, r) => a + r.wallMs, 0) / 1000;
  const ok = runs.reduce((a, r) => a + r.ok, 0);
  const cpu: Cpu = {};
  for (const k of Object.keys(runs[0]?.cpu ?? {})) {
    cpu[k] = runs.some((r) => r.cpu[k] == null) ? null : round1(runs.reduce((a, r) => a + (r.cpu[k] as number) * r.wallMs, 0) / (seconds * 1000));
  }
  return {
    system, ok, errors: runs.reduce((a, r) => a + r.errors, 0), firstError: runs.find((r) => r.firstError)?.firstError ?? null,
    seconds, rps: ok / seconds, lat: summarize(runs.flatMap((r) => r.lat)), cpu,
    perRound: runs.map((r) => r.ok / (r.wallMs / 1000)),
    ...(runs.some((r) => r.maxSendLagMs !== undefined) ? { maxSendLagMs: Math.max(...runs.map((r) => r.maxSendLagMs ?? 0)) } : {}),
  };
}

/** VmRSS of a process in bytes (Linux), or null. */
function rssOf(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Samples a process's RSS every `everyMs` until stopped. */
function rssSampler(pid: number, everyMs = 50) {
  const samples: Array<[number, number]> = [];
  const t0 = performance.now();
  const take = () => {
    const r = rssOf(pid);
    if (r !== null) samples.push([performance.now() - t0, r]);
  };
  take();
  const timer = setInterval(take, everyMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      const v = samples.map((s) => s[1]);
      return { start: v[0] ?? NaN, peak: v.length ? Math.max(...v) : NaN, end: v[v.length - 1] ?? NaN, samples: samples.length };
    },
  };
}

/** A signed difference: +0.123 / −0.456. */
const plus = (x: number, digits = 3) => (Number.isNaN(x) ? '–' : `${x < 0 ? '−' : '+'}${fmt(Math.abs(x), digits)}`);

const mib = (b: number | null | undefined) => (b == null || Number.isNaN(b) ? '–' : `${(b / MiB).toFixed(1)} MiB`);

async function startChild(script: string, initPayload: Record<string, unknown>, profileTag?: string): Promise<{ proc: Tracked; reply: any }> {
  const proc = forkTracked(benchPath(`children/${script}`), [], { env: cleanEnv(), execArgv: profileTag ? profileArgs(profileTag) : [] });
  try {
    const reply = await rpc(proc, 'init', initPayload, 120_000);
    return { proc, reply };
  } catch (err) {
    await stopChild(proc, 500);
    throw err;
  }
}

async function run(o: BenchOptions): Promise<BenchResult> {
  const res = emptyResult(proxy);
  const cfg = o.quick
    ? { openWarmMs: 1000, openMs: 3000, openRounds: 1, closedWarmMs: 1000, closedMs: 2500, closedRounds: 1, connectN: 150, connectWarm: 10, ttfbN: 60, ttfbWarm: 5, bigBytes: 256 * MiB, refBytes: 128 * MiB }
    : { openWarmMs: 1500, openMs: 4000, openRounds: 2, closedWarmMs: 1500, closedMs: 3000, closedRounds: 2, connectN: 400, connectWarm: 20, ttfbN: 200, ttfbWarm: 10, bigBytes: 1024 * MiB, refBytes: 256 * MiB };
  const home = makeTempDir('proxy');
  const pkiDir = makeTempDir('proxy-pki');
  let up: Tracked | null = null;
  let bare: Tracked | null = null;
  let lk: LatchkeyChild | null = null;
  let cl: Tracked | null = null;
  try {
    // ---- the processes
    const secret = `sk_live_${randomBytes(24).toString('base64url')}`;
    const u = await startChild('upstream-server.js', { secret });
    up = u.proc;
    const upstream = { port: u.reply.port as number, pid: u.reply.pid as number, caPem: u.reply.caPem as string, smallLen: u.reply.smallLen as number };
    const upOrigin = `https://127.0.0.1:${upstream.port}`;
    const caFile = join(pkiDir, 'upstream-ca.pem');
    writeFileSync(caFile, upstream.caPem);
    for (let attempt = 0; ; attempt++) {
      const proxyPort = await freePort();
      try {
        lk = await startLatchkey(home, {
          profileTag: 'proxy',
          env: { BENCH_PROXY_PORT: String(proxyPort), LATCHKEY_EGRESS_ALLOW: '127.0.0.1/32', LATCHKEY_UPSTREAM_CA: caFile },
        });
        break;
      } catch (err) {
        if (!/EADDRINUSE/.test(String(err)) || attempt >= 3) throw err;
      }
    }
    if (!lk.proxyUrl) throw new Error('the Latchkey child started without its forward proxy');
    const proxyPort = Number(new URL(lk.proxyUrl).port);
    // (--profile profiles the bare proxy too, so the two proxies' hot spots can be compared)
    const b = await startChild('bare-proxy.js', { origin: upOrigin, caPem: upstream.caPem }, 'bare-proxy');
    bare = b.proc;
    const bareProxy = { url: b.reply.url as string, pid: b.reply.pid as number };

    // ---- Latchkey: the credential, a service for the upstream, an agent with a `use` grant
    const owner = lk.token;
    const must = async (what: string, r: Promise<{ status: number; json: any }>, ok: number[]) => {
      const x = await r;
      if (!ok.includes(x.status)) throw new Error(`${what}: HTTP ${x.status} ${JSON.stringify(x.json).slice(0, 300)}`);
      return x.json;
    };
    await must('storing the credential', api(lk.url, owner, 'PUT', '/v1/vaults/default/secrets/UPSTREAM_KEY', { value: secret }), [200, 201]);
    await must('adding the service', api(lk.url, owner, 'POST', '/v1/vaults/default/services', { name: 'up', host: `127.0.0.1:${upstream.port}`, auth: { type: 'bearer', key: 'UPSTREAM_KEY' } }), [201]);
    const agent = await must('adding the agent', api(lk.url, owner, 'POST', '/v1/agents', { name: 'bench-proxy-agent', vaults: ['default'] }), [201]);
    const agentToken = agent.token as string;
    const grant = await must('granting use', api(lk.url, owner, 'POST', '/v1/vaults/default/grants', { agent: 'bench-proxy-agent', service: 'up', mode: 'use' }), [200, 201]);
    if (grant.status !== 'approved') throw new Error(`the use grant is ${grant.status}, not approved`);
    const caRes = await request(`${lk.url}/v1/ca.pem`);
    const latchkeyCa = await caRes.body.text();
    if (caRes.statusCode !== 200 || !latchkeyCa.includes('BEGIN CERTIFICATE')) throw new Error(`GET /v1/ca.pem: HTTP ${caRes.statusCode}`);

    const routes: Record<'direct' | 'base' | 'forward' | 'bare', Route> = {
      direct: { key: 'direct', kind: 'pool', url: upOrigin, origin: upOrigin, prefix: '', headers: { authorization: `Bearer ${secret}` }, ca: upstream.caPem },
      base: { key: 'base', kind: 'pool', url: lk.url, origin: lk.url, prefix: '/proxy/default/up', headers: { authorization: `Bearer ${agentToken}` } },
      // the client's own Authorization is a placeholder: Latchkey replaces it with the credential
      forward: { key: 'forward', kind: 'proxy', url: `http://${encodeURIComponent(agentToken)}:default@127.0.0.1:${proxyPort}`, origin: upOrigin, prefix: '', headers: { authorization: 'Bearer placeholder-replaced-by-latchkey' }, ca: latchkeyCa },
      bare: { key: 'bare', kind: 'pool', url: bareProxy.url, origin: bareProxy.url, prefix: '', headers: { authorization: `Bearer ${secret}` } },
    };
    const label: Record<string, string> = {
      direct: 'direct (HTTPS to upstream)', base: 'Latchkey base-URL mode', forward: 'Latchkey forward mode (CONNECT+TLS)', bare: 'bare proxy (node:http+undici)',
    };
    const proxyPid: Record<string, number | null> = { direct: null, base: lk.pid, forward: lk.pid, bare: bareProxy.pid };
    const pidsFor = (k: string) => ({ ...(proxyPid[k] ? { proxy: proxyPid[k]! } : {}), upstream: upstream.pid });

    cl = forkTracked(benchPath('children/proxy-client.js'), [], { env: cleanEnv() });
    await waitMessage(cl, 'ready', 30_000);
    const probe = await rpc<{ results: Record<string, string | null> }>(cl, 'probe', { routes: Object.values(routes), path: '/small', expectLen: upstream.smallLen });
    const broken = Object.entries(probe.results).filter(([, e]) => e);
    if (broken.length) throw new Error(`routes that do not answer right: ${broken.map(([k, e]) => `${k}: ${e}`).join('; ')}`);

    // ---- (1) added latency at a steady 1,000 req/s
    const openKeys = ['direct', 'base', 'forward', 'bare'] as const;
    const openRuns: Record<string, RunOut[]> = Object.fromEntries(openKeys.map((k) => [k, []]));
    const client = cl;
    const openRun = (k: (typeof openKeys)[number], warmupMs: number, durationMs: number) => rpc<RunOut>(client, 'open', {
      route: routes[k], path: '/small', rate: OPEN_RATE, connections: OPEN_CONNECTIONS, expectLen: upstream.smallLen, warmupMs, durationMs, pids: pidsFor(k),
    });
    // every system is warmed at the rate before any is measured: the two Latchkey modes share one
    // process, its JIT and its upstream connection pool, and whichever came first otherwise paid
    // for growing them (the first measured mode was ~0.2 ms slower at p50, whichever it was)
    for (const k of openKeys) {
      o.log(`proxy: open loop ${k} at ${OPEN_RATE}/s, warm-up (${cfg.openWarmMs / 1000} s)`);
      await openRun(k, 0, cfg.openWarmMs);
    }
    for (let round = 0; round < cfg.openRounds; round++) {
      // alternating, and the order reversed every other round
      for (const k of round % 2 ? [...openKeys].reverse() : openKeys) {
        o.log(`proxy: open loop ${k} at ${OPEN_RATE}/s, round ${round + 1}/${cfg.openRounds} (${cfg.openMs / 1000} s)`);
        openRuns[k]!.push(await openRun(k, 300, cfg.openMs));
      }
    }
    const open = Object.fromEntries(openKeys.map((k) => [k, merge(label[k]!, openRuns[k]!)])) as Record<(typeof openKeys)[number], Merged>;
    const D = open.direct;
    res.tables.push({
      title: `(1) Added latency: open loop at a fixed ${fmt(OPEN_RATE, 0)} req/s, GET /small (${upstream.smallLen} B), up to ${OPEN_CONNECTIONS} keep-alive connections, ${cfg.openRounds}×${cfg.openMs / 1000} s per system (alternating); latency from the scheduled send time`,
      header: ['system', 'achieved/s', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms', '+p50 ms', '+p99 ms', 'proxy CPU', 'proxy CPU ms/req', 'upstream CPU', 'client CPU', 'send lag max ms', 'errors'],
      rows: openKeys.map((k) => {
        const m = open[k];
        return [m.system, fmt(m.rps, 0), fmt(m.lat.p50, 3), fmt(m.lat.p90, 3), fmt(m.lat.p99, 3), fmt(m.lat.p999, 3), fmt(m.lat.max), k === 'direct' ? '–' : fmt(m.lat.p50 - D.lat.p50, 3), k === 'direct' ? '–' : fmt(m.lat.p99 - D.lat.p99, 3),
          fmtPct(m.cpu.proxy), m.cpu.proxy == null ? '–' : fmt((m.cpu.proxy * 10) / m.rps, 3), fmtPct(m.cpu.upstream), fmtPct(m.cpu.loadgen), fmt(m.maxSendLagMs ?? null), String(m.errors)];
      }),
    });
    for (const k of ['base', 'forward'] as const) {
      const m = open[k];
      const a50 = m.lat.p50 - D.lat.p50;
      const a99 = m.lat.p99 - D.lat.p99;
      const errs = m.errors + D.errors;
      const behind = m.rps < OPEN_RATE * 0.97 ? `fell behind the rate (${fmt(m.rps, 0)}/s achieved): the latency is mostly queueing` : '';
      res.targets.push(check(`proxy: added latency at 1,000 rps, ${k === 'base' ? 'base-URL' : 'forward'} mode`, 'p50 ≤ 0.3 ms, p99 ≤ 2 ms', a50,
        () => a50 <= 0.3 && a99 <= 2 && errs === 0, `p50 ${plus(a50)} ms, p99 ${plus(a99)} ms (${fmt(m.lat.p50, 3)}/${fmt(m.lat.p99, 3)} vs direct ${fmt(D.lat.p50, 3)}/${fmt(D.lat.p99, 3)} ms)`,
        [errs ? `${errs} errors` : '', behind].filter(Boolean).join('; ') || undefined));
    }

    // ---- (2) throughput, closed loop: Latchkey base-URL vs the bare proxy (forward mode for reference)
    const closedKeys = ['base', 'bare', 'forward'] as const;
    const closedRuns: Record<string, RunOut[]> = Object.fromEntries(closedKeys.map((k) => [k, []]));
    for (let round = 0; round < cfg.closedRounds; round++) {
      for (const k of closedKeys) {
        o.log(`proxy: closed loop ${k}, round ${round + 1}/${cfg.closedRounds} (${cfg.closedMs / 1000} s)`);
        closedRuns[k]!.push(await rpc<RunOut>(cl, 'closed', {
          route: routes[k], path: '/small', connections: CLOSED_CONNECTIONS, expectLen: upstream.smallLen,
          warmupMs: round === 0 ? cfg.closedWarmMs : 300, durationMs: cfg.closedMs, pids: pidsFor(k),
        }));
      }
    }
    const closed = Object.fromEntries(closedKeys.map((k) => [k, merge(label[k]!, closedRuns[k]!)])) as Record<(typeof closedKeys)[number], Merged>;
    const perCpu = (m: Merged) => (m.cpu.proxy ? m.rps / (m.cpu.proxy / 100) : null);
    const B = closed.bare;
    res.tables.push({
      title: `(2) Throughput: closed loop, ${CLOSED_CONNECTIONS} keep-alive connections, GET /small, ${cfg.closedRounds}×${cfg.closedMs / 1000} s per system (alternating)`,
      header: ['system', 'req/s', 'per round', 'vs bare', 'p50 ms', 'p99 ms', 'req/proxy-CPU-s', 'proxy CPU', 'upstream CPU', 'client CPU', 'machine CPU', 'errors'],
      rows: closedKeys.map((k) => {
        const m = closed[k];
        return [m.system, fmt(m.rps, 0), m.perRound.map((x) => fmt(x, 0)).join(' / '), `${fmt(m.rps / B.rps, 3)}×`, fmt(m.lat.p50), fmt(m.lat.p99), fmt(perCpu(m), 0),
          fmtPct(m.cpu.proxy), fmtPct(m.cpu.upstream), fmtPct(m.cpu.loadgen), fmtPct(m.cpu.machine), String(m.errors)];
      }),
    });
    const tRatio = closed.base.rps / B.rps;
    const cpuRatio = (perCpu(closed.base) ?? NaN) / (perCpu(B) ?? NaN);
    const cErrs = closed.base.errors + B.errors;
    res.targets.push(check('proxy: throughput, base-URL mode / bare proxy', '≥ 0.80', tRatio, (v) => v >= 0.8 && cErrs === 0,
      `${fmt(tRatio, 3)} (${fmt(closed.base.rps, 0)} vs ${fmt(B.rps, 0)} req/s; per proxy CPU-second ${fmt(cpuRatio, 3)})`, cErrs ? `${cErrs} errors` : undefined));

    // ---- (3) a new CONNECT, leaf already cached, vs a new direct TLS connection
    o.log(`proxy: ${cfg.connectN} new connections each, direct and forward (CONNECT + TLS + first response)`);
    const basic = `Basic ${Buffer.from(`${agentToken}:default`).toString('base64')}`;
    const conn = await rpc<{ direct: number[]; forward: number[] }>(cl, 'connect', {
      direct: { port: upstream.port, ca: upstream.caPem },
      forward: { proxyPort, proxyAuth: basic, ca: latchkeyCa },
      upstreamPort: upstream.port, path: '/small', auth: { direct: `Bearer ${secret}`, forward: 'Bearer placeholder-replaced-by-latchkey' },
      n: cfg.connectN, warm: cfg.connectWarm,
    });
    const cd = summarize(conn.direct);
    const cf = summarize(conn.forward);
    res.tables.push({
      title: `(3) New connection per request (sequential, alternating, ${cfg.connectN} each after ${cfg.connectWarm} warm-up): TCP [+ CONNECT] + TLS handshake + GET /small answered; the leaf for the host is already cached`,
      header: ['path', 'n', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'mean ms', '+p50 ms', '+p99 ms'],
      rows: [
        ['direct new TLS connection to upstream', String(cd.n), fmt(cd.p50, 3), fmt(cd.p90, 3), fmt(cd.p99, 3), fmt(cd.max), fmt(cd.mean, 3), '–', '–'],
        ['new CONNECT through Latchkey + TLS (Latchkey CA)', String(cf.n), fmt(cf.p50, 3), fmt(cf.p90, 3), fmt(cf.p99, 3), fmt(cf.max), fmt(cf.mean, 3), fmt(cf.p50 - cd.p50, 3), fmt(cf.p99 - cd.p99, 3)],
      ],
    });
    const addConn = cf.p99 - cd.p99;
    res.targets.push(check('proxy: new CONNECT with cached leaf cert, added p99', '≤ 5 ms', addConn, (v) => v <= 5,
      `${plus(addConn)} ms p99 (${fmt(cf.p99, 3)} vs direct ${fmt(cd.p99, 3)} ms; p50 ${plus(cf.p50 - cd.p50)} ms)`));

    // ---- (4) streaming: time to first byte
    o.log(`proxy: streaming time to first byte, ${cfg.ttfbN} SSE requests per route`);
    const ttfbKeys = ['direct', 'base', 'forward', 'bare'] as const;
    const tt = await rpc<{ results: Record<string, { head: number[]; first: number[]; event: number[]; end: number[] }> }>(cl, 'ttfb', {
      routes: ttfbKeys.map((k) => routes[k]), path: SSE_PATH, n: cfg.ttfbN, warm: cfg.ttfbWarm,
    });
    const ts = Object.fromEntries(ttfbKeys.map((k) => {
      const r = tt.results[k]!;
      return [k, { head: summarize(r.head), first: summarize(r.first), event: summarize(r.event), end: summarize(r.end) }];
    })) as Record<(typeof ttfbKeys)[number], { head: LatencySummary; first: LatencySummary; event: LatencySummary; end: LatencySummary }>;
    const TD = ts.direct;
    res.tables.push({
      title: `(4) Streaming: GET ${SSE_PATH} (headers and the first event at once, then 2 more 5 ms apart) on warm keep-alive connections, ${cfg.ttfbN} per route (interleaved); ms from sending the request`,
      header: ['route', 'headers p50', 'first byte p50', 'first byte p99', '+first byte p50', '+first byte p99', 'first event p50', 'first event p99', 'end p50'],
      rows: ttfbKeys.map((k) => {
        const s = ts[k];
        return [label[k]!, fmt(s.head.p50, 3), fmt(s.first.p50, 3), fmt(s.first.p99, 3), k === 'direct' ? '–' : fmt(s.first.p50 - TD.first.p50, 3), k === 'direct' ? '–' : fmt(s.first.p99 - TD.first.p99, 3),
          fmt(s.event.p50, 3), fmt(s.event.p99, 3), fmt(s.end.p50, 3)];
      }),
    });
    for (const k of ['base', 'forward'] as const) {
      const a = ts[k].first.p50 - TD.first.p50;
      res.targets.push(check(`proxy: streaming, added time to first byte (${k === 'base' ? 'base-URL' : 'forward'} mode)`, '≤ 1 ms', a, (v) => v <= 1,
        `${plus(a)} ms p50 (${fmt(ts[k].first.p50, 3)} vs direct ${fmt(TD.first.p50, 3)} ms; p99 ${plus(ts[k].first.p99 - TD.first.p99)} ms)`));
    }
    await rpc(cl, 'close', {}).catch(() => {});

    // ---- (5) memory while a large body streams through Latchkey (base-URL mode, download)
    const memOf = async () => (await rpc<{ mem: NodeJS.MemoryUsage }>(lk!.proc, 'mem', {}, 30_000)).mem;
    const downloads: Array<{ key: string; system: string; bytes: number; ms: number; rss: { start: number; peak: number; end: number; samples: number } | null; cpu: Cpu; heap?: { before: NodeJS.MemoryUsage; after: NodeJS.MemoryUsage } }> = [];
    {
      o.log(`proxy: streaming ${cfg.bigBytes / MiB} MiB through Latchkey (base-URL mode), sampling its RSS`);
      const before = await memOf();
      const sampler = rssSampler(lk.pid);
      const d = await rpc<{ bytes: number; ms: number; cpu: Cpu }>(cl, 'download', { route: routes.base, path: `/bytes?n=${cfg.bigBytes}`, bytes: cfg.bigBytes, pids: { proxy: lk.pid, upstream: upstream.pid } });
      const rss = sampler.stop();
      const after = await memOf();
      downloads.push({ key: 'base', system: label.base!, bytes: d.bytes, ms: d.ms, rss, cpu: d.cpu, heap: { before, after } });
    }
    for (const k of ['bare', 'direct'] as const) {
      o.log(`proxy: streaming ${cfg.refBytes / MiB} MiB ${k} (reference MB/s)`);
      const sampler = k === 'bare' ? rssSampler(bareProxy.pid) : null;
      const d = await rpc<{ bytes: number; ms: number; cpu: Cpu }>(cl, 'download', { route: routes[k], path: `/bytes?n=${cfg.refBytes}`, bytes: cfg.refBytes, pids: pidsFor(k) });
      downloads.push({ key: k, system: label[k]!, bytes: d.bytes, ms: d.ms, rss: sampler ? sampler.stop() : null, cpu: d.cpu });
    }
    await rpc(cl, 'close', {}).catch(() => {});
    res.tables.push({
      title: `(5) Memory while streaming a large download (${o.quick ? `quick mode: ${cfg.bigBytes / MiB} MiB, not the SPEC's 1 GiB` : '1 GiB'} through Latchkey; ${cfg.refBytes / MiB} MiB for the references), RSS of the proxy process sampled every 50 ms from /proc`,
      header: ['system', 'bytes', 'seconds', 'MB/s', 'RSS start', 'RSS peak', 'RSS end', 'peak growth', 'proxy CPU', 'upstream CPU', 'client CPU'],
      rows: downloads.map((d) => [d.system, mib(d.bytes), fmt(d.ms / 1000), fmt(d.bytes / 1e6 / (d.ms / 1000), 0), mib(d.rss?.start), mib(d.rss?.peak), mib(d.rss?.end),
        d.rss ? mib(d.rss.peak - d.rss.start) : '–', fmtPct(d.cpu.proxy), fmtPct(d.cpu.upstream), fmtPct(d.cpu.self)]),
    });
    const big = downloads[0]!;
    const growth = big.rss ? big.rss.peak - big.rss.start : NaN;
    res.targets.push(check(`proxy: memory while streaming ${o.quick ? `${cfg.bigBytes / MiB} MiB (quick; SPEC: 1 GiB)` : '1 GiB'}`, 'flat (peak RSS growth < 64 MiB)', growth / MiB, (v) => v < 64,
      `RSS ${mib(big.rss?.start)} → peak ${mib(big.rss?.peak)} → end ${mib(big.rss?.end)} (${growth < 0 ? '−' : '+'}${mib(Math.abs(growth))}) at ${fmt(big.bytes / 1e6 / (big.ms / 1000), 0)} MB/s`));
    if (big.heap) {
      const h = big.heap;
      res.notes.push(`Latchkey memoryUsage before/after the big download: heapUsed ${mib(h.before.heapUsed)} → ${mib(h.after.heapUsed)}, external ${mib(h.before.external)} → ${mib(h.after.external)}, arrayBuffers ${mib(h.before.arrayBuffers)} → ${mib(h.after.arrayBuffers)}.`);
    }

    // ---- notes
    res.notes.push('direct = the client speaks HTTPS to the upstream itself (keep-alive); base-URL mode = plain HTTP to Latchkey, which dials the upstream over HTTPS (keep-alive); forward mode = CONNECT tunnels with TLS terminated by Latchkey (its CA) and HTTPS again to the upstream. Every proxied answer was checked: the upstream only answers the injected credential.');
    res.notes.push(`added latency/TTFB are differences of percentiles measured in alternating rounds on a shared machine: noise of ±0.1 ms at p50 and several ms at p99 is expected under load; compare the CPU columns (proxy CPU at ${fmt(OPEN_RATE, 0)} req/s is the cost per request).`);
    res.notes.push(`the floor of one extra hop on this machine now: the bare proxy adds p50 ${plus(open.bare.lat.p50 - D.lat.p50)} ms / p99 ${plus(open.bare.lat.p99 - D.lat.p99)} ms at ${fmt(OPEN_RATE, 0)} req/s and ${plus(ts.bare.first.p50 - TD.first.p50)} ms to the first streamed byte, using ${fmt(((open.bare.cpu.proxy ?? NaN) * 10) / open.bare.rps, 3)} ms of CPU per request against Latchkey's ${fmt(((open.base.cpu.proxy ?? NaN) * 10) / open.base.rps, 3)} (base-URL) / ${fmt(((open.forward.cpu.proxy ?? NaN) * 10) / open.forward.rps, 3)} (forward).`);
    if ((B.cpu.loadgen ?? 0) >= 80 || (closed.base.cpu.loadgen ?? 0) >= 80) res.notes.push(`the client used ${fmtPct(B.cpu.loadgen)} / ${fmtPct(closed.base.cpu.loadgen)} of a core in the closed loop (bare / base): near saturation, the ratio may be understated or overstated; see the per-CPU-second ratio.`);
    for (const m of [...Object.values(open), ...Object.values(closed)]) if (m.firstError) res.notes.push(`${m.system}: first error: ${m.firstError}`);
    res.data = {
      config: { ...cfg, openRate: OPEN_RATE, openConnections: OPEN_CONNECTIONS, closedConnections: CLOSED_CONNECTIONS, ssePath: SSE_PATH },
      open, closed, connect: { direct: cd, forward: cf }, ttfb: ts, downloads,
      ratios: { throughputBaseOverBare: tRatio, perCpuBaseOverBare: cpuRatio },
    };
    return res;
  } finally {
    if (cl) await stopChild(cl, 2000);
    await Promise.all([lk?.stop(), up && stopChild(up, 2000), bare && stopChild(bare, 2000)]);
    removeTempDir(home);
    removeTempDir(pkiDir);
  }
}

export const proxy: Benchmark = {
  name: 'proxy',
  title: 'Injection proxy: added latency, throughput vs a bare proxy, new CONNECT, streaming TTFB, memory',
  estimateSec: [120, 55],
  run,
};
