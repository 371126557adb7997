/**
 * The egress guard: address classes (private, loopback, link-local, CGN, metadata, unspecified,
 * multicast, IPv4 embedded in IPv6), the allow list (CIDRs and names; metadata stays blocked),
 * any-address refusal for names, and the connector dialing exactly the checked address. Then
 * through the real server: services aimed at 10.0.0.1, 169.254.169.254 and 127.0.0.1 without an
 * allow list are refused with 403 `egress_denied`, audited; and the pipeline's forward-mode
 * targets (used by the forward proxy) on the same checks.
 */
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, get as httpGet, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classifyAddress, EgressDeniedError, EgressGuard, parseCidr, parseEgressAllow, parseIp, inCidr, type ResolvedAddress, type Resolver } from '../src/proxy/egress.js';
import { ProxyError, ProxyPipeline, type ProxyTarget } from '../src/proxy/pipeline.js';
import { startServer, type RunningServer } from '../src/server/start.js';
import { describeBackends } from './helpers/backends.js';
import { createTestCa } from './helpers/test-ca.js';

const MASTER = '5c'.repeat(32);
const KEY = 'egress-test-credential-0001';

describe('address classes', () => {
  const cases: Array<[string, 'public' | 'blocked' | 'metadata']> = [
    ['8.8.8.8', 'public'], ['1.1.1.1', 'public'], ['2606:4700:4700::1111', 'public'], ['172.32.0.1', 'public'], ['100.128.0.1', 'public'],
    ['10.0.0.1', 'blocked'], ['172.16.5.5', 'blocked'], ['192.168.1.1', 'blocked'], ['127.0.0.1', 'blocked'], ['127.255.0.9', 'blocked'],
    ['0.0.0.0', 'blocked'], ['169.254.1.1', 'blocked'], ['100.64.0.1', 'blocked'], ['100.127.255.255', 'blocked'], ['224.0.0.1', 'blocked'],
    ['239.255.255.250', 'blocked'], ['255.255.255.255', 'blocked'], ['198.18.0.1', 'blocked'], ['192.0.2.1', 'blocked'],
    ['::', 'blocked'], ['::1', 'blocked'], ['fe80::1', 'blocked'], ['fc00::1', 'blocked'], ['fd12:3456::1', 'blocked'], ['ff02::1', 'blocked'],
    ['::ffff:10.0.0.1', 'blocked'], ['::ffff:127.0.0.1', 'blocked'], ['::ffff:8.8.8.8', 'public'], ['64:ff9b::10.1.2.3', 'blocked'],
    ['2002:0a00:0001::1', 'blocked'], ['2002:0808:0808::1', 'public'], ['fe80::1%eth0', 'blocked'],
    ['169.254.169.254', 'metadata'], ['169.254.170.2', 'metadata'], ['100.100.100.200', 'metadata'], ['fd00:ec2::254', 'metadata'],
    ['168.63.129.16', 'metadata'], // Azure WireServer: a public address, the host's own agent endpoint
    ['::ffff:169.254.169.254', 'metadata'], ['::ffff:a9fe:a9fe', 'metadata'], ['64:ff9b::169.254.169.254', 'metadata'],
  ];
  it.each(cases)('%s is %s', (ip, cls) => {
    const b = parseIp(ip);
    expect(b).not.toBeNull();
    expect(classifyAddress(b!).cls).toBe(cls);
  });

  it('parses CIDRs and the allow list, naming a bad entry', () => {
    expect(inCidr(parseIp('10.1.2.3')!, parseCidr('10.0.0.0/8')!)).toBe(true);
    expect(inCidr(parseIp('11.1.2.3')!, parseCidr('10.0.0.0/8')!)).toBe(false);
    expect(inCidr(parseIp('fd00::5')!, parseCidr('fd00::/8')!)).toBe(true);
    expect(parseCidr('10.0.0.0/33')).toBeNull();
    const p = parseEgressAllow(' 127.0.0.1/32, fd00::/8 ,internal.example.com, *.corp.example ,');
    expect(p.cidrs.map((c) => c.text)).toEqual(['127.0.0.1/32', 'fd00::/8']);
    expect([...p.hosts]).toEqual(['internal.example.com']);
    expect(p.suffixes).toEqual(['.corp.example']);
    expect(() => parseEgressAllow('10.0.0.0/8,not a host!')).toThrow(/not a host!/);
  });
});

describe('the guard', () => {
  const fake = (table: Record<string, string[]>) => async (host: string): Promise<ResolvedAddress[]> => {
    const a = table[host];
    if (!a) throw Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' });
    return a.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  const table = {
    'public.example': ['93.184.216.34', '2606:2800:220:1::1'],
    'mixed.example': ['93.184.216.34', '10.0.0.7'], // one private answer poisons the name
    'internal.example.com': ['10.1.1.1'],
    'meta.corp.example': ['169.254.169.254'],
    'db.corp.example': ['10.9.9.9'],
    'v6private.example': ['2606:2800:220:1::1', 'fd00::1'],
  };

  it('refuses a name if ANY resolved address is refused; IP literals stand for themselves', async () => {
    const g = new EgressGuard('', fake(table));
    expect((await g.resolve('public.example')).map((a) => a.address)).toEqual(['93.184.216.34', '2606:2800:220:1::1']);
    await expect(g.resolve('mixed.example')).rejects.toThrow(EgressDeniedError);
    await expect(g.resolve('v6private.example')).rejects.toThrow(EgressDeniedError);
    for (const ip of ['10.0.0.1', '169.254.169.254', '127.0.0.1', '[::1]', '0.0.0.0', '100.64.1.1', '224.0.0.251']) {
      await expect(g.resolve(ip), ip).rejects.toThrow(EgressDeniedError);
    }
    await expect(g.resolve('localhost')).rejects.toThrow(/localhost/);
    await expect(g.resolve('metadata.google.internal')).rejects.toThrow(/metadata/);
    await expect(g.resolve('nosuch.example')).rejects.toThrow(/could not be resolved/);
  });

  it('the allow list admits CIDRs and names; metadata stays blocked whatever it says', async () => {
    const g = new EgressGuard('127.0.0.1/32,10.1.0.0/16,169.254.0.0/16,internal.example.com,*.corp.example', fake(table));
    expect(await g.resolve('127.0.0.1')).toEqual([{ address: '127.0.0.1', family: 4 }]);
    await expect(g.resolve('127.0.0.2')).rejects.toThrow(EgressDeniedError);
    expect((await g.resolve('internal.example.com'))[0]!.address).toBe('10.1.1.1');
    expect((await g.resolve('db.corp.example'))[0]!.address).toBe('10.9.9.9');
    expect(await g.resolve('169.254.1.2')).toHaveLength(1);
    await expect(g.resolve('169.254.169.254')).rejects.toThrow(/metadata/);
    await expect(g.resolve('meta.corp.example')).rejects.toThrow(/metadata/);
    await expect(g.resolve('[::ffff:169.254.169.254]')).rejects.toThrow(/metadata/);
  });

  it('localhost is loopback without DNS: admitted by the loopback addresses the list covers, or by its name', async () => {
    const never: Resolver = async () => {
      throw new Error('localhost must not be resolved through DNS');
    };
    // 127.0.0.1/32 admits localhost as it admits 127.0.0.1, but only that address (not ::1)
    expect(await new EgressGuard('127.0.0.1/32', never).resolve('localhost')).toEqual([{ address: '127.0.0.1', family: 4 }]);
    expect(await new EgressGuard('127.0.0.0/8,::1/128', never).resolve('api.localhost')).toEqual([{ address: '127.0.0.1', family: 4 }, { address: '::1', family: 6 }]);
    expect(await new EgressGuard('::1', never).resolve('LOCALHOST.')).toEqual([{ address: '::1', family: 6 }]);
    expect((await new EgressGuard('localhost', never).resolve('localhost')).map((a) => a.address)).toEqual(['127.0.0.1', '::1']);
    // a list that covers no loopback address, or another name: refused, saying how to allow it
    for (const allow of ['', '10.0.0.0/8', 'api.localhost', '127.0.0.2/32']) {
      await expect(new EgressGuard(allow, never).resolve('localhost'), allow).rejects.toThrow(/localhost is loopback.*LATCHKEY_EGRESS_ALLOW/);
    }
  });
});

describeBackends('proxy egress through the server', (ctx) => {
  let server: RunningServer;
  let owner: string;
  let agentToken: string;
  let caFile: string;
  let tlsUp: { port: number; close(): void; hits: number };
  let plainUp: { port: number; close(): void; seen: IncomingMessage[] };

  async function call(method: string, path: string, body?: unknown, token = owner) {
    const res = await fetch(server.url + path, { method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    const text = await res.text();
    return { status: res.status, json: text.startsWith('{') ? JSON.parse(text) : null };
  }

  async function service(name: string, host: string) {
    expect((await call('POST', '/v1/vaults/default/services', { name, host, auth: { type: 'bearer', key: 'EG_KEY' } })).status).toBe(201);
    expect((await call('POST', '/v1/vaults/default/grants', { agent: 'egress-bot', service: name, mode: 'use' })).status).toBe(201);
  }

  /** A pipeline of our own over the server's core, mounted on a bare node:http server. */
  async function mount(p: ProxyPipeline, target: (req: IncomingMessage) => ProxyTarget) {
    const srv = createHttpServer((req: IncomingMessage, res: ServerResponse) => void p.handle(target(req), req, res));
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, close: () => srv.close() };
  }

  beforeAll(async () => {
    const ca = await createTestCa();
    const leaf = await ca.issue(['rebind.test', '127.0.0.1']);
    caFile = join(mkdtempSync(join(tmpdir(), 'lk-eg-')), 'ca.pem');
    writeFileSync(caFile, ca.certPem);
    const hits = { n: 0 };
    const s = createHttpsServer({ cert: leaf.certPem, key: leaf.keyPem }, (req, res) => {
      hits.n++;
      res.end(`ok ${req.headers.authorization}`);
    }).listen(0, '127.0.0.1');
    await once(s, 'listening');
    tlsUp = { port: (s.address() as AddressInfo).port, close: () => s.close(), get hits() { return hits.n; } };
    const seen: IncomingMessage[] = [];
    const h = createHttpServer((req, res) => {
      seen.push(req);
      res.end(`plain ${req.url}`);
    }).listen(0, '127.0.0.1');
    await once(h, 'listening');
    plainUp = { port: (h.address() as AddressInfo).port, close: () => h.close(), seen };
    // no LATCHKEY_EGRESS_ALLOW: loopback and private addresses are refused
    server = await startServer({ home: ctx.home, databaseUrl: ctx.databaseUrl, host: '127.0.0.1', port: 0, proxyPort: 0, logLevel: 'silent', env: { LATCHKEY_MASTER_KEY: MASTER } });
    owner = server.initialized!.ownerToken;
    expect((await call('PUT', '/v1/vaults/default/secrets/EG_KEY', { value: KEY })).status).toBe(201);
    const a = await call('POST', '/v1/agents', { name: 'egress-bot', vaults: ['default'] });
    agentToken = a.json.token;
    await service('private10', '10.0.0.1');
    await service('metadata', '169.254.169.254');
    await service('loopback', `127.0.0.1:${tlsUp.port}`);
  });

  afterAll(async () => {
    await server?.close();
    tlsUp?.close();
    plainUp?.close();
  });

  it('services aimed at 10.0.0.1, 169.254.169.254 and 127.0.0.1 are refused with 403 egress_denied, and audited', async () => {
    for (const name of ['private10', 'metadata', 'loopback']) {
      const res = await fetch(`${server.url}/proxy/default/${name}/latest/meta-data/`, { headers: { authorization: `Bearer ${agentToken}` } });
      expect(res.status, name).toBe(403);
      expect(res.headers.get('x-latchkey-error')).toBe('egress_denied');
      const p = (await res.json()) as Record<string, any>;
      expect(p.hint).toContain('LATCHKEY_EGRESS_ALLOW');
      expect(JSON.stringify(p)).not.toContain(KEY);
    }
    expect(tlsUp.hits).toBe(0);
    const until = Date.now() + 3000;
    let evs: Array<{ outcome: string; details: Record<string, any> }> = [];
    while (Date.now() < until) {
      evs = (await call('GET', '/v1/audit?action=proxy.request&limit=100')).json.items;
      if (evs.filter((e) => e.details.error === 'egress_denied').length >= 3) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const denied = evs.filter((e) => e.details.error === 'egress_denied');
    expect(denied.map((e) => e.details.host).sort()).toEqual(['10.0.0.1', '127.0.0.1', '169.254.169.254']);
    expect(denied.every((e) => e.outcome === 'denied' && e.details.status === 403)).toBe(true);
  });

  it('metadata stays blocked even when the allow list covers it', async () => {
    const p = new ProxyPipeline(server.core, { egressAllow: '169.254.0.0/16,0.0.0.0/0' });
    const m = await mount(p, (req) => ({ mode: 'base', token: agentToken, vault: 'default', service: 'metadata', scheme: 'https', host: '', port: 443, path: req.url!, clientIp: '127.0.0.1' }));
    try {
      const res = await fetch(`${m.url}/latest/meta-data/`);
      expect(res.status).toBe(403);
      expect(res.headers.get('x-latchkey-error')).toBe('egress_denied');
      expect(((await res.json()) as Record<string, any>).detail).toContain('metadata');
    } finally {
      m.close();
      await p.close();
    }
  });

  it('a name is resolved once per connection and exactly the checked address is dialed (no rebinding window)', async () => {
    await service('rebind', `rebind.test:${tlsUp.port}`);
    let calls = 0;
    // first answer: loopback (allowed below); any later answer: a private address that would be refused
    const resolver = async (): Promise<ResolvedAddress[]> => (calls++ === 0 ? [{ address: '127.0.0.1', family: 4 }] : [{ address: '10.0.0.99', family: 4 }]);
    const p = new ProxyPipeline(server.core, { egressAllow: '127.0.0.1/32', upstreamCa: caFile, resolver });
    const m = await mount(p, (req) => ({ mode: 'base', token: agentToken, vault: 'default', service: 'rebind', scheme: 'https', host: '', port: 443, path: req.url!, clientIp: '127.0.0.1' }));
    try {
      const before = tlsUp.hits;
      const r1 = await fetch(`${m.url}/a`);
      expect(r1.status).toBe(200);
      // TLS was verified against the name (the certificate says rebind.test), the credential injected and redacted
      expect(await r1.text()).toMatch(/^ok Bearer \[REDACTED\**\]$/);
      const r2 = await fetch(`${m.url}/b`); // same pooled connection: no new resolution
      expect(r2.status).toBe(200);
      await r2.text();
      expect(calls).toBe(1);
      expect(tlsUp.hits - before).toBe(2);
    } finally {
      m.close();
      await p.close();
    }
    // a new pipeline (new connection) sees the rebinding answer and refuses before dialing
    const p2 = new ProxyPipeline(server.core, { egressAllow: '127.0.0.1/32', upstreamCa: caFile, resolver });
    const m2 = await mount(p2, (req) => ({ mode: 'base', token: agentToken, vault: 'default', service: 'rebind', scheme: 'https', host: '', port: 443, path: req.url!, clientIp: '127.0.0.1' }));
    try {
      const r3 = await fetch(`${m2.url}/c`);
      expect(r3.status).toBe(403);
      expect(r3.headers.get('x-latchkey-error')).toBe('egress_denied');
    } finally {
      m2.close();
      await p2.close();
    }
  });

  it('an upstream certificate from an untrusted CA is refused (without LATCHKEY_UPSTREAM_CA)', async () => {
    const p = new ProxyPipeline(server.core, { egressAllow: '127.0.0.1/32' });
    const m = await mount(p, (req) => ({ mode: 'base', token: agentToken, vault: 'default', service: 'loopback', scheme: 'https', host: '', port: 443, path: req.url!, clientIp: '127.0.0.1' }));
    try {
      const res = await fetch(`${m.url}/x`);
      expect(res.status).toBe(502);
      expect(res.headers.get('x-latchkey-error')).toBe('upstream_error');
      expect(((await res.json()) as Record<string, any>).hint).toContain('LATCHKEY_UPSTREAM_CA');
    } finally {
      m.close();
      await p.close();
    }
  });

  it('forward-mode targets: 407 without a token, CONNECT check, host matching, injection over plain http', async () => {
    await service('plain', `127.0.0.1:${plainUp.port}`);
    const p = new ProxyPipeline(server.core, { egressAllow: '127.0.0.1/32' });
    const fwd = (token: string | null, port: number) => (req: IncomingMessage): ProxyTarget => ({ mode: 'forward', token, vault: 'default', scheme: 'http', host: '127.0.0.1', port, path: req.url!, clientIp: '127.0.0.1' });
    const ok = await mount(p, fwd(agentToken, plainUp.port));
    const anon = await mount(p, fwd(null, plainUp.port));
    const other = await mount(p, fwd(agentToken, 1));
    try {
      const r = await fetch(`${ok.url}/hello?q=1`);
      expect(r.status).toBe(200);
      expect(await r.text()).toBe('plain /hello?q=1');
      expect(plainUp.seen.at(-1)!.headers.authorization).toBe(`Bearer ${KEY}`);
      // (fetch turns any 407 into a network error, so node:http)
      const a = await new Promise<IncomingMessage>((resolve, reject) => httpGet(`${anon.url}/hello`, resolve).on('error', reject));
      a.resume();
      expect([a.statusCode, a.headers['x-latchkey-error'], a.headers['proxy-authenticate']]).toEqual([407, 'token_required', 'Basic realm="latchkey"']);
      const o = await fetch(`${other.url}/hello`);
      expect([o.status, o.headers.get('x-latchkey-error')]).toEqual([403, 'no_service']);
      expect(((await o.json()) as Record<string, any>).hint).toContain('proposals');

      expect(await p.checkTunnel(agentToken, 'default', '127.0.0.1', plainUp.port, '127.0.0.1')).toEqual({ match: true, passthrough: false });
      await expect(p.checkTunnel(null, 'default', '127.0.0.1', plainUp.port, '127.0.0.1')).rejects.toMatchObject({ status: 407 });
      await expect(p.checkTunnel(agentToken, 'default', 'example.org', 443, '127.0.0.1')).rejects.toMatchObject({ status: 403, code: 'no_service' });
      await expect(p.checkTunnel(agentToken, 'default', 'example.org', 443, '127.0.0.1')).rejects.toBeInstanceOf(ProxyError);
      // with blind passthrough allowed, an unmatched host tunnels without interception
      expect((await call('PATCH', '/v1/vaults/default', { passthrough: true })).status).toBe(200);
      expect(await p.checkTunnel(agentToken, 'default', 'example.org', 443, '127.0.0.1')).toEqual({ match: false, passthrough: true });
      expect((await call('PATCH', '/v1/vaults/default', { passthrough: false })).status).toBe(200);
      // a revoked grant closes the host at CONNECT and on the next inner request alike
      const g = (await call('GET', '/v1/vaults/default/grants?agent=egress-bot')).json.items.find((x: { service?: string; status: string }) => x.service === 'plain' && x.status === 'approved');
      expect((await call('POST', `/v1/vaults/default/grants/${g.id}/revoke`)).status).toBe(200);
      const after = await fetch(`${ok.url}/hello`);
      expect([after.status, after.headers.get('x-latchkey-error')]).toEqual([403, 'grant_required']);
      await expect(p.checkTunnel(agentToken, 'default', '127.0.0.1', plainUp.port, '127.0.0.1')).rejects.toMatchObject({ status: 403, code: 'grant_required' });
    } finally {
      ok.close();
      anon.close();
      other.close();
      await p.close();
    }
  });
});
