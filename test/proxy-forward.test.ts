/**
 * The forward proxy end to end on loopback: a real TLS upstream with its own test CA (trusted by
 * the server through LATCHKEY_UPSTREAM_CA, loopback allowed through LATCHKEY_EGRESS_ALLOW), real
 * clients (system curl, undici's ProxyAgent, raw CONNECT sockets, `latchkey run` as a child
 * process). Needs the build for the CLI part (`npm test` builds).
 */
import { once } from 'node:events';
import 'reflect-metadata';
import { spawn } from 'node:child_process';
import { webcrypto, X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpAgent, createServer as createHttpServer, request as httpRequest, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import * as x509 from '@peculiar/x509';
import { fetch as undiciFetch, ProxyAgent } from 'undici';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../src/server/start.js';
import { describeBackends } from './helpers/backends.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const BIN = join(ROOT, 'bin', 'latchkey.js');
const MASTER = 'f0'.repeat(32);
const SECRET = 'sk_live_upstream_value_4b9d2e71c0';

x509.cryptoProvider.set(webcrypto as never);

// ---------------------------------------------------------------- a test CA and an upstream leaf

async function makeUpstreamPki(): Promise<{ caPem: string; certPem: string; keyPem: string }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256' } as const;
  const sig = { name: 'ECDSA', hash: 'SHA-256' } as const;
  const caKeys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01', name: 'CN=Upstream Test CA', notBefore: new Date(now - 3600_000), notAfter: new Date(now + 86_400_000), signingAlgorithm: sig, keys: caKeys,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: '02', subject: 'CN=upstream', issuer: ca.subject, notBefore: new Date(now - 3600_000), notAfter: new Date(now + 86_400_000),
    signingAlgorithm: sig, publicKey: keys.publicKey, signingKey: caKeys.privateKey,
    extensions: [
      new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: '127.0.0.1' }, { type: 'dns', value: 'localhost' }]),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  return { caPem: ca.toString('pem'), certPem: leaf.toString('pem'), keyPem: `-----BEGIN PRIVATE KEY-----\n${pkcs8}\n-----END PRIVATE KEY-----\n` };
}

// ---------------------------------------------------------------- small clients

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createNetServer();
    s.unref();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => res(port));
    });
  });
}

const basic = (token: string, vault: string) => `Basic ${Buffer.from(`${token}:${vault}`).toString('base64')}`;

interface RawReply { status: number; headers: Record<string, string>; body: string; socket: Socket }

/** Sends CONNECT and reads the proxy's answer; on 200 the socket is the open tunnel. */
function rawConnect(proxyPort: number, target: string, auth?: string): Promise<RawReply> {
  return new Promise((resolveReply, reject) => {
    const socket = netConnect(proxyPort, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let head: { status: number; headers: Record<string, string>; rest: Buffer } | null = null;
    const finish = () => {
      socket.removeAllListeners('data');
      resolveReply({ status: head!.status, headers: head!.headers, body: head!.rest.toString('utf8'), socket });
    };
    socket.on('error', reject);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!head) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) {
          const i = l.indexOf(':');
          headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
        }
        head = { status: Number(lines[0]!.split(' ')[1]), headers, rest: buf.subarray(end + 4) };
        if (head.status === 200) return finish();
      } else head.rest = Buffer.concat([head.rest, d]);
      const want = Number(head.headers['content-length'] ?? 0);
      if (head.rest.length >= want) finish();
    });
    socket.on('end', () => { if (head) finish(); });
    socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth ? `Proxy-Authorization: ${auth}\r\n` : ''}\r\n`);
  });
}

/** TLS over an open tunnel, verified against `ca` for `host`. */
function tlsOver(socket: Socket, host: string, ca: string): Promise<TLSSocket> {
  return new Promise((res, rej) => {
    const t = tlsConnect({ socket, ca, host, ...(/^\d/.test(host) ? {} : { servername: host }), ALPNProtocols: ['http/1.1'] }, () => res(t));
    t.once('error', rej);
  });
}

/** An http.Agent whose only connection is the given (tunnel) socket: sequential requests reuse it. */
class OneSocketAgent extends HttpAgent {
  created = 0;
  constructor(private readonly sock: Duplex) {
    super({ keepAlive: true, maxSockets: 1 });
    (this as unknown as { createConnection: () => Duplex }).createConnection = () => {
      this.created++;
      return this.sock;
    };
  }
}

function get(agent: HttpAgent, port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((res, rej) => {
    const req = httpRequest({ agent, host: '127.0.0.1', port, path, headers }, (r) => {
      let body = '';
      r.setEncoding('utf8').on('data', (d) => (body += d));
      r.on('end', () => res({ status: r.statusCode!, headers: r.headers, body }));
    });
    req.on('error', rej);
    req.end();
  });
}

function runProc(cmd: string, args: string[], env: NodeJS.ProcessEnv, opts: { onStdout?: (s: string, child: ReturnType<typeof spawn>) => void } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      opts.onStdout?.(stdout, child);
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', rej);
    child.on('close', (code) => res({ code, stdout, stderr }));
  });
}

// ---------------------------------------------------------------- the tests

interface Seen { path: string; host: string | undefined; headers: IncomingHttpHeaders }

describeBackends('forward proxy', (ctx) => {
  let server: RunningServer;
  let upstream: HttpsServer;
  let plainUpstream: HttpServer;
  let decoy: HttpsServer;
  let uport: number;
  let plainPort: number;
  let decoyPort: number;
  let pport: number;
  let owner: string;
  let agentToken: string;
  let latchkeyCa: string;
  let pki: { caPem: string; certPem: string; keyPem: string };
  let dir: string;
  let caFile: string;
  let grantId: string;
  const seen: Seen[] = [];
  const decoySeen: Seen[] = [];

  async function api(method: string, path: string, body?: unknown, token = owner) {
    const r = await fetch(server.url + path, {
      method, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, json: text ? JSON.parse(text) : null };
  }

  beforeAll(async () => {
    pki = await makeUpstreamPki();
    dir = mkdtempSync(join(tmpdir(), 'lk-fwd-'));
    const upstreamCaFile = join(dir, 'upstream-ca.pem');
    writeFileSync(upstreamCaFile, pki.caPem);

    const record = (list: Seen[]) => (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
      list.push({ path: req.url ?? '', host: req.headers.host, headers: req.headers });
      req.resume();
      req.on('end', () => {
        if (req.url === '/echo-auth') res.end(`you sent ${req.headers.authorization ?? 'nothing'}`);
        else res.end(`hello from upstream ${req.url}`);
      });
    };
    upstream = createHttpsServer({ key: pki.keyPem, cert: pki.certPem }, record(seen));
    upstream.on('upgrade', (req, socket: Duplex) => {
      seen.push({ path: req.url ?? '', host: req.headers.host, headers: req.headers });
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      socket.pipe(socket);
    });
    decoy = createHttpsServer({ key: pki.keyPem, cert: pki.certPem }, record(decoySeen));
    plainUpstream = createHttpServer(record(seen));
    for (const s of [upstream, decoy, plainUpstream]) await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    uport = (upstream.address() as AddressInfo).port;
    decoyPort = (decoy.address() as AddressInfo).port;
    plainPort = (plainUpstream.address() as AddressInfo).port;

    for (let attempt = 0; ; attempt++) {
      pport = await freePort();
      try {
        server = await startServer({
          home: ctx.home, databaseUrl: ctx.databaseUrl, host: '127.0.0.1', port: 0, proxyPort: pport, logLevel: 'silent',
          env: { LATCHKEY_MASTER_KEY: MASTER, LATCHKEY_EGRESS_ALLOW: '127.0.0.1/32', LATCHKEY_UPSTREAM_CA: upstreamCaFile },
        });
        break;
      } catch (err) {
        if ((err as { code?: string }).code !== 'EADDRINUSE' || attempt > 5) throw err;
      }
    }
    expect(server.proxyUrl).toBe(`http://127.0.0.1:${pport}`);
    owner = server.initialized!.ownerToken;

    expect((await api('PUT', '/v1/vaults/default/secrets/UPSTREAM_KEY', { value: SECRET })).status).toBe(201);
    expect((await api('POST', '/v1/vaults/default/services', { name: 'upstream', host: '127.0.0.1', auth: { type: 'bearer', key: 'UPSTREAM_KEY' } })).status).toBe(201);
    const a = await api('POST', '/v1/agents', { name: 'fwd-bot', vaults: ['default'] });
    expect(a.status).toBe(201);
    agentToken = a.json.token;
    const g = await api('POST', '/v1/vaults/default/grants', { agent: 'fwd-bot', service: 'upstream', mode: 'use' });
    expect(g.json).toMatchObject({ status: 'approved' });
    grantId = g.json.id;
    // a vault that lets unmatched hosts through as blind tunnels
    expect((await api('POST', '/v1/vaults', { name: 'open', passthrough: true })).status).toBe(201);
    expect((await api('POST', '/v1/vaults/open/agents', { name: 'fwd-bot' })).status).toBe(201);

    latchkeyCa = await (await fetch(`${server.url}/v1/ca.pem`)).text();
    caFile = join(dir, 'latchkey-ca.pem');
    writeFileSync(caFile, latchkeyCa);
  });

  afterAll(async () => {
    await server?.close();
    for (const s of [upstream, decoy, plainUpstream]) s?.closeAllConnections?.();
    await Promise.all([upstream, decoy, plainUpstream].map((s) => s && new Promise((r) => s.close(() => r(null)))));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const lastSeen = () => seen[seen.length - 1]!;
  const noAgentToken = (s: Seen) => {
    for (const [k, v] of Object.entries(s.headers)) {
      expect(k).not.toBe('proxy-authorization');
      expect(String(v)).not.toContain(agentToken);
    }
  };

  it('curl through HTTPS_PROXY with the Latchkey CA: the upstream gets the credential, never the agent token', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, HTTPS_PROXY: `http://${agentToken}:default@127.0.0.1:${pport}`, https_proxy: `http://${agentToken}:default@127.0.0.1:${pport}` };
    delete env.NO_PROXY;
    delete env.no_proxy;
    // (async: the proxy runs in this process)
    const r = await runProc('curl', ['-sS', '--cacert', caFile, '-H', 'Authorization: Bearer client-sent-this', '-w', '\n%{http_code}', `https://127.0.0.1:${uport}/v1/hello?x=1`], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`hello from upstream /v1/hello?x=1\n200`);
    const s = lastSeen();
    expect(s.path).toBe('/v1/hello?x=1');
    expect(s.headers.authorization).toBe(`Bearer ${SECRET}`); // injected, replacing the client's own
    noAgentToken(s);
    // curl verified the leaf against the Latchkey CA: the upstream's own CA was not involved
    const bad = await runProc('curl', ['-sS', '--cacert', join(dir, 'upstream-ca.pem'), `https://127.0.0.1:${uport}/x`], env);
    expect(bad.code).toBe(60); // peer certificate cannot be authenticated with the given CA
  });

  it('Node fetch through undici ProxyAgent (Basic user:vault, and Bearer); an echoed credential is redacted', async () => {
    const viaBasic = new ProxyAgent({ uri: `http://${agentToken}:default@127.0.0.1:${pport}`, requestTls: { ca: latchkeyCa } });
    const r = await undiciFetch(`https://127.0.0.1:${uport}/from-undici`, { dispatcher: viaBasic });
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('hello from upstream /from-undici');
    expect(lastSeen().headers.authorization).toBe(`Bearer ${SECRET}`);
    noAgentToken(lastSeen());
    const echoed = await undiciFetch(`https://127.0.0.1:${uport}/echo-auth`, { dispatcher: viaBasic });
    const text = await echoed.text();
    expect(text).not.toContain(SECRET);
    expect(text).toMatch(/^you sent Bearer /);
    await viaBasic.close();

    const viaBearer = new ProxyAgent({ uri: `http://127.0.0.1:${pport}`, token: `Bearer ${agentToken}`, requestTls: { ca: latchkeyCa } });
    const r2 = await undiciFetch(`https://127.0.0.1:${uport}/bearer`, { dispatcher: viaBearer });
    expect(await r2.text()).toBe('hello from upstream /bearer');
    await viaBearer.close();
  });

  it('plain http://: absolute-form requests (curl) and plain HTTP inside CONNECT (undici) go through the pipeline too', async () => {
    // curl sends absolute-form GET http://... to an HTTP proxy
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.NO_PROXY;
    delete env.no_proxy;
    const c = await runProc('curl', ['-sS', '-m', '10', '-x', `http://${agentToken}:default@127.0.0.1:${pport}`, '-H', `Host: 127.0.0.1:${decoyPort}`, `http://127.0.0.1:${plainPort}/curl-plain`], env);
    expect(c.stderr).toBe('');
    expect(c.stdout).toBe('hello from upstream /curl-plain');
    expect(lastSeen().headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(lastSeen().host).toBe(`127.0.0.1:${plainPort}`);
    noAgentToken(lastSeen());

    // undici tunnels http:// URLs through CONNECT as well: the proxy sees no TLS handshake and reads plain HTTP
    const viaProxy = new ProxyAgent({ uri: `http://${agentToken}:default@127.0.0.1:${pport}` });
    const r = await undiciFetch(`http://127.0.0.1:${plainPort}/plain?q=2`, { dispatcher: viaProxy });
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('hello from upstream /plain?q=2');
    expect(lastSeen().headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(lastSeen().host).toBe(`127.0.0.1:${plainPort}`);
    noAgentToken(lastSeen());
    await viaProxy.close();
    // without proxy credentials: 407
    const bare = await new Promise<{ status: number; headers: IncomingHttpHeaders }>((res, rej) => {
      const req = httpRequest({ host: '127.0.0.1', port: pport, path: `http://127.0.0.1:${plainPort}/x`, headers: { host: `127.0.0.1:${plainPort}` } }, (resp) => {
        resp.resume();
        res({ status: resp.statusCode!, headers: resp.headers });
      });
      req.on('error', rej);
      req.end();
    });
    expect(bare.status).toBe(407);
    expect(bare.headers['proxy-authenticate']).toMatch(/^Basic/);
    expect(bare.headers['x-latchkey-error']).toBeTruthy();
  });

  it('missing or bad proxy credentials: 407 with Proxy-Authenticate and X-Latchkey-Error', async () => {
    const none = await rawConnect(pport, `127.0.0.1:${uport}`);
    expect(none.status).toBe(407);
    expect(none.headers['proxy-authenticate']).toMatch(/^Basic/);
    expect(none.headers['x-latchkey-error']).toBe('proxy_auth_required');
    const forged = await rawConnect(pport, `127.0.0.1:${uport}`, basic(`lk_agent_${'A'.repeat(43)}`, 'default'));
    expect(forged.status).toBe(407);
    expect(forged.headers['proxy-authenticate']).toMatch(/^Basic/);
    expect(forged.headers['x-latchkey-error']).toBeTruthy();
    expect(forged.body).not.toContain('A'.repeat(43));
    const junk = await rawConnect(pport, `127.0.0.1:${uport}`, 'Basic !!!');
    expect(junk.status).toBe(407);
    for (const r of [none, forged, junk]) r.socket.destroy();
  });

  it('a refused CONNECT closes the connection once answered, even when the client keeps its side open', async () => {
    // a client that keeps its half of the connection open after the answer (allowHalfOpen): the
    // proxy must not keep its socket for it. Once the proxy has destroyed its socket, what the
    // client still sends is answered with a reset (EPIPE / ECONNRESET); a socket only ended would
    // take it in silently
    const socket = netConnect({ port: pport, host: '127.0.0.1', allowHalfOpen: true });
    let got = '';
    const ended = new Promise<void>((res) => socket.on('end', res));
    const failed = new Promise<string>((res) => {
      socket.on('error', (err: NodeJS.ErrnoException) => res(err.code ?? 'error'));
      socket.on('close', () => res('closed'));
    });
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.write(`CONNECT 127.0.0.1:${uport} HTTP/1.1\r\nHost: 127.0.0.1:${uport}\r\n\r\n`);
    await ended;
    expect(got).toMatch(/^HTTP\/1\.1 407 /);
    expect(got).toContain('"code":"proxy_auth_required"');
    const writer = setInterval(() => { if (socket.writable) socket.write('still here\r\n'); }, 20);
    const outcome = await Promise.race([failed, new Promise<string>((res) => setTimeout(() => res('kept open'), 3000))]);
    clearInterval(writer);
    socket.destroy();
    expect(['EPIPE', 'ECONNRESET', 'closed']).toContain(outcome);
  });

  it('a host no service matches: 403 with a hint how to propose one', async () => {
    const r = await rawConnect(pport, 'unmatched.example.com:443', basic(agentToken, 'default'));
    expect(r.status).toBe(403);
    expect(r.headers['x-latchkey-error']).toBe('no_service');
    const body = JSON.parse(r.body);
    expect(body.hint).toContain('/v1/vaults/default/proposals');
    r.socket.destroy();
    // a vault the agent is not in
    const other = await rawConnect(pport, `127.0.0.1:${uport}`, basic(agentToken, 'nope'));
    expect([403, 404]).toContain(other.status);
    expect(other.headers['x-latchkey-error']).toBeTruthy();
    other.socket.destroy();
  });

  it('a passthrough vault tunnels unmatched hosts without interception (the client trusts the upstream CA)', async () => {
    const viaOpen = new ProxyAgent({ uri: `http://${agentToken}:open@127.0.0.1:${pport}`, requestTls: { ca: pki.caPem } });
    const n = seen.length;
    const r = await undiciFetch(`https://127.0.0.1:${uport}/blind`, { dispatcher: viaOpen, headers: { authorization: 'Bearer mine' } });
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('hello from upstream /blind');
    expect(seen.length).toBe(n + 1);
    expect(lastSeen().headers.authorization).toBe('Bearer mine'); // nothing injected, nothing touched
    await viaOpen.close();

    // the certificate the client saw is the upstream's own
    const t = await rawConnect(pport, `127.0.0.1:${uport}`, basic(agentToken, 'open'));
    expect(t.status).toBe(200);
    const tls = await tlsOver(t.socket, '127.0.0.1', pki.caPem);
    expect(new X509Certificate(tls.getPeerX509Certificate()!.raw).issuer).toContain('Upstream Test CA');
    tls.destroy();

    // the egress guard still applies to blind tunnels
    const meta = await rawConnect(pport, '169.254.169.254:80', basic(agentToken, 'open'));
    expect(meta.status).toBe(403);
    expect(meta.headers['x-latchkey-error']).toBe('egress_denied');
    meta.socket.destroy();

    // an open blind tunnel is cut once passthrough is turned off (checked again every second)
    const live = await rawConnect(pport, `127.0.0.1:${uport}`, basic(agentToken, 'open'));
    expect(live.status).toBe(200);
    const closed = once(live.socket, 'close');
    expect((await api('PATCH', '/v1/vaults/open', { passthrough: false })).status).toBe(200);
    const t0 = Date.now();
    await closed;
    expect(Date.now() - t0).toBeLessThan(3000);
    expect((await api('PATCH', '/v1/vaults/open', { passthrough: true })).status).toBe(200);
  });

  it('plain HTTP inside a CONNECT to port 443 is refused: the credential never goes out in cleartext', async () => {
    const n = seen.length;
    const t = await rawConnect(pport, '127.0.0.1:443', basic(agentToken, 'default'));
    expect(t.status).toBe(200);
    t.socket.write('GET /cleartext HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const chunks: Buffer[] = [];
    for await (const c of t.socket) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString();
    expect(text).toMatch(/^HTTP\/1\.1 400 /);
    expect(text.toLowerCase()).toContain('x-latchkey-error: tls_required');
    expect(seen.length).toBe(n);
  });

  it('the inner Host header does not change the upstream: the CONNECT target is the destination', async () => {
    const t = await rawConnect(pport, `127.0.0.1:${uport}`, basic(agentToken, 'default'));
    expect(t.status).toBe(200);
    const tls = await tlsOver(t.socket, '127.0.0.1', latchkeyCa);
    const agent = new OneSocketAgent(tls);
    const nDecoy = decoySeen.length;
    const r = await get(agent, uport, '/host-test', { host: `127.0.0.1:${decoyPort}` });
    expect(r.status).toBe(200);
    expect(r.body).toBe('hello from upstream /host-test');
    expect(lastSeen().host).toBe(`127.0.0.1:${uport}`);
    expect(lastSeen().headers.authorization).toBe(`Bearer ${SECRET}`);
    const r2 = await get(agent, uport, '/host-test-2', { host: 'evil.example.com' });
    expect(r2.body).toBe('hello from upstream /host-test-2');
    expect(lastSeen().host).toBe(`127.0.0.1:${uport}`);
    expect(decoySeen.length).toBe(nDecoy);
    expect(agent.created).toBe(1);
    agent.destroy();
    tls.destroy();
  });

  it('the leaf for a host is made once and cached: a second CONNECT reuses it', async () => {
    // a wildcard service, so every test run has a host no leaf was made for yet
    expect((await api('POST', '/v1/vaults/default/services', { name: 'wild', host: '*.lk-test.dev', auth: { type: 'bearer', key: 'UPSTREAM_KEY' } })).status).toBe(201);
    expect((await api('POST', '/v1/vaults/default/grants', { agent: 'fwd-bot', service: 'wild', mode: 'use' })).json.status).toBe('approved');
    const host = `h${Date.now().toString(36)}.lk-test.dev`;
    const handshake = async () => {
      const t0 = performance.now();
      const c = await rawConnect(pport, `${host}:443`, basic(agentToken, 'default'));
      expect(c.status).toBe(200);
      const tls = await tlsOver(c.socket, host, latchkeyCa); // verifies the leaf for this host name (SNI)
      const ms = performance.now() - t0;
      const fp = tls.getPeerX509Certificate()!.fingerprint256;
      tls.destroy();
      return { fp, ms };
    };
    const gen = server.ca.stats.generated;
    const first = await handshake();
    expect(server.ca.stats.generated).toBe(gen + 1);
    const second = await handshake();
    const third = await handshake();
    expect(server.ca.stats.generated).toBe(gen + 1);
    expect(second.fp).toBe(first.fp);
    expect(third.fp).toBe(first.fp);
    console.log(`[forward] ${ctx.backend}: CONNECT+TLS with a new leaf ${first.ms.toFixed(1)} ms, cached ${second.ms.toFixed(1)} / ${third.ms.toFixed(1)} ms`);
  });

  it('revoking the grant cuts an open keep-alive tunnel at its next request', async () => {
    const t = await rawConnect(pport, `127.0.0.1:${uport}`, basic(agentToken, 'default'));
    expect(t.status).toBe(200);
    const tls = await tlsOver(t.socket, '127.0.0.1', latchkeyCa);
    const agent = new OneSocketAgent(tls);
    const ok = await get(agent, uport, '/before-revoke');
    expect(ok.status).toBe(200);
    expect((await api('POST', `/v1/vaults/default/grants/${grantId}/revoke`)).status).toBe(200);
    const n = seen.length;
    const after = await get(agent, uport, '/after-revoke');
    expect(after.status).toBe(403);
    expect(after.headers['x-latchkey-error']).toBeTruthy();
    expect(seen.length).toBe(n); // never reached the upstream
    expect(agent.created).toBe(1); // the same connection
    agent.destroy();
    tls.destroy();
    // a new tunnel is refused at CONNECT now
    const again = await rawConnect(pport, `127.0.0.1:${uport}`, basic(agentToken, 'default'));
    expect(again.status).toBe(403);
    again.socket.destroy();
    // re-grant for the tests that follow
    const g = await api('POST', '/v1/vaults/default/grants', { agent: 'fwd-bot', service: 'upstream', mode: 'use' });
    expect(g.json.status).toBe('approved');
    grantId = g.json.id;
  });

  it('a WebSocket upgrade inside the tunnel reaches the upstream with the credential injected', async () => {
    const t = await rawConnect(pport, `127.0.0.1:${uport}`, basic(agentToken, 'default'));
    expect(t.status).toBe(200);
    const tls = await tlsOver(t.socket, '127.0.0.1', latchkeyCa);
    const got = await new Promise<string>((res, rej) => {
      let buf = '';
      let sent = false;
      tls.setEncoding('utf8');
      tls.on('data', (d: string) => {
        buf += d;
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        if (!buf.startsWith('HTTP/1.1 101')) return res(buf);
        if (!sent) {
          sent = true;
          tls.write('ping');
        }
        if (buf.slice(end + 4) === 'ping') res(buf);
      });
      tls.on('error', rej);
      tls.write(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${uport}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
    });
    expect(got.startsWith('HTTP/1.1 101')).toBe(true);
    expect(got.endsWith('ping')).toBe(true);
    expect(lastSeen().path).toBe('/ws');
    expect(lastSeen().headers.authorization).toBe(`Bearer ${SECRET}`);
    noAgentToken(lastSeen());
    tls.destroy();
  });

  it('`latchkey ca fetch` prints or writes the CA; `latchkey run` hands the child a session proxy and the CA, never a credential', async () => {
    const home = join(dir, 'cli-home');
    const base: NodeJS.ProcessEnv = { ...process.env };
    for (const k of Object.keys(base)) if (k.startsWith('LATCHKEY_') || /^(https?_proxy|no_proxy|node_extra_ca_certs|ssl_cert_file)$/i.test(k)) delete base[k];
    const env = { ...base, LATCHKEY_HOME: home, LATCHKEY_ADDR: server.url, LATCHKEY_TOKEN: agentToken };

    const printed = await runProc(process.execPath, [BIN, 'ca', 'fetch'], env);
    expect(printed.code).toBe(0);
    expect(printed.stdout).toBe(latchkeyCa);
    const out = join(dir, 'fetched.pem');
    const written = await runProc(process.execPath, [BIN, 'ca', 'fetch', '-o', out], env);
    expect(written.code).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe(latchkeyCa);

    const dump = join(dir, 'child-env.json');
    const script = [
      "const { ProxyAgent, fetch } = require('undici');",
      "const fs = require('fs');",
      `fs.writeFileSync(${JSON.stringify(dump)}, JSON.stringify(process.env));`,
      '(async () => {',
      `  const r = await fetch('https://127.0.0.1:${uport}/from-run', { dispatcher: new ProxyAgent(process.env.HTTPS_PROXY) });`,
      "  console.log('status', r.status, await r.text());",
      '  process.exit(7);',
      '})().catch((e) => { console.error(e); process.exit(99); });',
    ].join('\n');
    const r = await runProc(process.execPath, [BIN, 'run', '--', process.execPath, '-e', script], env);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('status 200 hello from upstream /from-run\n');
    expect(r.code).toBe(7);
    expect(lastSeen().headers.authorization).toBe(`Bearer ${SECRET}`);
    noAgentToken(lastSeen());

    // Node's own global fetch goes through the proxy too (Node < 24 ignores HTTPS_PROXY: run's preload);
    // the upstream here is on 127.0.0.1, which NO_PROXY exempts, so this child clears NO_PROXY first
    const plainFetch = [
      "process.env.NO_PROXY = ''; process.env.no_proxy = '';",
      `fetch('https://127.0.0.1:${uport}/global-fetch').then((r) => r.text()).then((t) => { console.log(t); process.exit(0); }, (e) => { console.error(e.cause?.code ?? e.message); process.exit(98); });`,
    ].join('\n');
    const g = await runProc(process.execPath, [BIN, 'run', '--', process.execPath, '-e', plainFetch], env);
    expect(g.stderr).toBe('');
    expect(g.stdout).toBe('hello from upstream /global-fetch\n');
    expect(lastSeen().headers.authorization).toBe(`Bearer ${SECRET}`);

    const childEnv = JSON.parse(readFileSync(dump, 'utf8')) as Record<string, string>;
    const all = JSON.stringify(childEnv);
    expect(all).not.toContain(SECRET);
    expect(all).not.toContain(agentToken);
    expect(all).not.toContain(MASTER);
    expect(childEnv.LATCHKEY_TOKEN).toBeUndefined();
    for (const k of ['HTTPS_PROXY', 'HTTP_PROXY', 'https_proxy', 'http_proxy']) expect(childEnv[k]).toMatch(new RegExp(`^http://lk_sess_[A-Za-z0-9_-]{43}:default@127\\.0\\.0\\.1:${pport}$`));
    expect(childEnv.NO_PROXY).toBe('localhost,127.0.0.1');
    expect(childEnv.no_proxy).toBe('localhost,127.0.0.1');
    for (const k of ['NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO']) expect(childEnv[k]).toBeTruthy();
    // the other tools' bundle variables point at the same bundle (system roots + Latchkey's CA)
    for (const k of ['PIP_CERT', 'AWS_CA_BUNDLE', 'HTTPLIB2_CA_CERTS', 'NIX_SSL_CERT_FILE', 'CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE', 'GRPC_DEFAULT_SSL_ROOTS_FILE_PATH']) expect(childEnv[k]).toBe(childEnv.SSL_CERT_FILE);
    expect(childEnv.NODE_OPTIONS).toContain('fetch-proxy-preload.cjs');
    // the CA files lived only as long as the child
    expect(() => readFileSync(childEnv.NODE_EXTRA_CA_CERTS!)).toThrow();

    // the session was scoped to its vault, and it ended with the command: a leaked copy is worthless
    const sess = childEnv.HTTPS_PROXY!.slice('http://'.length).split(':')[0]!;
    expect((await api('GET', '/v1/auth/me', undefined, sess)).status).toBe(401);
    const own = await api('POST', '/v1/sessions', { vault: 'default', ttl: 600 }, agentToken);
    expect(own.status).toBe(201);
    expect((await api('GET', '/v1/auth/me', undefined, own.json.token)).json).toMatchObject({ kind: 'agent', name: 'fwd-bot', session_vault: 'default' });
    // an agent may end a session it holds, not its own agent token
    expect((await api('POST', '/v1/auth/logout', undefined, own.json.token)).json).toEqual({ revoked: true });
    expect((await api('GET', '/v1/auth/me', undefined, own.json.token)).status).toBe(401);
    // (an agent token is not a session: logout is people's, so it is refused, 403, audited — see test/authz-matrix.test.ts)
    expect((await api('POST', '/v1/auth/logout', undefined, agentToken)).status).toBe(403);
    expect((await api('GET', '/v1/auth/me', undefined, agentToken)).status).toBe(200);

    // a signal ends the child: 128 + n
    const sig = await runProc(process.execPath, [BIN, 'run', '--', process.execPath, '-e', "process.kill(process.pid, 'SIGTERM')"], env);
    expect(sig.code).toBe(143);
    // signals sent to `latchkey run` are forwarded to the child
    const fwd = await runProc(process.execPath, [BIN, 'run', '--', process.execPath, '-e',
      "process.on('SIGTERM', () => { console.log('child got SIGTERM'); process.exit(42); }); setInterval(() => {}, 1000); console.log('ready');"], env,
    { onStdout: (s, child) => { if (s === 'ready\n') child.kill('SIGTERM'); } });
    expect(fwd.stdout).toBe('ready\nchild got SIGTERM\n');
    expect(fwd.code).toBe(42);
    // a person's token must name the agent
    const person = await runProc(process.execPath, [BIN, 'run', '--', 'true'], { ...env, LATCHKEY_TOKEN: owner });
    expect(person.code).toBe(2);
    expect(person.stderr).toContain('--agent');
    const asAgent = await runProc(process.execPath, [BIN, 'run', '--agent', 'fwd-bot', '--', process.execPath, '-e', 'process.exit(process.env.HTTPS_PROXY.includes("lk_sess_") ? 0 : 5)'], { ...env, LATCHKEY_TOKEN: owner });
    expect(asAgent.code).toBe(0);
    // a missing command: 127
    const missing = await runProc(process.execPath, [BIN, 'run', '--', 'no-such-command-lk'], env);
    expect(missing.code).toBe(127);

    // the child's own `latchkey` does not fall back to the token saved for this user's CLI (after
    // init, the owner's): it has no token at all
    mkdirSync(home, { recursive: true, mode: 0o700 });
    writeFileSync(join(home, 'config.json'), JSON.stringify({ addr: server.url, token: owner }), { mode: 0o600 });
    expect((await runProc(process.execPath, [BIN, 'whoami'], { ...env, LATCHKEY_TOKEN: '' })).stdout).toContain('owner');
    const inner = await runProc(process.execPath, [BIN, 'run', '--', process.execPath, BIN, 'whoami'], env);
    expect(inner.code).toBe(4);
    expect(inner.stdout).not.toContain('owner');

    // a set-up that fails after the session was minted still ends it (newest events first)
    const failed = await runProc(process.execPath, [BIN, 'run', '--proxy', 'ftp://x:1', '--', 'true'], env);
    expect(failed.code).toBe(2);
    const [revoked, created] = (await api('GET', '/v1/audit?action=token.&limit=2', undefined, owner)).json.items as Array<{ action: string; target: string; details: { token?: string; kind?: string } }>;
    expect(created).toMatchObject({ action: 'token.create', details: { kind: 'session' } });
    expect(revoked).toMatchObject({ action: 'token.revoke', target: `token:${created!.details.token}` });
  });
});
