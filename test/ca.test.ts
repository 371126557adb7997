/**
 * The forward proxy's instance CA: created once in the database (sealed under the keyring, never
 * in clear), the same for every server on one database (even when two create it at once),
 * public at GET /v1/ca.pem; leaves per host signed by it, 24 h, cached with one key per host.
 */
import { createPrivateKey, createSign, createVerify, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { InstanceCa } from '../src/proxy/ca.js';
import { startServer, type RunningServer } from '../src/server/start.js';
import { describeBackends } from './helpers/backends.js';

const MASTER = 'c4'.repeat(32);

describeBackends('proxy CA', (ctx) => {
  let a: RunningServer;
  let b: RunningServer;

  const start = () => startServer({
    home: ctx.home, databaseUrl: ctx.databaseUrl, host: '127.0.0.1', port: 0, proxyPort: 0, logLevel: 'silent', env: { LATCHKEY_MASTER_KEY: MASTER },
  });

  beforeAll(async () => {
    a = await start();
    // a second replica on the same database (SQLite: the same file; PostgreSQL: the same URL)
    b = await start();
  });

  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  it('GET /v1/ca.pem needs no auth; two replicas creating it at once end up with one CA; its key is sealed', async () => {
    expect(await a.core.store.getProxyCa()).toBeNull();
    const [ra, rb] = await Promise.all([fetch(`${a.url}/v1/ca.pem`), fetch(`${b.url}/v1/ca.pem`)]);
    expect(ra.status).toBe(200);
    expect(rb.status).toBe(200);
    expect(ra.headers.get('content-type')).toContain('application/x-pem-file');
    const pemA = await ra.text();
    const pemB = await rb.text();
    expect(pemA).toMatch(/^-----BEGIN CERTIFICATE-----\n[\s\S]+\n-----END CERTIFICATE-----\n$/);
    expect(pemB).toBe(pemA);

    const cert = new X509Certificate(pemA);
    expect(cert.ca).toBe(true);
    expect(cert.publicKey.asymmetricKeyType).toBe('ec');
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(cert.verify(cert.publicKey)).toBe(true); // self-signed root
    expect(Date.parse(cert.validTo)).toBeGreaterThan(Date.now() + 9 * 365 * 86_400_000);
    expect(cert.subject).toContain('Latchkey proxy CA');

    // one row, one audited creation
    const row = (await a.core.store.getProxyCa())!;
    expect(row.cert_pem).toBe(pemA);
    const created = await a.core.store.queryAudit({ action: 'ca.create', limit: 10 });
    expect(created).toHaveLength(1);
    expect(JSON.parse(created[0]!.details).fingerprint_sha256).toBe(cert.fingerprint256.replace(/:/g, '').toLowerCase());

    // the stored key is sealed: neither PEM nor DER, opens only through the keyring, and is the CA's key
    const sealed = Buffer.from(row.sealed_key);
    expect(sealed.includes('PRIVATE KEY')).toBe(false);
    expect(() => createPrivateKey({ key: sealed, format: 'der', type: 'pkcs8' })).toThrow();
    const pkcs8 = a.core.keyring.openBlob('proxy-ca', 'instance', 'instance', row.sealed_key);
    expect(() => a.core.keyring.openBlob('proxy-ca', 'instance', 'other', row.sealed_key)).toThrow(); // AAD-bound to its row
    const priv = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
    const sig = createSign('sha256').update('latchkey').sign(priv);
    expect(createVerify('sha256').update('latchkey').verify(cert.publicKey, sig)).toBe(true);

    // and the key in clear is nowhere in the database
    const needles = [pkcs8, Buffer.from(pkcs8.toString('base64')), Buffer.from('PRIVATE KEY')];
    if (ctx.backend === 'sqlite') {
      for (const f of [ctx.sqlitePath!, `${ctx.sqlitePath}-wal`]) {
        if (!existsSync(f)) continue;
        const bytes = readFileSync(f);
        for (const n of needles) expect(bytes.includes(n)).toBe(false);
      }
    } else {
      const c = new pg.Client({ connectionString: ctx.databaseUrl });
      await c.connect();
      try {
        const r = await c.query('select id, cert_pem, sealed_key, created_at from proxy_ca');
        expect(r.rows).toHaveLength(1);
        for (const v of Object.values(r.rows[0] as Record<string, unknown>)) {
          const buf = Buffer.isBuffer(v) ? v : Buffer.from(String(v));
          for (const n of needles) expect(buf.includes(n)).toBe(false);
        }
      } finally {
        await c.end();
      }
    }
  });

  it('a server started later on the same database loads the same CA', async () => {
    const c = await start();
    try {
      const r = await fetch(`${c.url}/v1/ca.pem`);
      expect(await r.text()).toBe((await a.core.store.getProxyCa())!.cert_pem);
      expect(await a.core.store.queryAudit({ action: 'ca.create', limit: 10 })).toHaveLength(1);
    } finally {
      await c.close();
    }
  });

  it('leaves: SAN for the host or IP, signed by the CA, 24 h, cached with one key per host', async () => {
    const caCert = new X509Certificate(await a.ca.certPem());
    const gen0 = a.ca.stats.generated;

    let t = performance.now();
    const l1 = await a.ca.leaf('api.example.com');
    const firstMs = performance.now() - t;
    t = performance.now();
    const l2 = await a.ca.leaf('API.Example.com.');
    const cachedMs = performance.now() - t;
    expect(l2).toBe(l1);
    expect(a.ca.stats.generated).toBe(gen0 + 1);
    expect(cachedMs).toBeLessThan(firstMs);
    console.log(`[ca] ${ctx.backend}: first leaf ${firstMs.toFixed(2)} ms, cached ${cachedMs.toFixed(3)} ms`);

    const leaf = new X509Certificate(l1.certPem);
    expect(leaf.ca).toBe(false);
    expect(leaf.checkHost('api.example.com')).toBe('api.example.com');
    expect(leaf.checkHost('evil.example.com')).toBeUndefined();
    expect(leaf.checkIssued(caCert)).toBe(true);
    expect(leaf.verify(caCert.publicKey)).toBe(true);
    expect(leaf.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(leaf.keyUsage).toContain('1.3.6.1.5.5.7.3.1'); // serverAuth
    const life = Date.parse(leaf.validTo) - Date.now();
    expect(life).toBeGreaterThan(23 * 3_600_000);
    expect(life).toBeLessThanOrEqual(24 * 3_600_000 + 1000);
    expect(Date.parse(leaf.validFrom)).toBeLessThan(Date.now());
    // the key served is the leaf's key
    expect(createPrivateKey(l1.keyPem).asymmetricKeyType).toBe('ec');

    const ip = new X509Certificate((await a.ca.leaf('127.0.0.1')).certPem);
    expect(ip.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(ip.checkHost('localhost')).toBeUndefined();

    // many concurrent first requests for one host make one leaf
    const gen1 = a.ca.stats.generated;
    const many = await Promise.all(Array.from({ length: 20 }, () => a.ca.leaf('burst.example.com')));
    expect(new Set(many.map((l) => l.certPem)).size).toBe(1);
    expect(a.ca.stats.generated).toBe(gen1 + 1);

    // not a host name
    await expect(a.ca.leaf('bad host')).rejects.toThrow();
    // replica b signs its own leaves with the same CA
    expect(new X509Certificate((await b.ca.leaf('api.example.com')).certPem).verify(caCert.publicKey)).toBe(true);
  });

  it('a leaf near its end is renewed in the background with the same key; the LRU keeps at most maxLeaves', async () => {
    const ca = new InstanceCa(a.core, { leafValidityMs: 10 * 60_000, renewBeforeMs: 4 * 60_000, maxLeaves: 2 });
    const first = await ca.leaf('renew.example.com');
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.now() + 7 * 60_000); // 3 minutes left: still served, renewal starts
      const served = await ca.leaf('renew.example.com');
      expect(served).toBe(first);
      await vi.waitFor(() => expect(ca.stats.renewed).toBe(1), { timeout: 5000 });
    } finally {
      vi.useRealTimers();
    }
    const renewed = await ca.leaf('renew.example.com');
    expect(renewed.certPem).not.toBe(first.certPem);
    const a1 = new X509Certificate(first.certPem);
    const a2 = new X509Certificate(renewed.certPem);
    expect(a2.serialNumber).not.toBe(a1.serialNumber);
    expect(a2.publicKey.export({ format: 'der', type: 'spki' }).equals(a1.publicKey.export({ format: 'der', type: 'spki' }))).toBe(true);

    await ca.leaf('two.example.com');
    await ca.leaf('three.example.com');
    expect(ca.cachedLeaves).toBe(2);
  });

  it('GET /v1/proxy says whether the forward proxy runs (auth required)', async () => {
    expect((await fetch(`${a.url}/v1/proxy`)).status).toBe(401);
    const r = await fetch(`${a.url}/v1/proxy`, { headers: { authorization: `Bearer ${a.initialized!.ownerToken}` } });
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ enabled: false, port: null, ca_url: '/v1/ca.pem' });
  });
});
