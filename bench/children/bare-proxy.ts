/**
 * Bench child: the baseline for the proxy's throughput — a bare forwarding (reverse) proxy on
 * node:http + undici: every request is sent to ONE fixed upstream origin over HTTPS (keep-alive
 * undici Agent) with its method, path, headers and body, and the answer streamed back. No auth,
 * no injection, no redaction, no audit; only the hop-by-hop headers are dropped (any proxy must).
 *
 * IPC: parent sends {type:'init', id, origin, caPem}; child answers {id, url, pid} once listening.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, type Dispatcher } from 'undici';

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

let origin = '';
let agent: Agent | null = null;

async function handle(req: IncomingMessage, res: ServerResponse) {
  const headers: string[] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) if (!HOP.has(raw[i]!.toLowerCase())) headers.push(raw[i]!, raw[i + 1]!);
  const cl = req.headers['content-length'];
  const hasBody = cl !== undefined ? cl !== '0' : req.headers['transfer-encoding'] !== undefined;
  let up: Dispatcher.ResponseData;
  try {
    up = await agent!.request({ origin, path: req.url ?? '/', method: (req.method ?? 'GET') as Dispatcher.HttpMethod, headers, body: hasBody ? req : null });
  } catch {
    res.writeHead(502, { 'content-type': 'text/plain' });
    res.end('upstream error');
    return;
  }
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
  res.writeHead(up.statusCode, out);
  up.body.on('error', () => res.destroy());
  res.on('close', () => {
    if (!res.writableFinished) up.body.destroy();
  });
  up.body.pipe(res);
}

process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
process.on('message', (m: any) => {
  if (m?.type !== 'init') return;
  try {
    origin = m.origin;
    agent = new Agent({ connect: { ca: m.caPem }, keepAliveTimeout: 10_000 });
    const server = createServer({ requestTimeout: 0, keepAliveTimeout: 60_000 }, (req, res) => void handle(req, res));
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as AddressInfo).port;
      process.send?.({ id: m.id, url: `http://127.0.0.1:${port}`, pid: process.pid });
    });
  } catch (err) {
    process.send?.({ id: m.id, error: String((err as Error)?.stack ?? err) });
  }
});
