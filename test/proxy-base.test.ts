/**
 * The injection proxy in base-URL mode, end to end through the real server: a TLS upstream on
 * loopback with its own test CA (trusted through LATCHKEY_UPSTREAM_CA), loopback allowed through
 * LATCHKEY_EGRESS_ALLOW. Asserts what the upstream received (the injected credential, never the
 * agent token), what the agent received (never the credential), streaming (SSE incremental, large
 * bodies without memory growth), grants checked on every request, quota, missing credentials,
 * the fallback chain, errors with X-Latchkey-Error, audit (batched, never dropped, 503 while
 * the audit store is down), WebSocket upgrades, and the official openai SDK with its base URL
 * pointed at the proxy.
 */
import { once } from 'node:events';
import { gzipSync } from 'node:zlib';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect as netConnect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import OpenAI from 'openai';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../src/server/start.js';
import { describeBackends } from './helpers/backends.js';
import { createTestCa } from './helpers/test-ca.js';

const MASTER = '7e'.repeat(32);
const REAL = 'sk-real-Zq81nP4xVb6LmT0aRw3Yk';
const PLATFORM_VALUE = 'pk-platform-Hh27JdQw9sLe4Rt';
const MB = 1024 * 1024;

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  bytes?: number;
}

/** A local HTTPS server standing in for an API (OpenAI-shaped where it matters). */
async function startUpstream(cert: string, key: string) {
  const seen: Seen[] = [];
  const server: HttpsServer = createHttpsServer({ cert, key }, (req, res) => {
    const url = req.url ?? '/';
    const rec: Seen = { method: req.method ?? '', url, headers: req.headers };
    seen.push(rec);
    const auth = String(req.headers.authorization ?? '');
    if (url.startsWith('/v1/echo')) {
      // the credential comes back in a header and in the body, split across two writes mid-value
      const body = `{"you_sent":"${auth}","again":"${auth}"}`;
      const cut = body.indexOf(auth) + Math.floor(auth.length / 2);
      // and a header that would pass for the proxy's own error marker
      res.writeHead(200, { 'content-type': 'application/json', 'x-echo-auth': auth, 'x-latchkey-error': 'grant_required', 'content-length': String(Buffer.byteLength(body)) });
      res.write(body.slice(0, cut));
      setTimeout(() => res.end(body.slice(cut)), 20);
      req.resume();
      return;
    }
    if (url.startsWith('/v1/sse')) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      let i = 0;
      const t = setInterval(() => {
        res.write(`data: {"n":${i}}\n\n`);
        if (++i === 4) {
          clearInterval(t);
          res.end();
        }
      }, 250);
      req.resume();
      return;
    }
    if (url.startsWith('/v1/zstd')) {
      // an encoding the proxy cannot decode (so cannot redact): 204 or 200
      res.writeHead(url.includes('204') ? 204 : 200, { 'content-encoding': url.includes('list') ? 'gzip, br' : 'zstd' });
      res.end(url.includes('204') ? undefined : Buffer.alloc(64 * 1024, 7));
      req.resume();
      return;
    }
    if (url.startsWith('/v1/upload')) {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => {
        rec.bytes = n;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ bytes: n }));
      });
      return;
    }
    if (url.startsWith('/v1/download')) {
      const total = Number(new URL(url, 'https://x').searchParams.get('bytes'));
      const chunk = Buffer.alloc(64 * 1024, 'x');
      let sent = 0;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
      const pump = () => {
        while (sent < total) {
          const n = Math.min(chunk.length, total - sent);
          sent += n;
          if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
      req.resume();
      return;
    }
    if (url.startsWith('/v1/chat/completions') || url.startsWith('/v1/models')) {
      if (auth !== `Bearer ${REAL}`) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'Incorrect API key provided', type: 'invalid_request_error', code: 'invalid_api_key' } }));
        req.resume();
        return;
      }
      if (url.startsWith('/v1/models')) {
        res.writeHead(200, { 'content-type': 'application/json', 'openai-organization': `org-${REAL}` });
        res.end(JSON.stringify({ object: 'list', data: [{ id: 'gpt-test', object: 'model', created: 1, owned_by: 'latchkey' }] }));
        req.resume();
        return;
      }
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString());
        const words = ['Hello', ' from', ' upstream', `; key ${REAL}`];
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        let i = 0;
        const t = setInterval(() => {
          if (i < words.length) {
            res.write(`data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: body.model, choices: [{ index: 0, delta: { content: words[i] }, finish_reason: null }] })}\n\n`);
            i++;
          } else {
            clearInterval(t);
            res.write(`data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: body.model, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
            res.end('data: [DONE]\n\n');
          }
        }, 30);
      });
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('no such upstream route');
    req.resume();
  });
  server.on('upgrade', (req: IncomingMessage, sock, head) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    if (req.url?.startsWith('/ws-refused')) {
      // an ordinary answer instead of 101, echoing the credential it was sent (compressed, when asked
      // by ?enc=: gzip is decoded and redacted, an encoding the proxy cannot read is refused)
      const q = new URL(req.url, 'http://x').searchParams;
      // ?enc=echo names the credential itself as the encoding; ?big=1 answers with 2 MiB
      const enc = q.get('enc') === 'echo' ? String(req.headers.authorization).split(' ')[1] : q.get('enc');
      const text = q.get('big') ? 'x'.repeat(2 * 1024 * 1024) : JSON.stringify({ error: `key ${req.headers.authorization} may not open sockets` });
      const body = enc === 'gzip' ? gzipSync(text) : Buffer.from(text);
      sock.end(Buffer.concat([Buffer.from(`HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\n${enc ? `content-encoding: ${enc}\r\n` : ''}content-length: ${body.length}\r\nx-echo-auth: ${req.headers.authorization}\r\n\r\n`), body]));
      return;
    }
    sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nx-echo-auth: ${req.headers.authorization}\r\n\r\n`);
    if (head.length) sock.write(head);
    sock.pipe(sock); // echo
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, seen, port: (server.address() as AddressInfo).port };
}

/** A raw HTTP/1.1 request to the control plane (streams both ways). */
function raw(base: string, method: string, path: string, headers: Record<string, string>, body?: Readable): Promise<IncomingMessage> {
  const u = new URL(path, base);
  return new Promise((resolve, reject) => {
    const r = httpRequest({ host: u.hostname, port: u.port, method, path: u.pathname + u.search, headers }, resolve);
    r.on('error', reject);
    if (body) body.pipe(r);
    else r.end();
  });
}

async function readAll(res: IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of res) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describeBackends('proxy base-URL mode', (ctx) => {
  let server: RunningServer;
  let up: Awaited<ReturnType<typeof startUpstream>>;
  let owner: string;
  let agentToken: string;
  let grantId: string;
  let upHost: string;

  async function call(method: string, path: string, opts: { token?: string | null; body?: unknown } = {}) {
    const headers: Record<string, string> = {};
    if (opts.token !== null) headers.authorization = `Bearer ${opts.token ?? owner}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(server.url + path, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, json: text && text.startsWith('{') ? JSON.parse(text) : null };
  }

  function proxied(path: string, init: RequestInit & { token?: string | null } = {}) {
    const headers = new Headers(init.headers);
    if (init.token !== null && !headers.has('x-api-key') && !headers.has('x-latchkey-token') && !headers.has('authorization')) headers.set('authorization', `Bearer ${init.token ?? agentToken}`);
    return fetch(`${server.url}/proxy/${path}`, { ...init, headers });
  }

  async function proxyEvents(): Promise<Array<{ actor: string; vault: string; target: string; outcome: string; details: Record<string, any> }>> {
    const r = await call('GET', '/v1/audit?action=proxy.request&limit=1000');
    expect(r.status).toBe(200);
    return r.json.items;
  }

  async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 3000): Promise<T> {
    const until = Date.now() + ms;
    for (;;) {
      const v = await fn();
      if (ok(v) || Date.now() > until) return v;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  beforeAll(async () => {
    const ca = await createTestCa();
    const leaf = await ca.issue(['127.0.0.1', 'localhost']);
    const dir = mkdtempSync(join(tmpdir(), 'lk-upca-'));
    const caFile = join(dir, 'upstream-ca.pem');
    writeFileSync(caFile, ca.certPem);
    up = await startUpstream(leaf.certPem, leaf.keyPem);
    upHost = `127.0.0.1:${up.port}`;
    server = await startServer({
      home: ctx.home, databaseUrl: ctx.databaseUrl, host: '127.0.0.1', port: 0, proxyPort: 0, logLevel: 'silent',
      env: { LATCHKEY_MASTER_KEY: MASTER, LATCHKEY_EGRESS_ALLOW: '127.0.0.1/32', LATCHKEY_UPSTREAM_CA: caFile },
    });
    owner = server.initialized!.ownerToken;
    expect((await call('PUT', '/v1/vaults/default/secrets/OPENAI_KEY', { body: { value: REAL } })).status).toBe(201);
    expect((await call('POST', '/v1/vaults/default/services', { body: { name: 'openai', host: upHost, auth: { type: 'bearer', key: 'OPENAI_KEY' } } })).status).toBe(201);
    const a = await call('POST', '/v1/agents', { body: { name: 'proxy-bot', vaults: ['default'] } });
    expect(a.status).toBe(201);
    agentToken = a.json.token;
    const g = await call('POST', '/v1/vaults/default/grants', { body: { agent: 'proxy-bot', service: 'openai', mode: 'use' } });
    expect(g.status).toBe(201);
    grantId = g.json.id;
  });

  afterAll(async () => {
    await server?.close();
    up?.server.close();
  });

  it('injects the credential and removes the agent token, however the agent sent it', async () => {
    const ways: Array<Record<string, string>> = [
      { authorization: `Bearer ${agentToken}` },
      { 'x-api-key': agentToken },
      { 'x-latchkey-token': agentToken, authorization: 'Bearer client-own-value' },
    ];
    for (const h of ways) {
      const before = up.seen.length;
      // a raw request: fetch would drop Connection and Proxy-Authorization itself
      const res = await raw(server.url, 'GET', '/proxy/default/openai/v1/echo?limit=5&user=abc', {
        ...h, connection: 'keep-alive, x-hop', 'x-hop': 'drop me', 'proxy-authorization': 'Basic eHg6eXk=', 'x-custom': 'kept', te: 'trailers',
      });
      expect(res.statusCode).toBe(200);
      const body = (await readAll(res)).toString();
      const got = up.seen[before]!;
      expect(got.url).toBe('/v1/echo?limit=5&user=abc');
      expect(got.headers.authorization).toBe(`Bearer ${REAL}`); // injected, replacing the client's
      expect(got.headers.host).toBe(upHost);
      expect(got.headers['x-custom']).toBe('kept');
      for (const gone of ['x-api-key', 'x-latchkey-token', 'x-hop', 'proxy-authorization', 'te']) expect(got.headers[gone]).toBeUndefined();
      expect(JSON.stringify(got.headers)).not.toContain(agentToken);
      // the agent never sees the credential: not in the echoed header, not in the body split mid-value
      expect(String(res.headers['x-echo-auth'])).not.toContain(REAL);
      expect(String(res.headers['x-echo-auth'])).toMatch(/^Bearer \[REDACTED\**\]$/);
      expect(body).not.toContain(REAL);
      expect(body).toContain('[REDACTED');
      expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(body));
      expect(res.headers['x-latchkey-error']).toBeUndefined();
      // the control plane's security headers are on proxied answers too (served before Fastify)
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['content-security-policy']).toContain("default-src 'none'");
    }
  });

  it('the Fastify route serves the same proxy (app.inject, or behind a trusted reverse proxy)', async () => {
    const res = await server.app.inject({ method: 'GET', url: '/proxy/default/openai/v1/echo', headers: { authorization: `Bearer ${agentToken}` } });
    expect(res.statusCode).toBe(200);
    expect(res.body).not.toContain(REAL);
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    const bad = await server.app.inject({ method: 'GET', url: '/proxy/default' });
    expect([bad.statusCode, bad.headers['x-latchkey-error']]).toEqual([404, 'proxy_path']);
    expect(bad.headers['x-frame-options']).toBe('DENY');
  });

  it('the proxy\'s own refusals carry the security headers too (bad path, no token, unknown service)', async () => {
    for (const [path, headers, status, code] of [
      ['/proxy/default', {}, 404, 'proxy_path'],
      ['/proxy/default/openai/v1/echo', {}, 401, 'token_required'],
      ['/proxy/default/no-such-service/v1/echo', { authorization: `Bearer ${agentToken}` }, 404, 'service_not_found'],
    ] as const) {
      const res = await raw(server.url, 'GET', path, headers);
      await readAll(res);
      expect([res.statusCode, res.headers['x-latchkey-error']], path).toEqual([status, code]);
      expect(res.headers['content-type'], path).toBe('application/problem+json');
      expect(res.headers['x-content-type-options'], path).toBe('nosniff');
      expect(res.headers['x-frame-options'], path).toBe('DENY');
      expect(res.headers['referrer-policy'], path).toBe('no-referrer');
      expect(res.headers['content-security-policy'], path).toContain("frame-ancestors 'none'");
      expect(res.headers['permissions-policy'], path).toContain('camera=()');
    }
  });

  it('query-parameter auth replaces the client\'s parameter; wildcard services take the host from X-Latchkey-Host', async () => {
    expect((await call('POST', '/v1/vaults/default/services', { body: { name: 'byquery', host: upHost, auth: { type: 'query', param: 'api_key', key: 'OPENAI_KEY' } } })).status).toBe(201);
    expect((await call('POST', '/v1/vaults/default/grants', { body: { agent: 'proxy-bot', service: 'byquery', mode: 'use' } })).status).toBe(201);
    const before = up.seen.length;
    const res = await proxied('default/byquery/v1/echo?api_key=client-guess&q=x');
    expect(res.status).toBe(200);
    await res.text();
    const url = new URL(up.seen[before]!.url, 'https://x');
    expect(url.searchParams.getAll('api_key')).toEqual([REAL]);
    expect(url.searchParams.get('q')).toBe('x');
    expect(up.seen[before]!.headers.authorization).toBeUndefined(); // the agent's bearer token is not forwarded
    // nor in the URL: a query parameter carrying it is dropped, in the path it is refused
    const inQuery = await proxied(`default/byquery/v1/echo?key=${agentToken}&q=y&also=${encodeURIComponent(`Bearer ${agentToken}`)}`);
    expect(inQuery.status).toBe(200);
    await inQuery.text();
    expect(up.seen.at(-1)!.url).not.toContain(agentToken.slice(9));
    expect(new URL(up.seen.at(-1)!.url, 'https://x').searchParams.get('q')).toBe('y');
    const seenBefore = up.seen.length;
    const inPath = await proxied(`default/byquery/bot${agentToken}/getMe`);
    expect([inPath.status, inPath.headers.get('x-latchkey-error')]).toEqual([400, 'token_in_url']);
    expect(up.seen.length).toBe(seenBefore);

    expect((await call('POST', '/v1/vaults/default/services', { body: { name: 'wild', host: '*.lk-wild.invalid', auth: { type: 'bearer', key: 'OPENAI_KEY' } } })).status).toBe(201);
    expect((await call('POST', '/v1/vaults/default/grants', { body: { agent: 'proxy-bot', service: 'wild', mode: 'use' } })).status).toBe(201);
    const noHost = await proxied('default/wild/x');
    expect([noHost.status, noHost.headers.get('x-latchkey-error')]).toEqual([400, 'host_required']);
    const wrongHost = await proxied('default/wild/x', { headers: { 'x-latchkey-host': 'evil.example.com' } });
    expect([wrongHost.status, wrongHost.headers.get('x-latchkey-error')]).toEqual([403, 'host_not_allowed']);
    const deep = await proxied('default/wild/x', { headers: { 'x-latchkey-host': 'a.b.lk-wild.invalid' } });
    expect([deep.status, deep.headers.get('x-latchkey-error')]).toEqual([403, 'host_not_allowed']);
    // only a plain host name: an encoded dot or userinfo would become another name once parsed
    for (const h of ['evil%2ecom.lk-wild.invalid', 'x@y.lk-wild.invalid', 'api.lk-wild.invalid:8443', 'api_x.lk-wild.invalid']) {
      const bad = await proxied('default/wild/x', { headers: { 'x-latchkey-host': h } });
      expect([bad.status, bad.headers.get('x-latchkey-error')], h).toEqual([400, 'host_invalid']);
    }
    // a covered host is dialed (this one does not resolve: the proxy's own 502)
    const covered = await proxied('default/wild/x', { headers: { 'x-latchkey-host': 'api.lk-wild.invalid' } });
    expect([covered.status, covered.headers.get('x-latchkey-error')]).toEqual([502, 'upstream_error']);
  });

  it('streams SSE as it is produced', async () => {
    const t0 = Date.now();
    const res = await raw(server.url, 'GET', '/proxy/default/openai/v1/sse', { authorization: `Bearer ${agentToken}`, accept: 'text/event-stream' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    const arrivals: Array<{ at: number; text: string }> = [];
    for await (const c of res) arrivals.push({ at: Date.now() - t0, text: (c as Buffer).toString() });
    const text = arrivals.map((a) => a.text).join('');
    expect(text).toBe([0, 1, 2, 3].map((n) => `data: {"n":${n}}\n\n`).join(''));
    // four events 250 ms apart arrive as four pieces, the first long before the last
    expect(arrivals.length).toBeGreaterThanOrEqual(4);
    expect(arrivals.at(-1)!.at - arrivals[0]!.at).toBeGreaterThan(500);
  });

  it('streams 200 MB each way without buffering (memory stays flat)', async () => {
    const total = 200 * MB;
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      // upload: a generated body, chunked, never held whole by anyone
      const chunk = Buffer.alloc(256 * 1024, 'u');
      async function* gen() {
        for (let sent = 0; sent < total; sent += chunk.length) yield chunk;
      }
      const before = up.seen.length;
      const upRes = await raw(server.url, 'POST', '/proxy/default/openai/v1/upload', { authorization: `Bearer ${agentToken}`, 'content-type': 'application/octet-stream' }, Readable.from(gen()));
      expect(upRes.statusCode).toBe(200);
      expect(JSON.parse((await readAll(upRes)).toString())).toEqual({ bytes: total });
      expect(up.seen[before]!.headers['transfer-encoding']).toBe('chunked');
      // download
      const down = await raw(server.url, 'GET', `/proxy/default/openai/v1/download?bytes=${total}`, { authorization: `Bearer ${agentToken}` });
      expect(down.statusCode).toBe(200);
      expect(down.headers['content-length']).toBe(String(total));
      let n = 0;
      for await (const c of down) n += (c as Buffer).length;
      expect(n).toBe(total);
    } finally {
      clearInterval(sampler);
    }
    // 400 MB went through this process; buffering either body would show
    expect(peak - rss0).toBeLessThan(100 * MB);
  }, 120_000);

  it('the grant is checked on every request: revoked -> the next request is 403, on the same connection too', async () => {
    const a = await call('POST', '/v1/agents', { body: { name: 'revokee', vaults: ['default'] } });
    const tok = a.json.token as string;
    const g = await call('POST', '/v1/vaults/default/grants', { body: { agent: 'revokee', service: 'openai', mode: 'use' } });
    expect((await proxied('default/openai/v1/echo', { token: tok })).status).toBe(200);
    expect((await call('POST', `/v1/vaults/default/grants/${g.json.id}/revoke`)).status).toBe(200);
    const res = await proxied('default/openai/v1/echo', { token: tok });
    expect(res.status).toBe(403);
    expect(res.headers.get('x-latchkey-error')).toBe('grant_required');
    const p = (await res.json()) as Record<string, any>;
    expect(p).toMatchObject({ code: 'grant_required', grant_state: 'revoked' });
    expect(p.hint).toContain('/v1/vaults/default/grants');
    // disabling the service applies on the very next request (no cache decides), and enabling again too
    const svc = (await call('GET', '/v1/vaults/default/services/openai')).json;
    const { created_at: _c, updated_at: _u, name: _n, ...spec } = svc;
    expect((await call('PUT', '/v1/vaults/default/services/openai', { body: { ...spec, enabled: false } })).status).toBe(200);
    const off = await proxied('default/openai/v1/echo');
    expect([off.status, off.headers.get('x-latchkey-error')]).toEqual([403, 'service_disabled']);
    expect((await call('PUT', '/v1/vaults/default/services/openai', { body: { ...spec, enabled: true } })).status).toBe(200);
    expect((await proxied('default/openai/v1/echo')).status).toBe(200);
    // a short-lived session token works in its own vault only; a revoked agent is 401 at once
    const sess = await call('POST', '/v1/sessions', { token: agentToken, body: { vault: 'default', ttl: 600 } });
    expect(sess.status).toBe(201);
    expect((await proxied('default/openai/v1/echo', { token: sess.json.token })).status).toBe(200);
    const c = await call('POST', '/v1/agents', { body: { name: 'shortlived', vaults: ['default'] } });
    expect((await call('POST', '/v1/vaults/default/grants', { body: { agent: 'shortlived', service: 'openai', mode: 'use' } })).status).toBe(201);
    expect((await proxied('default/openai/v1/echo', { token: c.json.token })).status).toBe(200);
    expect((await call('DELETE', '/v1/agents/shortlived')).status).toBe(200);
    const gone = await proxied('default/openai/v1/echo', { token: c.json.token });
    expect([gone.status, gone.headers.get('x-latchkey-error')]).toEqual([401, 'token_revoked']);
    // an agent without any grant gets the same, with the state `none`
    const b = await call('POST', '/v1/agents', { body: { name: 'nogrant', vaults: ['default'] } });
    const r2 = await proxied('default/openai/v1/echo', { token: b.json.token });
    expect(r2.status).toBe(403);
    expect(((await r2.json()) as Record<string, any>).grant_state).toBe('none');
  });

  it('a grant that expires is refused from the next request on, even right after a cached success; a longer grant still serves', async () => {
    const a = await call('POST', '/v1/agents', { body: { name: 'expiring', vaults: ['default'] } });
    const tok = a.json.token as string;
    const g1 = await call('POST', '/v1/vaults/default/grants', { body: { agent: 'expiring', service: 'openai', mode: 'use', expires: '2s' } });
    expect(g1.status).toBe(201);
    // warm: the same lookup answered again and again (SQLite: from the read cache)
    for (let i = 0; i < 3; i++) expect((await proxied('default/openai/v1/echo', { token: tok })).status).toBe(200);
    await new Promise((r) => setTimeout(r, Date.parse(g1.json.expires_at) - Date.now() + 20));
    const late = await proxied('default/openai/v1/echo', { token: tok });
    expect([late.status, late.headers.get('x-latchkey-error')]).toEqual([403, 'grant_required']);
    expect(((await late.json()) as Record<string, any>).grant_state).toBe('expired');
    // two grants: the one that lasts longer decides
    const g2 = await call('POST', '/v1/vaults/default/grants', { body: { agent: 'expiring', service: 'openai', mode: 'use', expires: '1h' } });
    const g3 = await call('POST', '/v1/vaults/default/grants', { body: { agent: 'expiring', service: 'openai', mode: 'use', expires: '2s' } });
    expect([g2.status, g3.status]).toEqual([201, 201]);
    expect((await proxied('default/openai/v1/echo', { token: tok })).status).toBe(200);
    await new Promise((r) => setTimeout(r, Date.parse(g3.json.expires_at) - Date.now() + 20));
    expect((await proxied('default/openai/v1/echo', { token: tok })).status).toBe(200);
  });

  it('quota per agent per service per minute -> 429 with Retry-After', async () => {
    expect((await call('POST', '/v1/vaults/default/services', { body: { name: 'limited', host: `${upHost}/v1/echo`, auth: { type: 'bearer', key: 'OPENAI_KEY' }, quota_per_minute: 2 } })).status).toBe(201);
    expect((await call('POST', '/v1/vaults/default/grants', { body: { agent: 'proxy-bot', service: 'limited', mode: 'use' } })).status).toBe(201);
    // keep the three requests inside one minute window
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 55_000) await new Promise((r) => setTimeout(r, 60_000 - intoMinute + 50));
    expect((await proxied('default/limited/v1/echo')).status).toBe(200);
    expect((await proxied('default/limited/v1/echo')).status).toBe(200);
    const res = await proxied('default/limited/v1/echo');
    expect(res.status).toBe(429);
    expect(res.headers.get('x-latchkey-error')).toBe('quota_exceeded');
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    // another service is not affected
    expect((await proxied('default/openai/v1/echo')).status).toBe(200);
  });

  it('a credential that is gone -> 502 credential_not_found; an unreachable upstream -> 502 upstream_error', async () => {
    expect((await call('PUT', '/v1/vaults/default/secrets/TEMP_KEY', { body: { value: 'temp-value-123456' } })).status).toBe(201);
    expect((await call('POST', '/v1/vaults/default/services', { body: { name: 'temp', host: upHost, auth: { type: 'header', name: 'X-Api-Key', key: 'TEMP_KEY' } } })).status).toBe(201);
    expect((await call('POST', '/v1/vaults/default/grants', { body: { agent: 'proxy-bot', service: 'temp', mode: 'use' } })).status).toBe(201);
    const before = up.seen.length;
    expect((await proxied('default/temp/v1/echo')).status).toBe(200);
    expect(up.seen[before]!.headers['x-api-key']).toBe('temp-value-123456');
    // a new value (a new version), a rollback and a rotation (same value, new data key) are injected from the next request on
    expect((await call('PUT', '/v1/vaults/default/secrets/TEMP_KEY', { body: { value: 'temp-value-v2-7890' } })).status).toBe(200);
    expect((await proxied('default/temp/v1/echo')).status).toBe(200);
    expect(up.seen.at(-1)!.headers['x-api-key']).toBe('temp-value-v2-7890');
    expect((await call('POST', '/v1/vaults/default/secrets/TEMP_KEY/rollback', { body: { version: 1 } })).status).toBe(200);
    expect((await proxied('default/temp/v1/echo')).status).toBe(200);
    expect(up.seen.at(-1)!.headers['x-api-key']).toBe('temp-value-123456');
    expect((await call('POST', '/v1/vaults/default/secrets/TEMP_KEY/rotate')).status).toBe(200);
    expect((await proxied('default/temp/v1/echo')).status).toBe(200);
    expect(up.seen.at(-1)!.headers['x-api-key']).toBe('temp-value-123456');
    // a changed service definition (another header, a prefix) is injected from the next request on
    const svc = (await call('GET', '/v1/vaults/default/services/temp')).json;
    const { created_at: _c, updated_at: _u, name: _n, ...spec } = svc;
    expect((await call('PUT', '/v1/vaults/default/services/temp', { body: { ...spec, auth: { type: 'header', name: 'X-Other-Key', prefix: 'Key ', key: 'TEMP_KEY' } } })).status).toBe(200);
    expect((await proxied('default/temp/v1/echo')).status).toBe(200);
    expect(up.seen.at(-1)!.headers['x-other-key']).toBe('Key temp-value-123456');
    expect(up.seen.at(-1)!.headers['x-api-key']).toBeUndefined();
    expect((await call('DELETE', '/v1/vaults/default/secrets/TEMP_KEY')).status).toBe(200);
    const res = await proxied('default/temp/v1/echo');
    expect(res.status).toBe(502);
    expect(res.headers.get('x-latchkey-error')).toBe('credential_not_found');
    expect(((await res.json()) as Record<string, any>).detail).toContain('TEMP_KEY');

    // a port nobody listens on
    const s = netConnect({ host: '127.0.0.1', port: 1 });
    s.on('error', () => {});
    s.destroy();
    const closed = await new Promise<number>((resolve) => {
      const srv = createHttpsServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    expect((await call('POST', '/v1/vaults/default/services', { body: { name: 'dead', host: `127.0.0.1:${closed}`, auth: { type: 'bearer', key: 'OPENAI_KEY' } } })).status).toBe(201);
    expect((await call('POST', '/v1/vaults/default/grants', { body: { agent: 'proxy-bot', service: 'dead', mode: 'use' } })).status).toBe(201);
    const d = await proxied('default/dead/anything');
    expect(d.status).toBe(502);
    expect(d.headers.get('x-latchkey-error')).toBe('upstream_error');
  });

  it('the fallback chain serves a credential the vault lacks, and the audit names the serving vault', async () => {
    expect((await call('POST', '/v1/vaults', { body: { name: 'platform' } })).status).toBe(201);
    expect((await call('POST', '/v1/vaults', { body: { name: 'tenant', fallback: ['platform'] } })).status).toBe(201);
    expect((await call('PUT', '/v1/vaults/platform/secrets/PLATFORM_KEY', { body: { value: PLATFORM_VALUE } })).status).toBe(201);
    expect((await call('POST', '/v1/vaults/tenant/services', { body: { name: 'pf', host: upHost, auth: { type: 'bearer', key: 'PLATFORM_KEY' } } })).status).toBe(201);
    expect((await call('POST', '/v1/vaults/tenant/agents', { body: { name: 'proxy-bot' } })).status).toBe(201);
    expect((await call('POST', '/v1/vaults/tenant/grants', { body: { agent: 'proxy-bot', service: 'pf', mode: 'use' } })).status).toBe(201);
    const before = up.seen.length;
    const res = await proxied('tenant/pf/v1/echo/fallback');
    expect(res.status).toBe(200);
    expect(up.seen[before]!.headers.authorization).toBe(`Bearer ${PLATFORM_VALUE}`);
    expect(await res.text()).not.toContain(PLATFORM_VALUE);
    const ev = await eventually(proxyEvents, (evs) => evs.some((e) => e.details.path === '/v1/echo/fallback'));
    const e = ev.find((x) => x.details.path === '/v1/echo/fallback')!;
    expect(e).toMatchObject({ actor: 'agent:proxy-bot', vault: 'tenant', outcome: 'ok', details: { service: 'pf', credentials: ['PLATFORM_KEY'], served_by: { PLATFORM_KEY: 'platform' }, status: 200 } });
  });

  it('refusals are the proxy\'s own, marked with X-Latchkey-Error', async () => {
    const none = await proxied('default/openai/v1/echo', { token: null });
    expect(none.status).toBe(401);
    expect(none.headers.get('x-latchkey-error')).toBe('token_required');
    expect(none.headers.get('www-authenticate')).toContain('Bearer');
    expect(((await none.json()) as Record<string, any>).hint).toContain('X-Latchkey-Token');
    const bad = await proxied('default/openai/v1/echo', { token: 'lk_agent_' + 'A'.repeat(43) });
    expect([bad.status, bad.headers.get('x-latchkey-error')]).toEqual([401, 'invalid_token']);
    const notLk = await proxied('default/openai/v1/echo', { token: 'sk-something' });
    expect([notLk.status, notLk.headers.get('x-latchkey-error')]).toEqual([401, 'invalid_token']);
    const person = await proxied('default/openai/v1/echo', { token: owner });
    expect([person.status, person.headers.get('x-latchkey-error')]).toEqual([403, 'agents_only']);
    const other = await call('POST', '/v1/agents', { body: { name: 'outsider', vaults: ['platform'] } });
    const outsider = await proxied('default/openai/v1/echo', { token: other.json.token });
    expect([outsider.status, outsider.headers.get('x-latchkey-error')]).toEqual([403, 'not_a_member']);
    const unknown = await proxied('default/nosuch/v1/echo');
    expect([unknown.status, unknown.headers.get('x-latchkey-error')]).toEqual([404, 'service_not_found']);
    const noVault = await proxied('novault/openai/v1/echo');
    expect([noVault.status, noVault.headers.get('x-latchkey-error')]).toEqual([404, 'vault_not_found']);
    const badPath = await proxied('default');
    expect([badPath.status, badPath.headers.get('x-latchkey-error')]).toEqual([404, 'proxy_path']);

    expect((await call('POST', '/v1/vaults/default/services', { body: { name: 'readonly', host: upHost, auth: { type: 'bearer', key: 'OPENAI_KEY' }, methods: ['GET'], path_prefixes: ['/v1/echo'] } })).status).toBe(201);
    expect((await call('POST', '/v1/vaults/default/grants', { body: { agent: 'proxy-bot', service: 'readonly', mode: 'use' } })).status).toBe(201);
    expect((await proxied('default/readonly/v1/echo')).status).toBe(200);
    const post = await proxied('default/readonly/v1/echo', { method: 'POST', body: '{}' });
    expect([post.status, post.headers.get('x-latchkey-error')]).toEqual([403, 'method_not_allowed']);
    expect(((await post.json()) as Record<string, any>).hint).toContain('proposals');
    const path = await proxied('default/readonly/v1/sse');
    expect([path.status, path.headers.get('x-latchkey-error')]).toEqual([403, 'path_not_allowed']);
    const sneaky = await raw(server.url, 'GET', '/proxy/default/readonly/v1/echo/../sse', { authorization: `Bearer ${agentToken}` });
    expect([sneaky.statusCode, sneaky.headers['x-latchkey-error']]).toEqual([403, 'path_not_allowed']);
    sneaky.resume();
    // an upstream's own error passes through unmarked
    const upstream404 = await proxied('default/openai/nothing-here');
    expect(upstream404.status).toBe(404);
    expect(upstream404.headers.get('x-latchkey-error')).toBeNull();
  });

  it('audits every proxied request after the response: method, host, path without query values, status, latency, service, credentials; never a value', async () => {
    const res = await proxied('default/openai/v1/echo/audited?token=supersecretquery&x=1');
    expect(res.status).toBe(200);
    await res.text();
    const evs = await eventually(proxyEvents, (e) => e.some((x) => x.details.path?.startsWith('/v1/echo/audited')));
    const e = evs.find((x) => x.details.path?.startsWith('/v1/echo/audited'))!;
    expect(e).toMatchObject({ actor: 'agent:proxy-bot', vault: 'default', target: 'service:openai', outcome: 'ok' });
    expect(e.details).toMatchObject({ method: 'GET', host: '127.0.0.1', port: up.port, path: '/v1/echo/audited?token=&x=', status: 200, service: 'openai', credentials: ['OPENAI_KEY'], served_by: { OPENAI_KEY: 'default' } });
    expect(typeof e.details.latency_ms).toBe('number');
    const denied = evs.find((x) => x.details.error === 'grant_required');
    expect(denied?.outcome).toBe('denied');
    const all = JSON.stringify((await call('GET', '/v1/audit?limit=1000')).json);
    for (const v of [REAL, PLATFORM_VALUE, agentToken, 'supersecretquery']) expect(all).not.toContain(v);
  });

  it('audit store down: events are kept, new requests get 503 until the store takes them again', async () => {
    const store = server.core.store;
    const tx = store.tx.bind(store);
    const appendAudit = store.appendAudit.bind(store);
    let down = true;
    // every way to write is down: transactions and the audit group commit
    (store as { tx: typeof store.tx }).tx = ((fn: never) => (down ? Promise.reject(new Error('database is down')) : tx(fn))) as typeof store.tx;
    (store as { appendAudit: typeof store.appendAudit }).appendAudit = ((make: never) => (down ? Promise.reject(new Error('database is down')) : appendAudit(make))) as typeof store.appendAudit;
    try {
      const first = await proxied('default/openai/v1/echo/during-outage');
      expect(first.status).toBe(200); // answered; its event is queued
      await first.text();
      const refused = await eventually(() => proxied('default/openai/v1/echo/refused'), (r) => r.status === 503);
      expect(refused.status).toBe(503);
      expect(refused.headers.get('x-latchkey-error')).toBe('audit_unavailable');
      expect(refused.headers.get('retry-after')).toBe('1');
    } finally {
      down = false;
    }
    const back = await eventually(() => proxied('default/openai/v1/echo/after-outage'), (r) => r.status === 200);
    expect(back.status).toBe(200);
    const evs = await eventually(proxyEvents, (e) => e.some((x) => x.details.path === '/v1/echo/after-outage'));
    expect(evs.some((x) => x.details.path === '/v1/echo/during-outage')).toBe(true); // not dropped
    expect((await call('GET', '/v1/audit/verify')).json.ok).toBe(true);
  });

  it('upgrade requests that are refused and reset by their client do not crash the server', async () => {
    const port = Number(new URL(server.url).port);
    for (let i = 0; i < 40; i++) {
      for (const path of ['/', '/proxy/x']) {
        const s = netConnect({ host: '127.0.0.1', port });
        s.on('error', () => {});
        await once(s, 'connect');
        s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
        await new Promise((r) => setTimeout(r, i % 3));
        s.resetAndDestroy();
      }
    }
    await new Promise((r) => setTimeout(r, 50));
    expect((await fetch(`${server.url}/v1/health`)).status).toBe(200);
  });

  it('an upstream answer in an encoding the proxy cannot redact is a 502, and the server lives on', async () => {
    for (const path of ['zstd', 'zstd-204', 'zstd-list', 'zstd', 'zstd-204']) {
      const r = await proxied(`default/openai/v1/${path}`);
      expect(r.status).toBe(502);
      expect(r.headers.get('x-latchkey-error')).toBe('upstream_encoding');
      await r.arrayBuffer();
    }
    await new Promise((r) => setTimeout(r, 100)); // the abandoned upstream bodies error meanwhile
    expect((await fetch(`${server.url}/v1/health`)).status).toBe(200);
    expect((await proxied('default/openai/v1/echo')).status).toBe(200);
  });

  it('an unparseable request is answered by Latchkey (problem+json, X-Latchkey-Error), not by the framework', async () => {
    const port = Number(new URL(server.url).port);
    for (const req of [
      `get /proxy/default/openai/v1/echo HTTP/1.1\r\nHost: x\r\n\r\n`,
      `POST /proxy/default/openai/v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    ]) {
      const s = netConnect({ host: '127.0.0.1', port });
      s.on('error', () => {});
      await once(s, 'connect');
      s.write(req);
      const chunks: Buffer[] = [];
      for await (const c of s) chunks.push(c as Buffer);
      const text = Buffer.concat(chunks).toString();
      expect(text).toMatch(/^HTTP\/1\.1 400 /);
      expect(text).toMatch(/\r\nX-Latchkey-Error: bad_request\r\n/i);
      expect(text).toContain('application/problem+json');
    }
  });

  /** A WebSocket upgrade through the base-URL proxy with the agent token; resolves once the answer's head is in. */
  async function openWs(): Promise<{ s: ReturnType<typeof netConnect>; text: { buf: string } }> {
    const s = netConnect({ host: '127.0.0.1', port: Number(new URL(server.url).port) });
    await once(s, 'connect');
    s.write(`GET /proxy/default/openai/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer ${agentToken}\r\n\r\n`);
    const text = { buf: '' };
    s.setEncoding('latin1');
    s.on('data', (d: string) => (text.buf += d));
    await eventually(async () => text.buf, (b) => b.includes('\r\n\r\n'));
    return { s, text };
  }

  it('WebSocket upgrades pass through after the same checks, with the credential injected', async () => {
    const { s, text } = await openWs();
    let buf = text.buf;
    expect(buf).toMatch(/^HTTP\/1\.1 101/);
    expect(buf.toLowerCase()).toContain('x-content-type-options: nosniff'); // the security headers of every base-URL answer
    expect(buf).not.toContain(REAL);
    expect(buf).toContain('[REDACTED');
    const seen = up.seen.filter((x) => x.url === '/ws').at(-1)!;
    expect(seen.headers.authorization).toBe(`Bearer ${REAL}`);
    text.buf = '';
    s.write('ping-frame');
    await eventually(async () => text.buf, (b) => b.includes('ping-frame'));
    buf = text.buf;
    expect(buf).toBe('ping-frame');
    // revoking the grant cuts the open WebSocket (checked again every second), then a new grant serves again
    const closed = once(s, 'close');
    expect((await call('POST', `/v1/vaults/default/grants/${grantId}/revoke`)).status).toBe(200);
    const t0 = Date.now();
    await closed;
    expect(Date.now() - t0).toBeLessThan(3000);
    const g = await call('POST', '/v1/vaults/default/grants', { body: { agent: 'proxy-bot', service: 'openai', mode: 'use' } });
    expect(g.status).toBe(201);
    grantId = g.json.id;
    // disabling the service cuts an open WebSocket too
    const { s: s3, text: t3text } = await openWs();
    expect(t3text.buf).toMatch(/^HTTP\/1\.1 101/);
    const closed3 = once(s3, 'close');
    const spec = { host: upHost, auth: { type: 'bearer', key: 'OPENAI_KEY' } };
    expect((await call('PUT', '/v1/vaults/default/services/openai', { body: { ...spec, enabled: false } })).status).toBe(200);
    const t3 = Date.now();
    await closed3;
    expect(Date.now() - t3).toBeLessThan(3000);
    expect((await call('PUT', '/v1/vaults/default/services/openai', { body: { ...spec, enabled: true } })).status).toBe(200);
    // refused before any upstream contact without a token
    const s2 = netConnect({ host: '127.0.0.1', port: Number(new URL(server.url).port) });
    await once(s2, 'connect');
    s2.write('GET /proxy/default/openai/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    let b2 = '';
    s2.on('data', (d: Buffer) => (b2 += d.toString()));
    await once(s2, 'close');
    expect(b2).toMatch(/^HTTP\/1\.1 401/);
    expect(b2.toLowerCase()).toContain('x-latchkey-error: token_required');
  });

  it('an upstream that refuses a WebSocket upgrade: the agent gets its answer (redacted), not a proxy error; audited with its status', async () => {
    const refusedUpgrade = async (path: string) => {
      const s = netConnect({ host: '127.0.0.1', port: Number(new URL(server.url).port) });
      await once(s, 'connect');
      s.write(`GET /proxy/default/openai${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer ${agentToken}\r\n\r\n`);
      let buf = '';
      s.setEncoding('latin1');
      s.on('data', (d: string) => (buf += d));
      await once(s, 'close');
      const [head, body] = buf.split('\r\n\r\n');
      expect(buf).not.toContain(REAL);
      return { head: head!, body: body! };
    };
    for (const path of ['/ws-refused', '/ws-refused?enc=gzip']) {
      const { head, body } = await refusedUpgrade(path);
      expect(head, path).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/);
      expect(head.toLowerCase()).not.toContain('x-latchkey-error'); // the upstream's answer, not the proxy's
      expect(head.toLowerCase()).not.toContain('content-encoding'); // decoded to be redacted
      expect(head.toLowerCase()).toContain('connection: close');
      expect(Number(/content-length: (\d+)/i.exec(head)![1])).toBe(Buffer.byteLength(body, 'latin1'));
      expect(JSON.parse(body).error).toMatch(/^key Bearer \[REDACTED\**\] may not open sockets$/);
      expect(head).toContain('[REDACTED');
      expect(up.seen.filter((x) => x.url === path).at(-1)!.headers.authorization).toBe(`Bearer ${REAL}`);
    }
    // an encoding the proxy cannot decode is not passed on unread, nor quoted unredacted
    for (const enc of ['zstd', 'echo']) {
      const unreadable = await refusedUpgrade(`/ws-refused?enc=${enc}`);
      expect(unreadable.head, enc).toMatch(/^HTTP\/1\.1 502 /);
      expect(unreadable.head.toLowerCase()).toContain('x-latchkey-error: upstream_encoding');
    }
    // an answer larger than the proxy holds to redact: a 502 of its own, not "could not be reached"
    const big = await refusedUpgrade('/ws-refused?big=1');
    expect(big.head).toMatch(/^HTTP\/1\.1 502 /);
    expect(big.head.toLowerCase()).toContain('x-latchkey-error: upstream_answer_too_large');
    const ev = await eventually(async () => (await proxyEvents()).find((e) => e.details.path === '/ws-refused'), (e) => !!e);
    expect(ev).toMatchObject({ actor: 'agent:proxy-bot', details: { status: 403, method: 'GET' } });
  });

  it('the official openai SDK works unmodified with its base URL at the proxy and the agent token as its key', async () => {
    const seenBySdk: string[] = [];
    const client = new OpenAI({
      baseURL: `${server.url}/proxy/default/openai/v1`,
      apiKey: agentToken,
      maxRetries: 0,
      // observe every byte the SDK receives
      fetch: async (input: string | URL | Request, init?: RequestInit) => {
        const r = await fetch(input, init);
        const [a, b] = r.body!.tee();
        void new Response(b).text().then((t) => seenBySdk.push(JSON.stringify([...r.headers]), t));
        return new Response(a, { status: r.status, statusText: r.statusText, headers: r.headers });
      },
    });
    const before = up.seen.length;
    const stream = await client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], stream: true });
    let text = '';
    let pieces = 0;
    for await (const chunk of stream) {
      const d = chunk.choices[0]?.delta?.content;
      if (d) {
        text += d;
        pieces++;
      }
    }
    expect(text.startsWith('Hello from upstream; key ')).toBe(true);
    expect(pieces).toBe(4);
    expect(text).not.toContain(REAL);
    expect(text).toContain('[REDACTED');
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['gpt-test']);
    const got = up.seen.slice(before);
    expect(got.map((g) => g.url)).toEqual(['/v1/chat/completions', '/v1/models']);
    for (const g of got) {
      expect(g.headers.authorization).toBe(`Bearer ${REAL}`);
      expect(JSON.stringify(g.headers)).not.toContain(agentToken);
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(seenBySdk.join('\n')).not.toContain(REAL);
    // with the wrong key the SDK gets the proxy's own 401, not the upstream's
    const wrong = new OpenAI({ baseURL: `${server.url}/proxy/default/openai/v1`, apiKey: 'sk-not-a-latchkey-token', maxRetries: 0 });
    await expect(wrong.models.list()).rejects.toMatchObject({ status: 401 });
  });
});
