/**
 * Bench child: the upstream API the proxy benchmarks talk to — a real HTTPS server (node:https,
 * TLS 1.3, keep-alive) on loopback with a certificate from a throw-away ECDSA P-256 CA made here.
 * It answers only requests that carry `Authorization: Bearer <secret>`, so every figure through a
 * proxy is also a check that the credential was injected (and the agent token replaced).
 *
 *   GET /small               a small JSON answer with a Content-Length (the latency/throughput request)
 *   GET /sse?events=n&gap=ms  text/event-stream: headers and the first event at once, then n-1 more, `gap` ms apart
 *   GET /bytes?n=N           N bytes (Content-Length) of incompressible data, written with backpressure
 *
 * IPC: parent sends {type:'init', id, secret}; child answers {id, port, pid, caPem, smallLen} once listening.
 */
import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as never);

const KEY_ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN_ALG = { name: 'ECDSA', hash: 'SHA-256' } as const;

async function makePki(): Promise<{ caPem: string; certPem: string; keyPem: string }> {
  const subtle = webcrypto.subtle;
  const now = Date.now();
  const caKeys = (await subtle.generateKey(KEY_ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01', name: 'CN=Latchkey Bench Upstream CA', notBefore: new Date(now - 3_600_000), notAfter: new Date(now + 86_400_000),
    signingAlgorithm: SIGN_ALG, keys: caKeys,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  const keys = (await subtle.generateKey(KEY_ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: '02', subject: 'CN=bench-upstream', issuer: ca.subject, notBefore: new Date(now - 3_600_000), notAfter: new Date(now + 86_400_000),
    signingAlgorithm: SIGN_ALG, publicKey: keys.publicKey, signingKey: caKeys.privateKey,
    extensions: [
      new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: '127.0.0.1' }, { type: 'dns', value: 'localhost' }]),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    ],
  });
  const pkcs8 = Buffer.from(await subtle.exportKey('pkcs8', keys.privateKey)).toString('base64').replace(/(.{64})/g, '$1\n');
  return { caPem: ca.toString('pem'), certPem: leaf.toString('pem'), keyPem: `-----BEGIN PRIVATE KEY-----\n${pkcs8}\n-----END PRIVATE KEY-----\n` };
}

let expectedAuth = '';
const SMALL = Buffer.from(JSON.stringify({ id: 'cmpl_0123456789abcdef', object: 'bench.small', ok: true, data: 'x'.repeat(96) }));
const BLOCK = randomBytes(64 * 1024);

function send(res: ServerResponse, status: number, body: Buffer | string, type = 'application/json') {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  res.writeHead(status, { 'content-type': type, 'content-length': b.length });
  res.end(b);
}

function handle(req: IncomingMessage, res: ServerResponse) {
  req.resume();
  if (req.headers.authorization !== expectedAuth) return send(res, 401, '{"error":"bad credential"}');
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const params = new URLSearchParams(q === -1 ? '' : url.slice(q + 1));
  if (path === '/small') return send(res, 200, SMALL);
  if (path === '/sse') {
    const events = Math.max(1, Number(params.get('events') ?? 3));
    const gap = Math.max(0, Number(params.get('gap') ?? 10));
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    let n = 0;
    const next = () => {
      if (res.destroyed) return;
      res.write(`data: {"n":${n},"delta":"token ${n}"}\n\n`);
      if (++n >= events) return void res.end();
      setTimeout(next, gap);
    };
    next();
    return;
  }
  if (path === '/bytes') {
    const total = Number(params.get('n') ?? 0);
    if (!Number.isSafeInteger(total) || total < 0) return send(res, 400, '{"error":"n"}');
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
    let left = total;
    const pump = () => {
      while (left > 0) {
        const chunk = left >= BLOCK.length ? BLOCK : BLOCK.subarray(0, left);
        left -= chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    res.on('close', () => {
      left = 0;
    });
    pump();
    return;
  }
  send(res, 404, '{"error":"no route"}');
}

let server: Server | null = null;
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
process.on('message', async (m: any) => {
  if (m?.type !== 'init') return;
  try {
    expectedAuth = `Bearer ${m.secret}`;
    const pki = await makePki();
    server = createServer({ key: pki.keyPem, cert: pki.certPem, keepAliveTimeout: 120_000, requestTimeout: 0 }, handle);
    server.on('tlsClientError', () => {});
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen(0, '127.0.0.1', () => resolve());
    });
    const port = (server.address() as AddressInfo).port;
    process.send?.({ id: m.id, port, pid: process.pid, caPem: pki.caPem, smallLen: SMALL.length });
  } catch (err) {
    process.send?.({ id: m.id, error: String((err as Error)?.stack ?? err) });
  }
});
