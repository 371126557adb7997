/**
 * Security headers, closed CORS, the cross-origin check on cookie-authenticated writes, and TLS on
 * the control plane — against real servers: plain HTTP and HTTPS (a self-signed P-256 certificate
 * made with openssl for this run, trusted through an undici Agent), and `latchkey server
 * --tls-cert/--tls-key` as a child process (needs the build: `npm run build`).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Agent, fetch, type Response } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../src/server/start.js';
import { HSTS_MAX_AGE } from '../src/server/security.js';

const MASTER = '4e'.repeat(32);
const ROOT = resolve(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin', 'latchkey.js');
const EMAIL = 'owner@example.test';
const PASSWORD = 'correct horse battery staple';
const FOREIGN = 'https://evil.example';

const CSP: Record<string, string> = {
  'default-src': "'self'",
  'script-src': "'self'",
  'style-src': "'self'",
  'img-src': "'self' data:",
  'connect-src': "'self'",
  'frame-ancestors': "'none'",
  'base-uri': "'none'",
  'form-action': "'self'",
  'object-src': "'none'",
};

function parseCsp(v: string | null): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (v ?? '').split(';').map((s) => s.trim()).filter(Boolean)) {
    const [name, ...values] = part.split(/\s+/);
    out[name!] = values.join(' ');
  }
  return out;
}

/** The API's answers are never pages: nothing loads from them, nothing frames them. */
const API_CSP: Record<string, string> = { 'default-src': "'none'", 'frame-ancestors': "'none'" };
/** helmet's headers that only mean something for a document a browser renders: the console's, not the API's */
const DOCUMENT_ONLY = ['cross-origin-opener-policy', 'origin-agent-cluster', 'x-dns-prefetch-control', 'x-download-options', 'x-permitted-cross-domain-policies', 'x-xss-protection'];

/** Every header the control plane promises on every response: the API's set under /v1 and /proxy/, the console's elsewhere. */
function expectSecurityHeaders(res: Response, what: string, tls: boolean) {
  const h = res.headers;
  // as the router sees the path (percent-decoded): /%761/health is the API's /v1/health
  const api = /^\/(?:v1|proxy)(?:\/|$)/.test(decodeURI(new URL(res.url).pathname));
  expect(parseCsp(h.get('content-security-policy')), `${what}: CSP`).toEqual(api ? API_CSP : CSP);
  expect(h.get('cross-origin-resource-policy'), `${what}: CORP`).toBe('same-origin');
  for (const d of DOCUMENT_ONLY) {
    if (api) expect(h.get(d), `${what}: no ${d} on an API answer`).toBeNull();
    else expect(h.get(d), `${what}: ${d} on a console answer`).not.toBeNull();
  }
  expect(h.get('x-frame-options'), `${what}: X-Frame-Options`).toBe('DENY');
  expect(h.get('x-content-type-options'), `${what}: X-Content-Type-Options`).toBe('nosniff');
  expect(h.get('referrer-policy'), `${what}: Referrer-Policy`).toBe('no-referrer');
  const pp = h.get('permissions-policy') ?? '';
  for (const f of ['camera', 'microphone', 'geolocation', 'payment', 'usb']) expect(pp, `${what}: Permissions-Policy ${f}`).toContain(`${f}=()`);
  expect(h.get('access-control-allow-origin'), `${what}: no ACAO`).toBeNull();
  expect([...h.keys()].filter((k) => k.startsWith('access-control-')), `${what}: no CORS headers`).toEqual([]);
  if (tls) expect(h.get('strict-transport-security'), `${what}: HSTS`).toBe(`max-age=${HSTS_MAX_AGE}`);
  else expect(h.get('strict-transport-security'), `${what}: no HSTS over http`).toBeNull();
}

/** A self-signed ECDSA P-256 certificate for 127.0.0.1 and localhost. */
function makeCert(dir: string): { cert: string; key: string; ca: string } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
    '-days', '2', '-subj', '/CN=latchkey-test', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'ignore' });
  return { cert, key, ca: readFileSync(cert, 'utf8') };
}

function cookieOf(res: Response): { header: string; pair: string } {
  const header = res.headers.getSetCookie().find((c) => c.startsWith('lk_session='));
  expect(header, 'the login sets lk_session').toBeTruthy();
  return { header: header!, pair: header!.split(';')[0]! };
}

describe('security headers, CORS and cross-origin writes (http)', () => {
  let home: string;
  let server: RunningServer;
  let owner: string;
  let cookie: string;
  let loginCookieHeader: string;

  const call = (method: string, path: string, o: { token?: string; cookie?: string; body?: unknown; headers?: Record<string, string> } = {}) =>
    fetch(server.url + path, {
      method,
      headers: {
        ...(o.token ? { authorization: `Bearer ${o.token}` } : {}),
        ...(o.cookie ? { cookie: o.cookie } : {}),
        ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...o.headers,
      },
      body: o.body === undefined ? undefined : typeof o.body === 'string' ? o.body : JSON.stringify(o.body),
    });

  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), 'latchkey-headers-'));
    server = await startServer({ home, host: '127.0.0.1', port: 0, proxyPort: 0, logLevel: 'silent', env: { LATCHKEY_MASTER_KEY: MASTER } });
    owner = server.initialized!.ownerToken;
    expect((await call('PATCH', '/v1/auth/me', { token: owner, body: { email: EMAIL, password: PASSWORD } })).status).toBe(200);
    const login = await call('POST', '/v1/auth/login', { body: { email: EMAIL, password: PASSWORD } });
    expect(login.status).toBe(200);
    ({ pair: cookie, header: loginCookieHeader } = cookieOf(login));
  });

  afterAll(async () => {
    await server?.close();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  it('the OpenAPI document lists every SPEC §5 route, with the request schemas that validate, and which routes need no token', async () => {
    const doc = await (await call('GET', '/v1/openapi.json', { token: owner })).json() as { paths: Record<string, Record<string, any>> };
    const spec: Array<[string, string]> = [
      ['get', '/v1/health'], ['get', '/v1/status'], ['get', '/v1/vaults'], ['post', '/v1/vaults'], ['delete', '/v1/vaults/{vault}'],
      ['get', '/v1/vaults/{vault}/secrets'], ['post', '/v1/vaults/{vault}/secrets'], ['put', '/v1/vaults/{vault}/secrets/{name}'],
      ['get', '/v1/vaults/{vault}/secrets/{name}'], ['get', '/v1/vaults/{vault}/secrets/{name}/value'], ['delete', '/v1/vaults/{vault}/secrets/{name}'],
      ['post', '/v1/vaults/{vault}/secrets/{name}/rotate'], ['post', '/v1/vaults/{vault}/secrets/{name}/rollback'], ['post', '/v1/vaults/{vault}/secrets/{name}/migrate'],
      ['post', '/v1/vaults/{vault}/rotate-all'], ['get', '/v1/audit'], ['get', '/v1/audit/verify'], ['post', '/v1/auth/login'], ['post', '/v1/auth/logout'],
      ['get', '/v1/auth/me'], ['post', '/v1/tokens'], ['get', '/v1/tokens'], ['post', '/v1/agents'], ['get', '/v1/agents'], ['delete', '/v1/agents/{name}'],
      ['post', '/v1/agents/{name}/rotate-token'], ['get', '/v1/vaults/{vault}/members'], ['post', '/v1/vaults/{vault}/members'],
      ['delete', '/v1/vaults/{vault}/members/{email}'], ['get', '/v1/vaults/{vault}/agents'], ['post', '/v1/vaults/{vault}/agents'],
      ['delete', '/v1/vaults/{vault}/agents/{name}'], ['post', '/v1/sessions'], ['get', '/v1/vaults/{vault}/grants'], ['post', '/v1/vaults/{vault}/grants'],
      ['post', '/v1/vaults/{vault}/grants/{id}/approve'], ['post', '/v1/vaults/{vault}/grants/{id}/deny'], ['post', '/v1/vaults/{vault}/grants/{id}/revoke'],
      ['get', '/v1/vaults/{vault}/services'], ['post', '/v1/vaults/{vault}/services'], ['put', '/v1/vaults/{vault}/services/{name}'],
      ['delete', '/v1/vaults/{vault}/services/{name}'], ['get', '/v1/vaults/{vault}/proposals'], ['post', '/v1/vaults/{vault}/proposals'],
      ['get', '/v1/vaults/{vault}/proposals/{id}'], ['post', '/v1/vaults/{vault}/proposals/{id}/approve'], ['post', '/v1/vaults/{vault}/proposals/{id}/reject'],
      ['get', '/v1/proposals/approval'], ['get', '/v1/agent/secrets/{name}'], ['get', '/v1/discover'],
    ];
    const missing = spec.filter(([m, p]) => !doc.paths[p]?.[m]).map(([m, p]) => `${m} ${p}`);
    expect(missing).toEqual([]);
    // the request schema is the zod schema that validates (strict: unknown fields refused)
    const body = doc.paths['/v1/vaults/{vault}/secrets/{name}/migrate']!.post.requestBody.content['application/json'].schema;
    expect(body).toMatchObject({ type: 'object', properties: { to: { type: 'string' } }, required: ['to'], additionalProperties: false });
    expect(doc.paths['/v1/health']!.get.security).toEqual([]);
    expect(doc.paths['/v1/auth/login']!.post.security).toEqual([]);
    expect(doc.paths['/v1/vaults']!.get.security).toBeUndefined(); // the document's default: bearer
  });

  it('every header on 200, 201, 400, 401, 403, 404 (in and outside /v1), health and the OpenAPI document; no HSTS over http', async () => {
    const cases: Array<[string, Promise<Response>, number]> = [
      ['health', call('GET', '/v1/health'), 200],
      ['health, percent-encoded path', call('GET', '/%761/health'), 200],
      ['status', call('GET', '/v1/status', { token: owner }), 200],
      ['openapi', call('GET', '/v1/openapi.json', { token: owner }), 200],
      ['create', call('POST', '/v1/vaults', { token: owner, body: { name: 'hdr-vault' } }), 201],
      ['validation', call('POST', '/v1/vaults', { token: owner, body: { name: 'x', bogus: 1 } }), 400],
      ['malformed json', call('POST', '/v1/vaults', { token: owner, body: '{"name":' }), 400],
      ['no token', call('GET', '/v1/vaults'), 401],
      ['forged token', call('GET', '/v1/vaults', { token: 'lk_pat_forged_forged_forged' }), 401],
      ['unknown /v1 route', call('GET', '/v1/no-such-thing', { token: owner }), 404],
      ['missing console asset', call('GET', '/assets/no-such-file.js'), 404],
      ['unknown vault', call('GET', '/v1/vaults/nope/secrets', { token: owner }), 404],
      ['cross-origin write', call('POST', '/v1/vaults', { cookie, body: { name: 'x' }, headers: { origin: FOREIGN } }), 403],
    ];
    for (const [what, p, status] of cases) {
      const res = await p;
      expect(res.status, what).toBe(status);
      expectSecurityHeaders(res, what, false);
      await res.arrayBuffer();
    }
    // the console: index.html (503 with a hint when the console is not built), an SPA route, a built asset
    const index = await call('GET', '/');
    expect([200, 503]).toContain(index.status);
    expectSecurityHeaders(index, 'console /', false);
    const html = await index.text();
    const spa = await call('GET', '/vaults/default');
    expect(spa.status).toBe(index.status);
    expectSecurityHeaders(spa, 'console route', false);
    const asset = /(?:src|href)="(\/assets\/[^"]+)"/.exec(html)?.[1];
    if (index.status === 200) {
      expect(asset, 'the built index.html references an asset').toBeTruthy();
      const a = await call('GET', asset!);
      expect(a.status).toBe(200);
      expectSecurityHeaders(a, `console asset ${asset}`, false);
    }
    // the session cookie over plain http: HttpOnly, SameSite=Strict, not Secure (a browser would drop it)
    expect(loginCookieHeader).toMatch(/;\s*HttpOnly/i);
    expect(loginCookieHeader).toMatch(/;\s*SameSite=Strict/i);
    expect(loginCookieHeader).not.toMatch(/;\s*Secure/i);
  });

  it('CORS is closed: a preflight from another origin gets no allow headers; no response carries Access-Control-Allow-Origin', async () => {
    for (const path of ['/v1/vaults', '/v1/auth/login', '/v1/health', '/v1/vaults/default/secrets/X/value']) {
      const pre = await call('OPTIONS', path, { headers: { origin: FOREIGN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } });
      expect([403, 404], path).toContain(pre.status);
      expectSecurityHeaders(pre, `preflight ${path}`, false);
      expect(pre.headers.get('access-control-allow-methods')).toBeNull();
      expect(pre.headers.get('access-control-allow-headers')).toBeNull();
      expect(pre.headers.get('access-control-allow-credentials')).toBeNull();
      expect(pre.headers.get('content-type')).toContain('application/problem+json');
      expect(((await pre.json()) as { code: string }).code).toBe('cors_not_allowed');
    }
    // simple cross-origin requests are answered (a browser cannot read them without ACAO), never with ACAO
    const get = await call('GET', '/v1/vaults', { token: owner, headers: { origin: FOREIGN } });
    expect(get.status).toBe(200);
    expectSecurityHeaders(get, 'cross-origin GET', false);
    const health = await call('GET', '/v1/health', { headers: { origin: 'null' } });
    expect(health.status).toBe(200);
    expect(health.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('a cookie-authenticated write from another origin is refused (nothing changes); same origin, no Origin and bearer tokens pass', async () => {
    const names = async () => ((await (await call('GET', '/v1/vaults', { token: owner })).json()) as { items: Array<{ name: string }> }).items.map((v) => v.name);

    const port = new URL(server.url).port;
    for (const origin of [FOREIGN, 'null', `http://localhost:${port}`, `http://127.0.0.1:${Number(port) + 1}`, `ftp://127.0.0.1:${port}`, `${server.url}.evil.example`, 'not a url']) {
      const r = await call('POST', '/v1/vaults', { cookie, body: { name: 'csrf-vault' }, headers: { origin } });
      expect(r.status, origin).toBe(403);
      expect(((await r.json()) as { code: string }).code).toBe('cross_origin_refused');
    }
    // no Origin, but the browser says the request is cross-site
    const site = await call('DELETE', '/v1/vaults/hdr-vault', { cookie, headers: { 'sec-fetch-site': 'cross-site' } });
    expect(site.status).toBe(403);
    // the refused requests changed nothing
    expect(await names()).not.toContain('csrf-vault');
    expect(await names()).toContain('hdr-vault');
    // the same cookie can still read (GET is not state-changing) even with a foreign Origin
    expect((await call('GET', '/v1/auth/me', { cookie, headers: { origin: FOREIGN } })).status).toBe(200);

    // same origin (what the console sends) and no Origin (curl-like clients) are accepted
    expect((await call('POST', '/v1/vaults', { cookie, body: { name: 'same-origin' }, headers: { origin: server.url, 'sec-fetch-site': 'same-origin' } })).status).toBe(201);
    expect((await call('POST', '/v1/vaults', { cookie, body: { name: 'no-origin' } })).status).toBe(201);
    // on a plain-http listener the https form of its own origin is accepted (a TLS-terminating proxy in front)
    expect((await call('POST', '/v1/vaults', { cookie, body: { name: 'behind-tls-proxy' }, headers: { origin: server.url.replace('http:', 'https:') } })).status).toBe(201);
    // a bearer token is not ambient authority: a foreign Origin does not matter
    expect((await call('POST', '/v1/vaults', { token: owner, body: { name: 'bearer-foreign' }, headers: { origin: FOREIGN } })).status).toBe(201);
    expect((await call('POST', '/v1/vaults', { token: owner, cookie, body: { name: 'bearer-and-cookie' }, headers: { origin: FOREIGN } })).status).toBe(201);

    // login from another origin is refused too (login CSRF); from no or the same origin it works
    const foreignLogin = await call('POST', '/v1/auth/login', { body: { email: EMAIL, password: PASSWORD }, headers: { origin: FOREIGN } });
    expect(foreignLogin.status).toBe(403);
    expect(foreignLogin.headers.getSetCookie()).toEqual([]);
    expect((await call('POST', '/v1/auth/login', { body: { email: EMAIL, password: PASSWORD }, headers: { origin: server.url } })).status).toBe(200);
  });

  it('a percent-encoded path gets the same checks as the route that serves it (the router decodes /%761/ to /v1/)', async () => {
    // served by /v1/openapi.json and /v1/presets: authenticated like them
    for (const path of ['/%761/openapi.json', '/%761/presets', '/%76%31/vaults']) {
      const r = await call('GET', path);
      expect(r.status, path).toBe(401);
      expect(r.headers.get('cache-control'), path).toBe('no-store');
    }
    const listed = await call('GET', '/%761/vaults', { token: owner });
    expect(listed.status).toBe(200);
    expect(listed.headers.get('cache-control')).toBe('no-store');
    // and the cross-origin check: no login CSRF, no cookie-authenticated write from another origin
    const login = await call('POST', '/%761/auth/login', { body: { email: EMAIL, password: PASSWORD }, headers: { origin: FOREIGN, 'sec-fetch-site': 'cross-site' } });
    expect(login.status).toBe(403);
    expect(login.headers.getSetCookie()).toEqual([]);
    expect((await call('POST', '/%761/vaults', { cookie, body: { name: 'encoded-csrf' }, headers: { origin: FOREIGN } })).status).toBe(403);
    // an encoded /v1/ path is not the console either
    expect((await call('GET', '/%761/no-such-route', { token: owner })).status).toBe(404);
  });
});

describe('TLS on the control plane', () => {
  let dir: string;
  let tls: { cert: string; key: string; ca: string };
  let agent: Agent;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'latchkey-tls-'));
    tls = makeCert(dir);
    agent = new Agent({ connect: { ca: tls.ca } });
  });

  afterAll(async () => {
    await agent?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('startServer with a certificate serves https: HSTS and every header, Secure session cookie, plain http refused', async () => {
    const home = mkdtempSync(join(tmpdir(), 'latchkey-tls-home-'));
    const server = await startServer({ home, host: '127.0.0.1', port: 0, proxyPort: 0, logLevel: 'silent', env: { LATCHKEY_MASTER_KEY: MASTER }, tlsCert: tls.cert, tlsKey: tls.key });
    try {
      expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const call = (method: string, path: string, o: { token?: string; body?: unknown; headers?: Record<string, string> } = {}) =>
        fetch(server.url + path, {
          method, dispatcher: agent,
          headers: { ...(o.token ? { authorization: `Bearer ${o.token}` } : {}), ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}), ...o.headers },
          body: o.body === undefined ? undefined : JSON.stringify(o.body),
        });
      const owner = server.initialized!.ownerToken;
      const cases: Array<[string, Promise<Response>, number]> = [
        ['health', call('GET', '/v1/health'), 200],
        ['status', call('GET', '/v1/status', { token: owner }), 200],
        ['no token', call('GET', '/v1/vaults'), 401],
        ['unknown', call('GET', '/v1/nothing-here', { token: owner }), 404],
        ['validation', call('POST', '/v1/vaults', { token: owner, body: { nope: 1 } }), 400],
      ];
      for (const [what, p, status] of cases) {
        const res = await p;
        expect(res.status, what).toBe(status);
        expectSecurityHeaders(res, `https ${what}`, true);
        await res.arrayBuffer();
      }
      // the console session cookie is Secure under TLS
      expect((await call('PATCH', '/v1/auth/me', { token: owner, body: { email: EMAIL, password: PASSWORD } })).status).toBe(200);
      const login = await call('POST', '/v1/auth/login', { body: { email: EMAIL, password: PASSWORD } });
      expect(login.status).toBe(200);
      const { header, pair } = cookieOf(login);
      expect(header).toMatch(/;\s*Secure/i);
      expect(header).toMatch(/;\s*HttpOnly/i);
      expect(header).toMatch(/;\s*SameSite=Strict/i);
      expectSecurityHeaders(login, 'https login', true);
      // the cookie works over https from the same origin, and not from another one
      expect((await call('POST', '/v1/vaults', { body: { name: 'tls-vault' }, headers: { cookie: pair, origin: server.url } })).status).toBe(201);
      expect((await call('POST', '/v1/vaults', { body: { name: 'tls-evil' }, headers: { cookie: pair, origin: server.url.replace('https:', 'http:') } })).status).toBe(403);
      // an untrusting client refuses the self-signed certificate; plain http on the TLS port gets no answer it accepts
      await expect(fetch(server.url + '/v1/health')).rejects.toThrow();
      await expect(fetch(server.url.replace('https:', 'http:') + '/v1/health')).rejects.toThrow();
    } finally {
      await server.close();
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('unreadable or mismatched certificate files stop start-up with a clear error', async () => {
    const home = mkdtempSync(join(tmpdir(), 'latchkey-tls-bad-'));
    try {
      const base = { home, host: '127.0.0.1', port: 0, proxyPort: 0, logLevel: 'silent', env: { LATCHKEY_MASTER_KEY: MASTER } };
      await expect(startServer({ ...base, tlsCert: join(dir, 'missing.pem'), tlsKey: tls.key })).rejects.toThrow(/cannot read the TLS certificate file .*missing\.pem: ENOENT/);
      const other = makeCert(mkdtempSync(join(dir, 'other-')));
      await expect(startServer({ ...base, tlsCert: tls.cert, tlsKey: other.key })).rejects.toThrow(/cannot be used together/);
      writeFileSync(join(dir, 'garbage.pem'), 'not a certificate');
      await expect(startServer({ ...base, tlsCert: join(dir, 'garbage.pem'), tlsKey: tls.key })).rejects.toThrow(/cannot be used together/);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('`latchkey server --tls-cert --tls-key` (child process, the bundled build) serves https with HSTS, the console and the OpenAPI document; one flag alone is a usage error', async () => {
    if (!existsSync(join(ROOT, 'dist', 'bin', 'latchkey.mjs'))) throw new Error('build first: npm run build');
    const home = mkdtempSync(join(tmpdir(), 'latchkey-tls-cli-'));
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('LATCHKEY_')) delete env[k];
    Object.assign(env, { LATCHKEY_HOME: home, LATCHKEY_MASTER_KEY: MASTER });
    let child: ChildProcess | null = null;
    try {
      const half = await new Promise<{ code: number | null; err: string }>((res) => {
        const c = spawn(process.execPath, [BIN, 'server', '--port', '0', '--proxy-port', '0', '--tls-cert', tls.cert], { env, stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        c.stderr!.setEncoding('utf8').on('data', (d) => (err += d));
        c.on('close', (code) => res({ code, err }));
      });
      expect(half.code).toBe(2);
      expect(half.err).toContain('--tls-cert and --tls-key go together');

      child = spawn(process.execPath, [BIN, 'server', '--port', '0', '--proxy-port', '0', '--log-level', 'warn', '--tls-cert', tls.cert, '--tls-key', tls.key], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout!.setEncoding('utf8').on('data', (d) => (out += d));
      child.stderr!.setEncoding('utf8').on('data', (d) => (out += d));
      const c = child;
      const url = await new Promise<string>((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`no listening line: ${out}`)), 30_000);
        const check = () => {
          const m = /Latchkey listening on (https:\/\/127\.0\.0\.1:\d+)/.exec(out);
          if (m) {
            clearTimeout(timer);
            res(m[1]!);
          }
        };
        c.stdout!.on('data', check);
        c.on('exit', (code) => rej(new Error(`server exited with ${code}: ${out}`)));
      });
      const res = await fetch(url + '/v1/health', { dispatcher: agent });
      expect(res.status).toBe(200);
      expectSecurityHeaders(res, 'cli https health', true);
      expect(await res.json()).toMatchObject({ status: 'ok' });
      // the bundle finds the package's files from wherever its chunks are: the built console, the version
      const index = await fetch(url + '/', { dispatcher: agent });
      expect(index.status).toBe(200);
      expect(await index.text()).toMatch(/<script[^>]+src="\/assets\//);
      const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
      const health = (await fetch(url + '/v1/health', { dispatcher: agent }).then((r) => r.json())) as { version: string };
      expect(health.version).toBe(version);
      // a fresh data dir: the server initialised it and printed the owner token once
      const owner = /lk_pat_[A-Za-z0-9_-]+/.exec(out)?.[0];
      expect(owner, 'the first start prints the owner token').toBeTruthy();
      const doc = await fetch(url + '/v1/openapi.json', { dispatcher: agent, headers: { authorization: `Bearer ${owner}` } });
      expect(doc.status).toBe(200);
      expect(((await doc.json()) as { paths: Record<string, unknown> }).paths).toHaveProperty(['/v1/vaults/{vault}/secrets/{name}/value']);
    } finally {
      if (child && child.exitCode === null) {
        const done = new Promise((r) => child!.on('exit', r));
        child.kill('SIGTERM');
        await done;
      }
      rmSync(home, { recursive: true, force: true });
    }
  });
});
