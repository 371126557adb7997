/**
 * Bench child: runs the real Latchkey control plane (startServer) in its own process so its CPU
 * is measured apart from the load generator's. Talks to the parent over IPC:
 *   -> {type:'ready', url, token, pid}
 *   <- {type:'seed', id, prefix, count, concurrency, valueBytes}   create secrets in-process (core API)
 *   <- {type:'mem', id}                                            process.memoryUsage() (the proxy's memory benchmark)
 *   <- {type:'elu', id}                                            the event loop's busy milliseconds since start
 *   <- {type:'stop', id}                                           close gracefully and exit
 * BENCH_HOME names the data dir; BENCH_PORT the port (default: any free one); BENCH_PROXY_PORT the
 * forward proxy's port (default: no forward proxy); BENCH_ABLATE=audit drops the events of read-only
 * operations instead of recording them (the reads bench's ablation row only). The proxy's LATCHKEY_EGRESS_ALLOW and
 * LATCHKEY_UPSTREAM_CA come from this process's environment, as in production.
 */
import { randomBytes } from 'node:crypto';
import { startServer } from '../../src/server/start.js';

const send = (m: unknown) => process.send?.(m);

async function main() {
  const home = process.env.BENCH_HOME;
  if (!home) throw new Error('BENCH_HOME is not set');
  const t0 = performance.now();
  // one token at thousands of requests/s: the per-actor limit (default 6000/min) is raised so the
  // limiter still runs on every request but never refuses one
  const srv = await startServer({
    home, host: '127.0.0.1', port: Number(process.env.BENCH_PORT ?? 0), proxyPort: Number(process.env.BENCH_PROXY_PORT ?? 0), logLevel: 'silent',
    rateLimits: { actor: { max: 1_000_000_000, windowMs: 60_000 } },
  });
  const startMs = performance.now() - t0;
  if (process.env.BENCH_ABLATE === 'audit') {
    // an ablation for the reads bench, never a product mode: events of operations that change
    // nothing (reads, vends, proxied requests) are dropped instead of durably recorded, to show
    // what the durable audit costs a read
    (srv.core as { record: (typeof srv.core)['record'] }).record = () => Promise.resolve();
  }
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await srv.close();
  };
  process.on('SIGTERM', () => void stop().finally(() => process.exit(0)));
  process.on('disconnect', () => void stop().finally(() => process.exit(0)));
  process.on('message', async (m: any) => {
    try {
      if (m?.type === 'stop') {
        await stop();
        send({ id: m.id, ok: true });
        setImmediate(() => process.exit(0));
      } else if (m?.type === 'mem') {
        send({ id: m.id, ok: true, mem: process.memoryUsage() });
      } else if (m?.type === 'elu') {
        // milliseconds the event loop has been busy since start (the reads bench divides a slice's share by its reads)
        send({ id: m.id, ok: true, activeMs: performance.eventLoopUtilization().active });
      } else if (m?.type === 'seed') {
        const ctx = { principal: { kind: 'system' as const }, ip: null, requestId: null };
        const count: number = m.count;
        const conc: number = m.concurrency ?? 16;
        let next = 0;
        const t = performance.now();
        const worker = async () => {
          for (;;) {
            const i = next++;
            if (i >= count) return;
            const name = `${m.prefix}${String(i).padStart(7, '0')}`;
            await srv.core.secrets.create(ctx, 'default', { name, value: randomBytes(m.valueBytes ?? 24).toString('base64url') });
          }
        };
        await Promise.all(Array.from({ length: conc }, worker));
        send({ id: m.id, ok: true, ms: performance.now() - t });
      } else if (m?.id) {
        send({ id: m.id, error: `unknown message ${m.type}` });
      }
    } catch (err) {
      send({ id: m?.id, error: String((err as Error)?.stack ?? err) });
    }
  });
  send({ type: 'ready', url: srv.url, proxyUrl: srv.proxyUrl, token: srv.initialized?.ownerToken ?? null, pid: process.pid, startMs });
}

main().catch((err) => {
  send({ type: 'error', error: String((err as Error)?.stack ?? err) });
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 100);
});
