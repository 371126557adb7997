/**
 * Bench child: the client side of the proxy benchmarks (its own process, so its CPU is reported
 * apart from the proxy's and the upstream's). A "route" is one way of reaching the upstream:
 *
 *   pool   an undici Pool to `url` (direct HTTPS to the upstream with its CA, Latchkey's base-URL
 *          mode, or the bare proxy), paths prefixed with `prefix`
 *   proxy  an undici ProxyAgent (HTTPS_PROXY style: CONNECT, TLS inside the tunnel verified
 *          against `ca` = the Latchkey CA, keep-alive tunnels), requests to `origin`
 *
 * Commands over IPC (each answered with the same id):
 *   {type:'open', route, path, rate, warmupMs, durationMs, connections, pids, expectLen}
 *        fixed-rate open loop; latency from each request's SCHEDULED send time
 *   {type:'closed', route, path, warmupMs, durationMs, connections, pids, expectLen}
 *        closed loop: `connections` workers, each sends again as soon as answered
 *   {type:'connect', direct, forward, path, auth, n, warm}
 *        a NEW connection per sample, alternating direct / forward: TCP (+ CONNECT) + TLS handshake
 *        + one GET answered in full; raw sockets, no TLS session resumption
 *   {type:'ttfb', routes, path, n, warm}
 *        streamed (SSE) requests on warm keep-alive connections, routes interleaved: time to the
 *        response headers, the first body byte, the first complete event, and the end
 *   {type:'download', route, path, bytes}   one big response, consumed as fast as it comes
 *   {type:'probe', routes, path, expectLen}   one request per route: null or the error, per route key
 *   {type:'close'}
 * `pids` = {name: pid} of the processes whose CPU to report over the measured window.
 */
import { openLoop as runOpenLoop } from '../lib/openloop.js';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { Pool, ProxyAgent, type Dispatcher } from 'undici';
import { CpuWindow } from '../lib/stats.js';

interface Route {
  key: string;
  kind: 'pool' | 'proxy';
  url: string;
  origin: string;
  prefix: string;
  headers: Record<string, string>;
  ca?: string;
}

const dispatchers = new Map<string, Dispatcher>();

function dispatcherFor(r: Route, connections: number): Dispatcher {
  const k = `${r.key}#${connections}`;
  let d = dispatchers.get(k);
  if (!d) {
    const common = { connections, pipelining: 1, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 600_000 };
    d = r.kind === 'proxy'
      ? new ProxyAgent({ uri: r.url, requestTls: { ca: r.ca }, ...common })
      : new Pool(r.url, { ...common, ...(r.ca ? { connect: { ca: r.ca } } : {}) });
    dispatchers.set(k, d);
  }
  return d;
}

async function one(d: Dispatcher, r: Route, path: string, expectLen: number | undefined): Promise<string | null> {
  const { statusCode, body } = await d.request({ origin: r.origin, path: r.prefix + path, method: 'GET', headers: r.headers });
  const buf = Buffer.from(await body.arrayBuffer());
  if (statusCode !== 200) return `HTTP ${statusCode}: ${buf.toString('utf8', 0, Math.min(buf.length, 300))}`;
  if (expectLen !== undefined && buf.length !== expectLen) return `body of ${buf.length} bytes, expected ${expectLen}`;
  return null;
}

interface LoopArgs {
  route: Route;
  path: string;
  connections: number;
  warmupMs: number;
  durationMs: number;
  rate?: number;
  expectLen?: number;
  pids: Record<string, number>;
}

async function closedLoop(a: LoopArgs, durationMs: number, record: boolean) {
  const d = dispatcherFor(a.route, a.connections);
  const lat: number[] = [];
  let ok = 0;
  let errors = 0;
  let firstError: string | null = null;
  const end = performance.now() + durationMs;
  const worker = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        const bad = await one(d, a.route, a.path, a.expectLen);
        const t1 = performance.now();
        if (bad) {
          errors++;
          firstError ??= bad;
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
  await Promise.all(Array.from({ length: a.connections }, worker));
  return { ok, errors, firstError, lat, wallMs: durationMs };
}

function openLoop(a: LoopArgs, durationMs: number, record: boolean) {
  const d = dispatcherFor(a.route, a.connections);
  return runOpenLoop(a.rate ?? 1000, durationMs, record, () => one(d, a.route, a.path, a.expectLen));
}

// ---- new connections on raw sockets

/** Reads one HTTP/1.1 response head from `s` (and, with `body`, its Content-Length body); resolves with the status. */
function readResponse(s: Socket | TLSSocket, body: boolean): Promise<{ status: number; head: string }> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    let headEnd = -1;
    let want = -1;
    let status = 0;
    let head = '';
    const done = (err: Error | null) => {
      s.off('data', onData);
      s.off('error', onErr);
      s.off('close', onClose);
      if (err) reject(err);
      else resolve({ status, head });
    };
    const onErr = (e: Error) => done(e);
    const onClose = () => done(new Error(`connection closed before the response was complete (${buf.length} bytes: ${buf.toString('latin1', 0, 200)})`));
    const onData = (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      if (headEnd === -1) {
        headEnd = buf.indexOf('\r\n\r\n');
        if (headEnd === -1) return;
        head = buf.toString('latin1', 0, headEnd);
        status = Number(head.slice(9, 12));
        const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
        want = m ? Number(m[1]) : 0;
        if (!body) {
          // a CONNECT answer: nothing may follow the head before the client speaks (TLS)
          return done(null);
        }
      }
      if (buf.length - headEnd - 4 >= want) done(null);
    };
    s.on('data', onData);
    s.once('error', onErr);
    s.once('close', onClose);
  });
}

function tcp(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: '127.0.0.1', port, noDelay: true });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

function tlsOn(opts: { socket?: Socket; port?: number; ca: string }): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const t = tlsConnect({ host: '127.0.0.1', ...(opts.socket ? { socket: opts.socket } : { port: opts.port }), ca: opts.ca, ALPNProtocols: ['http/1.1'] }, () => {
      t.off('error', reject);
      resolve(t);
    });
    t.once('error', reject);
  });
}

interface ConnectArgs {
  direct: { port: number; ca: string };
  forward: { proxyPort: number; proxyAuth: string; ca: string };
  upstreamPort: number;
  path: string;
  /** Authorization header value sent on each route (direct: the real credential; forward: anything, it is replaced) */
  auth: { direct: string; forward: string };
  n: number;
  warm: number;
}

async function newConnection(kind: 'direct' | 'forward', a: ConnectArgs): Promise<number> {
  const authority = `127.0.0.1:${a.upstreamPort}`;
  const t0 = performance.now();
  let tls: TLSSocket;
  let raw: Socket | null = null;
  try {
    if (kind === 'direct') {
      tls = await tlsOn({ port: a.direct.port, ca: a.direct.ca });
    } else {
      raw = await tcp(a.forward.proxyPort);
      const answer = readResponse(raw, false);
      raw.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${a.forward.proxyAuth}\r\n\r\n`);
      const r = await answer;
      if (r.status !== 200) throw new Error(`CONNECT answered ${r.head.split('\r\n')[0]}`);
      tls = await tlsOn({ socket: raw, ca: a.forward.ca });
    }
    const resp = readResponse(tls, true);
    tls.write(`GET ${a.path} HTTP/1.1\r\nHost: ${authority}\r\nAuthorization: ${a.auth[kind]}\r\n\r\n`);
    const r = await resp;
    if (r.status !== 200) throw new Error(`${kind}: GET answered ${r.head.split('\r\n')[0]}`);
    const ms = performance.now() - t0;
    tls.destroy();
    return ms;
  } finally {
    raw?.destroy();
  }
}

async function connectBench(a: ConnectArgs) {
  for (let i = 0; i < a.warm; i++) {
    await newConnection('direct', a);
    await newConnection('forward', a);
  }
  const direct: number[] = [];
  const forward: number[] = [];
  for (let i = 0; i < a.n; i++) {
    // alternate which goes first so neither always follows the other's teardown
    if (i % 2 === 0) {
      direct.push(await newConnection('direct', a));
      forward.push(await newConnection('forward', a));
    } else {
      forward.push(await newConnection('forward', a));
      direct.push(await newConnection('direct', a));
    }
  }
  return { direct, forward };
}

// ---- streaming: time to first byte

async function streamOnce(r: Route, path: string) {
  const d = dispatcherFor(r, 4);
  const t0 = performance.now();
  const { statusCode, body } = await d.request({ origin: r.origin, path: r.prefix + path, method: 'GET', headers: r.headers });
  const tHead = performance.now();
  let tFirst = 0;
  let tEvent = 0;
  let text = '';
  for await (const chunk of body) {
    const now = performance.now();
    if (!tFirst) tFirst = now;
    if (!tEvent) {
      text += (chunk as Buffer).toString('utf8');
      if (text.includes('\n\n')) tEvent = now;
    }
  }
  const tEnd = performance.now();
  if (statusCode !== 200 || !tEvent) throw new Error(`${r.key}: HTTP ${statusCode}, ${text.slice(0, 200)}`);
  return { head: tHead - t0, first: tFirst - t0, event: tEvent - t0, end: tEnd - t0 };
}

async function ttfbBench(routes: Route[], path: string, n: number, warm: number) {
  for (let i = 0; i < warm; i++) for (const r of routes) await streamOnce(r, path);
  const out: Record<string, { head: number[]; first: number[]; event: number[]; end: number[] }> = {};
  for (const r of routes) out[r.key] = { head: [], first: [], event: [], end: [] };
  for (let i = 0; i < n; i++) {
    // rotate the order each round
    for (let j = 0; j < routes.length; j++) {
      const r = routes[(i + j) % routes.length]!;
      const s = await streamOnce(r, path);
      const o = out[r.key]!;
      o.head.push(s.head);
      o.first.push(s.first);
      o.event.push(s.event);
      o.end.push(s.end);
    }
  }
  return out;
}

async function download(r: Route, path: string, bytes: number, pids: Record<string, number>) {
  const d = dispatcherFor(r, 1);
  const cpu = new CpuWindow(pids).start();
  const t0 = performance.now();
  const { statusCode, body } = await d.request({ origin: r.origin, path: r.prefix + path, method: 'GET', headers: r.headers });
  let got = 0;
  for await (const chunk of body) got += (chunk as Buffer).length;
  const ms = performance.now() - t0;
  const c = cpu.stop();
  if (statusCode !== 200 || got !== bytes) throw new Error(`${r.key}: HTTP ${statusCode}, ${got} of ${bytes} bytes`);
  return { bytes: got, ms, cpu: c };
}

process.on('disconnect', () => process.exit(0));
process.on('message', async (m: any) => {
  try {
    if (m?.type === 'close') {
      await Promise.all([...dispatchers.values()].map((d) => d.close().catch(() => {})));
      dispatchers.clear();
      process.send?.({ id: m.id, ok: true });
    } else if (m?.type === 'closed' || m?.type === 'open') {
      const a = m as LoopArgs & { type: string };
      const loop = m.type === 'open' ? openLoop : closedLoop;
      if (a.warmupMs > 0) await loop(a, a.warmupMs, false);
      const cpu = new CpuWindow(a.pids).start();
      const r = await loop(a, a.durationMs, true);
      const c = cpu.stop();
      process.send?.({ id: m.id, ...r, cpu: { ...c, loadgen: c.self } });
    } else if (m?.type === 'probe') {
      // one request per route, nothing timed: every route must answer right before anything is measured
      const results: Record<string, string | null> = {};
      for (const r of m.routes as Route[]) {
        try {
          results[r.key] = await one(dispatcherFor(r, 1), r, m.path, m.expectLen);
        } catch (err) {
          results[r.key] = String((err as Error)?.message ?? err);
        }
      }
      process.send?.({ id: m.id, results });
    } else if (m?.type === 'connect') {
      process.send?.({ id: m.id, ...(await connectBench(m as ConnectArgs)) });
    } else if (m?.type === 'ttfb') {
      process.send?.({ id: m.id, results: await ttfbBench(m.routes, m.path, m.n, m.warm) });
    } else if (m?.type === 'download') {
      process.send?.({ id: m.id, ...(await download(m.route, m.path, m.bytes, m.pids ?? {})) });
    } else {
      process.send?.({ id: m?.id, error: `unknown command ${m?.type}` });
    }
  } catch (err) {
    process.send?.({ id: m?.id, error: String((err as Error)?.stack ?? err) });
  }
});
process.send?.({ type: 'ready', pid: process.pid });
