/**
 * The service config library (host matchers, matching, auth rules; pure) and core.services
 * (CRUD, validation against the vault's credentials, audit) on SQLite and PostgreSQL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCore } from '../src/core/bootstrap.js';
import type { Core } from '../src/core/core.js';
import { LatchkeyError } from '../src/core/errors.js';
import {
  applyAuth, credentialKeys, hostMatches, injectedHeaderNames, matchService, normalizePath, parseAuthRule, parseHostMatcher, parseServiceSpec,
  type ServiceConfig,
} from '../src/core/matching.js';
import type { OpContext } from '../src/core/principal.js';
import { ProxyAccess } from '../src/core/proxy-access.js';
import { TransactionConflict, type ServiceRow } from '../src/store/store.js';
import { describeBackends } from './helpers/backends.js';
import { openRaw } from './helpers/raw-sql.js';

const MASTER = 'c3'.repeat(32);

async function fails(p: Promise<unknown> | (() => unknown)): Promise<LatchkeyError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (e instanceof LatchkeyError) return e;
    throw e;
  }
  throw new Error('expected a LatchkeyError');
}

const failsSync = (fn: () => unknown): LatchkeyError => {
  try {
    fn();
  } catch (e) {
    if (e instanceof LatchkeyError) return e;
    throw e;
  }
  throw new Error('expected a LatchkeyError');
};

// ---- pure: host matchers

describe('host matchers', () => {
  it('parses exact hosts, wildcards, ports and path prefixes (lower-cased)', () => {
    expect(parseHostMatcher('API.Stripe.com')).toEqual({ host: 'api.stripe.com', wildcard: false, base: 'api.stripe.com', port: null, pathPrefix: null });
    expect(parseHostMatcher('*.github.com')).toMatchObject({ host: '*.github.com', wildcard: true, base: 'github.com' });
    expect(parseHostMatcher('api.example.com:8443/v1/')).toMatchObject({ host: 'api.example.com', port: 8443, pathPrefix: '/v1' });
    expect(parseHostMatcher('api.example.com/')).toMatchObject({ pathPrefix: null });
    expect(parseHostMatcher('127.0.0.1:9000')).toMatchObject({ host: '127.0.0.1', port: 9000 });
    expect(parseHostMatcher('xn--bcher-kva.example')).toMatchObject({ host: 'xn--bcher-kva.example' });
  });

  it('refuses schemes, Unicode, underscores, bad wildcards, IP wildcards, bad ports and dot segments', () => {
    for (const bad of [
      '', 'https://api.stripe.com', 'bücher.example', 'api_x.example.com', '*.com', 'a.*.example.com', '*', '**.example.com', '*.1.2.3',
      '1.2.3', '300.1.1.1', 'api.example.com:0', 'api.example.com:70000', 'api.example.com:x', '[::1]', 'api.example.com/v1/../admin',
      'api.example.com/a b', 'user@api.example.com', 'api.example.com?x=1', '-bad.example.com', 'api.example.com/%2e%2e/x', 'a..b.com',
    ]) {
      const e = failsSync(() => parseHostMatcher(bad));
      expect(e.status, bad).toBe(400);
      expect(e.field).toBe('host');
    }
  });

  it('a wildcard covers exactly one label', () => {
    const m = parseHostMatcher('*.github.com');
    expect(hostMatches(m, 'api.github.com', 443)).toBe(true);
    expect(hostMatches(m, 'API.GitHub.com.', 443)).toBe(true);
    expect(hostMatches(m, 'github.com', 443)).toBe(false);
    expect(hostMatches(m, 'a.b.github.com', 443)).toBe(false);
    expect(hostMatches(m, 'evilgithub.com', 443)).toBe(false);
    expect(hostMatches(m, 'api.github.com.evil.com', 443)).toBe(false);
  });

  it('a port restricts; no port means any port', () => {
    expect(hostMatches(parseHostMatcher('api.example.com:8443'), 'api.example.com', 8443)).toBe(true);
    expect(hostMatches(parseHostMatcher('api.example.com:8443'), 'api.example.com', 443)).toBe(false);
    expect(hostMatches(parseHostMatcher('api.example.com'), 'api.example.com', 8443)).toBe(true);
  });

  it('normalizes paths and refuses ambiguous ones', () => {
    expect(normalizePath('/v1/x?q=1')).toBe('/v1/x');
    expect(normalizePath('/v1/a;b/c')).toBe('/v1/a;b/c');
    expect(normalizePath('')).toBe('/');
    for (const p of ['/v1/../admin', '/v1/%2E%2E/admin', '/v1/./x', '/v1%2fadmin', '/a\\b', 'relative']) expect(normalizePath(p), p).toBeNull();
    // forwarded as sent, these reach another path on some upstreams: a `#` (never in a request
    // target; an upstream that keeps it may resolve what follows), `..;` (Tomcat drops `;...`)
    for (const p of ['/v1/public#/../../admin', '/v1/x?q=1#f', '/v1/public/..;/admin', '/v1/public/.;x/y', '/v1/public/%2e%2e%3bx/admin']) expect(normalizePath(p), p).toBeNull();
  });
});

// ---- pure: matching

const svc = (name: string, host: string, over: Partial<ServiceConfig> = {}): ServiceConfig => ({
  name, host, auth: { type: 'bearer', key: 'K' }, methods: [], path_prefixes: [], quota_per_minute: null, enabled: true, description: null, ...over,
});

describe('matchService', () => {
  const services = [
    svc('gh-wild', '*.github.com'),
    svc('gh-api', 'api.github.com'),
    svc('ex', 'api.example.com'),
    svc('ex-v1', 'api.example.com/v1'),
    svc('ex-v1-users', 'api.example.com/v1/users'),
    svc('ex-port', 'api.example.com:8443'),
    svc('ro', 'ro.example.com', { methods: ['GET', 'HEAD'], path_prefixes: ['/public', '/docs'] }),
    svc('off', 'off.example.com', { enabled: false }),
  ];

  it('exact host beats wildcard; wildcard catches the rest', () => {
    expect(matchService(services, 'api.github.com', 443, '/', 'GET')?.service.name).toBe('gh-api');
    expect(matchService(services, 'uploads.github.com', 443, '/', 'GET')?.service.name).toBe('gh-wild');
    expect(matchService(services, 'github.com', 443, '/', 'GET')).toBeNull();
    expect(matchService(services, 'x.y.github.com', 443, '/', 'GET')).toBeNull();
  });

  it('the longer matcher path prefix wins, on segment boundaries', () => {
    expect(matchService(services, 'api.example.com', 443, '/v1/users/42', 'GET')?.service.name).toBe('ex-v1-users');
    expect(matchService(services, 'api.example.com', 443, '/v1/orders', 'GET')?.service.name).toBe('ex-v1');
    expect(matchService(services, 'api.example.com', 443, '/v1', 'GET')?.service.name).toBe('ex-v1');
    expect(matchService(services, 'api.example.com', 443, '/v10', 'GET')?.service.name).toBe('ex');
    expect(matchService(services, 'api.example.com', 443, '/v1/../admin', 'GET')?.service.name).toBe('ex');
  });

  it('an explicit port beats any port', () => {
    expect(matchService(services, 'api.example.com', 8443, '/x', 'GET')?.service.name).toBe('ex-port');
    expect(matchService(services, 'api.example.com', 443, '/x', 'GET')?.service.name).toBe('ex');
  });

  it('reports whether the method and path are allowed', () => {
    expect(matchService(services, 'ro.example.com', 443, '/public/a', 'get')).toMatchObject({ allowed: true, reason: null });
    expect(matchService(services, 'ro.example.com', 443, '/public/a', 'POST')).toMatchObject({ allowed: false, methodAllowed: false, reason: 'method_not_allowed' });
    expect(matchService(services, 'ro.example.com', 443, '/private', 'GET')).toMatchObject({ allowed: false, pathAllowed: false, reason: 'path_not_allowed' });
    expect(matchService(services, 'ro.example.com', 443, '/publicity', 'GET')).toMatchObject({ allowed: false, reason: 'path_not_allowed' });
    expect(matchService(services, 'ro.example.com', 443, '/public/../private', 'GET')).toMatchObject({ allowed: false, reason: 'path_not_allowed' });
    expect(matchService(services, 'api.example.com', 443, '/anything', 'DELETE')).toMatchObject({ allowed: true });
  });

  it('a disabled service refuses what it would have matched, and hands nothing to a broader service', () => {
    expect(matchService(services, 'off.example.com', 443, '/', 'GET')).toMatchObject({ allowed: false, reason: 'service_disabled', service: { name: 'off' } });
    // disabling the narrow /v1 service must not let the broad one (and its credential) serve /v1
    const narrowOff = services.map((s) => (s.name === 'ex-v1' ? { ...s, enabled: false } : s));
    expect(matchService(narrowOff, 'api.example.com', 443, '/v1/orders', 'GET')).toMatchObject({ allowed: false, reason: 'service_disabled', service: { name: 'ex-v1' } });
    expect(matchService(narrowOff, 'api.example.com', 443, '/v2', 'GET')).toMatchObject({ allowed: true, service: { name: 'ex' } });
    // equally specific: the enabled one serves (a replacement beside a disabled old service), whatever the names
    const replaced = [svc('api', 'same.example.com', { enabled: false }), svc('api-v2', 'same.example.com')];
    expect(matchService(replaced, 'same.example.com', 443, '/', 'GET')).toMatchObject({ allowed: true, service: { name: 'api-v2' } });
    expect(matchService([...replaced].reverse(), 'same.example.com', 443, '/', 'GET')).toMatchObject({ allowed: true, service: { name: 'api-v2' } });
  });
});

// ---- pure: auth rules

describe('service rows as configs (ProxyAccess.configOf)', () => {
  const row = (over: Partial<ServiceRow> = {}): ServiceRow => ({
    id: 'svc1', vault_id: 'v1', name: 'api', host: 'api.example.com', path_prefix: null, port: null,
    auth: JSON.stringify({ type: 'header', name: 'X-Api-Key', key: 'TOKEN' }), methods: '[]', path_prefixes: '[]',
    quota_per_minute: null, enabled: 1, description: null, created_at: '2026-11-30T00:00:00.000Z', updated_at: '2026-11-30T00:00:01.000Z', ...over,
  });

  it('two updates within one timestamp tick give two configs; an identical row is parsed once', () => {
    const access = new ProxyAccess({} as Core);
    const first = access.configOf(row());
    // same id and updated_at (two updates in the same millisecond), another auth rule and host
    const second = access.configOf(row({ auth: JSON.stringify({ type: 'bearer', key: 'OTHER' }), host: 'other.example.com', enabled: 0 }));
    expect(first.auth).toEqual({ type: 'header', name: 'X-Api-Key', key: 'TOKEN' });
    expect(second.auth).toEqual({ type: 'bearer', key: 'OTHER' });
    expect([second.host, second.enabled]).toEqual(['other.example.com', false]);
    // equal content, new object (PostgreSQL hands out fresh rows): the same parsed config
    expect(access.configOf(row())).toBe(first);
    const frozen = Object.freeze(row());
    expect(access.configOf(frozen)).toBe(first);
    expect(access.configOf(frozen)).toBe(first);
  });
});

describe('auth rules', () => {
  const values = { TOKEN: 'tok_123', USER: 'alice', PASS: 's3cret', ORG: 'org_9' };

  it('bearer, basic (with and without password), header, query and template', () => {
    expect(applyAuth(parseAuthRule({ type: 'bearer', key: 'TOKEN' }), values)).toEqual({ headers: { Authorization: 'Bearer tok_123' }, query: {} });
    expect(applyAuth(parseAuthRule({ type: 'basic', username_key: 'USER', password_key: 'PASS' }), values).headers.Authorization)
      .toBe(`Basic ${Buffer.from('alice:s3cret').toString('base64')}`);
    expect(applyAuth(parseAuthRule({ type: 'basic', username_key: 'TOKEN' }), values).headers.Authorization).toBe(`Basic ${Buffer.from('tok_123:').toString('base64')}`);
    expect(applyAuth(parseAuthRule({ type: 'header', name: 'X-Api-Key', key: 'TOKEN', prefix: 'Key ' }), values)).toEqual({ headers: { 'X-Api-Key': 'Key tok_123' }, query: {} });
    expect(applyAuth(parseAuthRule({ type: 'query', param: 'api_key', key: 'TOKEN' }), values)).toEqual({ headers: {}, query: { api_key: 'tok_123' } });
    const t = parseAuthRule({ type: 'template', headers: { Authorization: 'Token {{ TOKEN }}', 'X-Org': '{{ORG}}/{{ USER }}' } });
    expect(applyAuth(t, values)).toEqual({ headers: { Authorization: 'Token tok_123', 'X-Org': 'org_9/alice' }, query: {} });
    expect(credentialKeys(t)).toEqual(['TOKEN', 'ORG', 'USER']);
    expect(injectedHeaderNames(t)).toEqual(['authorization', 'x-org']);
    expect(credentialKeys(parseAuthRule({ type: 'basic', username_key: 'USER', password_key: 'USER' }))).toEqual(['USER']);
  });

  it('missing values and header-splitting values are refused without echoing the value', () => {
    const e = failsSync(() => applyAuth(parseAuthRule({ type: 'bearer', key: 'NOPE' }), values));
    expect(e).toMatchObject({ status: 502, code: 'credential_not_found' });
    const e2 = failsSync(() => applyAuth(parseAuthRule({ type: 'bearer', key: 'TOKEN' }), { TOKEN: 'abc\r\nX-Evil: 1' }));
    expect(e2.code).toBe('credential_invalid');
    expect(e2.message).not.toContain('X-Evil');
  });

  it('validates names, header tokens and placeholders, naming the field', () => {
    const cases: Array<[unknown, string]> = [
      [{ type: 'bearer', key: 'lower' }, 'auth.key'],
      [{ type: 'bearer' }, 'auth.key'],
      [{ type: 'oauth', key: 'K' }, 'auth.type'],
      [{ type: 'basic', password_key: 'P' }, 'auth.username_key'],
      [{ type: 'header', name: 'Bad Header', key: 'K' }, 'auth.name'],
      [{ type: 'header', name: 'Host', key: 'K' }, 'auth.name'],
      [{ type: 'header', name: 'content-length', key: 'K' }, 'auth.name'],
      [{ type: 'header', name: 'Connection', key: 'K' }, 'auth.name'],
      [{ type: 'header', name: 'X-Latchkey-Token', key: 'K' }, 'auth.name'],
      [{ type: 'header', name: 'X-Key', key: 'K', prefix: 'a\r\nb' }, 'auth.prefix'],
      [{ type: 'query', param: 'a b', key: 'K' }, 'auth.param'],
      [{ type: 'template', headers: {} }, 'auth.headers'],
      [{ type: 'template', headers: { 'X-Static': 'no placeholder' } }, 'auth.headers'],
      [{ type: 'template', headers: { 'X-A': '{{ bad name }}' } }, 'auth.headers.X-A'],
      [{ type: 'template', headers: { 'X-A': '{{ K }' } }, 'auth.headers.X-A'],
      [{ type: 'template', headers: { 'Transfer-Encoding': '{{ K }}' } }, 'auth.headers.Transfer-Encoding'],
      [{ type: 'bearer', key: 'K', extra: 1 }, 'auth.extra'],
    ];
    for (const [rule, field] of cases) expect(failsSync(() => parseAuthRule(rule)).field, JSON.stringify(rule)).toBe(field);
  });

  it('service specs: defaults, normalization and field names', () => {
    expect(parseServiceSpec({ name: 'stripe', host: 'API.stripe.com/', auth: { type: 'bearer', key: 'K' }, methods: ['get', 'GET', 'post'] })).toEqual({
      name: 'stripe', host: 'api.stripe.com', auth: { type: 'bearer', key: 'K' }, methods: ['GET', 'POST'], path_prefixes: [], quota_per_minute: null, enabled: true, description: null,
    });
    expect(failsSync(() => parseServiceSpec({ name: 'Stripe', host: 'a.com', auth: { type: 'bearer', key: 'K' } })).field).toBe('name');
    expect(failsSync(() => parseServiceSpec({ name: 's', host: 'a.com', auth: { type: 'bearer', key: 'K' }, quota_per_minute: 0 })).field).toBe('quota_per_minute');
    expect(failsSync(() => parseServiceSpec({ name: 's', host: 'a.com', auth: { type: 'bearer', key: 'K' }, path_prefixes: ['x'] })).field).toBe('path_prefixes[0]');
    expect(failsSync(() => parseServiceSpec({ name: 's', host: 'a.com', auth: { type: 'bearer', key: 'k' } }, { prefix: 'services[3]' })).field).toBe('services[3].auth.key');
    expect(failsSync(() => parseServiceSpec({ name: 'a', host: 'a.com', auth: { type: 'bearer', key: 'K' } }, { name: 'b' })).field).toBe('name');
  });
});

// ---- core.services on both backends

describeBackends('core.services', (ctx) => {
  let core: Core;
  let owner: OpContext;
  let agent: OpContext;
  let member: OpContext;

  const asCtx = async (token: string): Promise<OpContext> => ({ principal: await core.auth.authenticate(token), ip: '127.0.0.1', requestId: null });

  beforeAll(async () => {
    const opened = await openCore({ home: ctx.home, databaseUrl: ctx.databaseUrl, allowInit: true, env: { LATCHKEY_MASTER_KEY: MASTER } });
    core = opened.core;
    owner = await asCtx(opened.initialized!.ownerToken);
    agent = await asCtx((await core.access.createAgent(owner, { name: 'svc-bot', vaults: ['default'] })).token);
    const m = await core.access.createUser(owner, { email: 'member@example.test', role: 'member' });
    await core.access.addMember(owner, 'default', { email: 'member@example.test', role: 'member' });
    member = await asCtx(m.token);
    await core.secrets.put(owner, 'default', 'STRIPE_KEY', { value: 'sk_test_abc' });
    await core.secrets.put(owner, 'default', 'GH_TOKEN', { value: 'ghp_x' });
  });

  afterAll(async () => {
    await core?.close();
  });

  it('concurrent changes to one secret queue instead of failing or repeating (row lock): PUTs all land, one DELETE wins', async () => {
    await core.secrets.put(owner, 'default', 'RACE_PUT', { value: 'r0' });
    const puts = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => core.secrets.put(owner, 'default', 'RACE_PUT', { value: `r${i + 1}` })));
    expect(puts.filter((p) => p.status === 'rejected')).toEqual([]);
    expect((await core.secrets.get(owner, 'default', 'RACE_PUT')).version).toBe(13);
    // racing to create: one creates, the others add versions
    const creates = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => core.secrets.put(owner, 'default', 'RACE_NEW', { value: `n${i}` })));
    expect(creates.filter((p) => p.status === 'rejected')).toEqual([]);
    expect(creates.filter((p) => p.status === 'fulfilled' && p.value.created).length).toBe(1);
    expect((await core.secrets.get(owner, 'default', 'RACE_NEW')).version).toBe(8);
    const before = (await core.audit.query(core.store, { action: 'secret.delete', limit: 1000 })).items.length;
    const dels = await Promise.allSettled(Array.from({ length: 8 }, () => core.secrets.delete(owner, 'default', 'RACE_PUT')));
    expect(dels.filter((p) => p.status === 'fulfilled').length).toBe(1);
    for (const p of dels) if (p.status === 'rejected') expect(p.reason).toMatchObject({ status: 404 });
    expect((await core.audit.query(core.store, { action: 'secret.delete', limit: 1000 })).items.length).toBe(before + 1);
    await core.vaults.create(owner, { name: 'race-vault' });
    const vdels = await Promise.allSettled(Array.from({ length: 6 }, () => core.vaults.delete(owner, 'race-vault')));
    expect(vdels.filter((p) => p.status === 'fulfilled').length).toBe(1);
    expect((await core.audit.query(core.store, { action: 'vault.delete', limit: 1000 })).items.filter((e) => e.target === 'race-vault').length).toBe(1);
  });

  it('a migration racing a create of the same name in the target vault: one lands, the other adapts (409, or a new version); never a 500, never two', async () => {
    await core.vaults.create(owner, { name: 'migrace-from' });
    await core.vaults.create(owner, { name: 'migrace-to' });
    const fromId = (await core.vaults.require('migrace-from')).id;
    for (let i = 0; i < 8; i++) {
      const key = `MIG_RACE_${i}`;
      await core.secrets.put(owner, 'migrace-from', key, { value: 'moved' });
      const [m, p] = await Promise.allSettled([
        core.secrets.migrate(owner, 'migrace-from', key, { to: 'migrace-to' }),
        core.secrets.put(owner, 'migrace-to', key, { value: 'made' }),
      ]);
      expect(p.status, String((p as PromiseRejectedResult).reason)).toBe('fulfilled'); // a PUT creates or adds a version
      const put = (p as PromiseFulfilledResult<{ created: boolean }>).value;
      const left = await core.store.getSecret(fromId, key);
      expect((await core.secrets.read(owner, 'migrace-to', key)).value).toBe('made');
      if (m.status === 'fulfilled') {
        expect(left).toBeNull();
        expect(put.created).toBe(false);
        expect((await core.secrets.get(owner, 'migrace-to', key)).versions.length).toBe(2);
      } else {
        expect(m.reason).toMatchObject({ status: 409, code: 'secret_exists' });
        expect(left).not.toBeNull();
        expect(put.created).toBe(true);
      }
    }
  });

  it('rotate-all running beside rotations, deletes and puts of the same secrets neither deadlocks nor fails (one lock order)', async () => {
    await core.vaults.create(owner, { name: 'lock-order' });
    const names = Array.from({ length: 300 }, (_, i) => `LO_${String(i).padStart(3, '0')}`);
    for (let i = 0; i < names.length; i += 50) await Promise.all(names.slice(i, i + 50).map((n) => core.secrets.put(owner, 'lock-order', n, { value: `v-${n}` })));
    let stop = false;
    const worker = async (k: number) => {
      for (let i = k; !stop; i += 7) {
        const n = names[i % names.length]!;
        if (i % 3 === 0) await core.secrets.delete(owner, 'lock-order', n).then(() => core.secrets.put(owner, 'lock-order', n, { value: `v-${n}` })).catch((e) => { if (e?.status !== 404) throw e; });
        else await core.secrets.rotate(owner, 'lock-order', n).catch((e) => { if (e?.status !== 404) throw e; });
      }
    };
    const workers = Array.from({ length: 4 }, (_, k) => worker(k));
    const runs = await Promise.allSettled(Array.from({ length: 4 }, () => core.secrets.rotateAll(owner, 'lock-order')));
    stop = true;
    await Promise.all(workers);
    expect(runs.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason?.message)).toEqual([]);
    for (const r of runs) expect((r as PromiseFulfilledResult<{ failed: number }>).value.failed).toBe(0);
  }, 120_000);

  it('a new version of a preset secret is checked against the preset\'s format, as at creation (PUT and proposals)', async () => {
    await core.secrets.create(owner, 'default', { preset: 'openai', fields: { access_token: `sk-${'a'.repeat(40)}` } });
    const e = await fails(core.secrets.put(owner, 'default', 'skill:openai:access_token', { value: 'not-an-openai-key' }));
    expect(e).toMatchObject({ status: 400, field: 'value', code: 'invalid_format' });
    expect(e.message).not.toContain('not-an-openai-key');
    expect((await core.secrets.get(owner, 'default', 'skill:openai:access_token')).version).toBe(1);
    expect((await core.secrets.put(owner, 'default', 'skill:openai:access_token', { value: `sk-${'b'.repeat(40)}` })).created).toBe(false);
  });

  it('an agent removed from a vault loses its grants there (audited); added back, it has none', async () => {
    await core.access.createAgent(owner, { name: 'leaver', vaults: ['default'] });
    const leaver = await asCtx((await core.access.rotateAgentToken(owner, 'leaver')).token);
    await core.grants.create(owner, 'default', { agent: 'leaver', secret: 'GH_TOKEN', mode: 'read' });
    expect((await core.grants.vend(leaver, 'GH_TOKEN', 'default')).value).toBe('ghp_x');
    expect(await core.access.removeVaultAgent(owner, 'default', 'leaver')).toMatchObject({ revoked_grants: 1 });
    await core.access.addVaultAgent(owner, 'default', 'leaver');
    expect(await fails(core.grants.vend(leaver, 'GH_TOKEN', 'default'))).toMatchObject({ status: 403 });
    const [rev] = (await core.audit.query(core.store, { action: 'grant.revoke', limit: 1 })).items;
    expect(rev).toMatchObject({ target: 'secret:GH_TOKEN', details: { agent: 'leaver', reason: 'agent removed from the vault' } });
  });

  it('removing an agent revokes every grant it has there, past one page (1,000) of them', async () => {
    await core.vaults.create(owner, { name: 'many-grants' });
    await core.access.createAgent(owner, { name: 'hoarder', vaults: ['many-grants'] });
    const v = (await core.store.getVault('many-grants'))!;
    const a = (await core.store.getAgentByName('hoarder'))!;
    const now = new Date().toISOString();
    await core.store.tx(async (s) => {
      for (let i = 0; i < 1_050; i++) {
        await s.insertGrant({
          id: `g${String(i).padStart(23, '0')}`, vault_id: v.id, agent_id: a.id, kind: 'secret', target: `MANY_${i}`, mode: 'read', status: 'approved',
          reason: null, requested_by: 'system', decided_by: null, decided_at: null, decision_reason: null, expires_at: null, created_at: now,
        });
      }
    });
    expect(await core.access.removeVaultAgent(owner, 'many-grants', 'hoarder')).toMatchObject({ revoked_grants: 1_050 });
    expect((await core.store.listGrants({ vaultId: v.id, status: 'approved' })).length + (await core.store.listGrants({ vaultId: v.id, status: 'pending' })).length).toBe(0);
  }, 60_000);

  it('a revoked agent takes nothing new: revoking again, adding it to a vault, granting it, a session for it are 409', async () => {
    await core.access.createAgent(owner, { name: 'gone-bot', vaults: ['default'] });
    await core.access.revokeAgent(owner, 'gone-bot');
    const n = (await core.audit.query(core.store, { action: 'agent.revoke', limit: 1000 })).items.length;
    expect(await fails(core.access.revokeAgent(owner, 'gone-bot'))).toMatchObject({ status: 409, code: 'agent_revoked' });
    expect((await core.audit.query(core.store, { action: 'agent.revoke', limit: 1000 })).items.length).toBe(n);
    await core.vaults.create(owner, { name: 'gone-vault' });
    expect(await fails(core.access.addVaultAgent(owner, 'gone-vault', 'gone-bot'))).toMatchObject({ status: 409, code: 'agent_revoked' });
    expect(await fails(core.grants.create(owner, 'default', { agent: 'gone-bot', secret: 'GH_TOKEN', mode: 'read' }))).toMatchObject({ status: 409, field: 'agent' });
    expect(await fails(core.access.createSession(owner, { vault: 'default', agent: 'gone-bot' }))).toMatchObject({ status: 409 });
  });

  it('migrate moves a secret with every version to another vault, re-sealed there; audited secret.migrate; grants here revoked', async () => {
    await core.vaults.create(owner, { name: 'mig-to' });
    await core.secrets.put(owner, 'default', 'MIGRATING', { value: 'm-1' });
    await core.secrets.put(owner, 'default', 'MIGRATING', { value: 'm-2' });
    await core.grants.create(owner, 'default', { agent: 'svc-bot', secret: 'MIGRATING', mode: 'read' });
    expect(await fails(core.secrets.migrate(owner, 'default', 'MIGRATING', {}))).toMatchObject({ status: 400, field: 'to' });
    expect(await fails(core.secrets.migrate(owner, 'default', 'MIGRATING', { to: 'default' }))).toMatchObject({ status: 400, field: 'to' });
    expect(await fails(core.secrets.migrate(owner, 'default', 'MIGRATING', { to: 'no-such-vault' }))).toMatchObject({ status: 404, field: 'to' });
    expect(await fails(core.secrets.migrate(member, 'default', 'MIGRATING', { to: 'mig-to' }))).toMatchObject({ status: 403 });
    const m = await core.secrets.migrate(owner, 'default', 'MIGRATING', { to: 'mig-to' });
    expect(m).toMatchObject({ name: 'MIGRATING', vault: 'mig-to', from: 'default', version: 2, versions: 2, revoked_grants: 1 });
    expect((await core.secrets.read(owner, 'mig-to', 'MIGRATING')).value).toBe('m-2');
    expect((await core.secrets.read(owner, 'mig-to', 'MIGRATING', 1)).value).toBe('m-1');
    expect(await fails(core.secrets.read(owner, 'default', 'MIGRATING'))).toMatchObject({ status: 404 });
    // one event in each vault's log (its admins read their own vault's events)
    const evs = (await core.audit.query(core.store, { action: 'secret.migrate', limit: 2 })).items;
    expect(evs.map((e) => [e.vault, e.details.side])).toEqual(expect.arrayContaining([['default', 'out'], ['mig-to', 'in']]));
    expect(evs[0]).toMatchObject({ target: 'MIGRATING', details: { from: 'default', to: 'mig-to', versions: 2 } });
    // the audit's secret filter is exact, also in case (SQLite's LIKE is not)
    expect((await core.audit.query(core.store, { secret: 'migrating', limit: 10 })).items).toEqual([]);
    // a secret of that name in the target: 409, nothing moved
    await core.secrets.put(owner, 'default', 'MIGRATING', { value: 'again' });
    expect(await fails(core.secrets.migrate(owner, 'default', 'MIGRATING', { to: 'mig-to' }))).toMatchObject({ status: 409, field: 'to' });
    expect((await core.secrets.read(owner, 'default', 'MIGRATING')).value).toBe('again');
    expect((await core.secrets.read(owner, 'mig-to', 'MIGRATING')).value).toBe('m-2');
  });

  it('identical access requests at once make one pending grant (the others answer with it)', async () => {
    await core.secrets.put(owner, 'default', 'ASKED_ONCE', { value: 'x1' });
    const rs = await Promise.all(Array.from({ length: 8 }, () => core.grants.request(agent, 'default', { secret: 'ASKED_ONCE', mode: 'read', reason: 'deploy' })));
    expect(new Set(rs.map((r) => r.id)).size).toBe(1);
    expect(rs.filter((r) => !('duplicate' in r)).length).toBe(1);
    expect((await core.store.listGrants({ target: 'ASKED_ONCE', status: 'pending' })).length).toBe(1);
    expect((await core.audit.query(core.store, { action: 'grant.request', limit: 1000 })).items.filter((e) => e.target === 'secret:ASKED_ONCE').length).toBe(1);
    // once approved, asking again answers with the grant itself, not a new pending request
    await core.grants.approve(owner, 'default', rs[0]!.id, {});
    expect(await core.grants.request(agent, 'default', { secret: 'ASKED_ONCE', mode: 'read', reason: 'again' })).toMatchObject({ id: rs[0]!.id, status: 'approved', duplicate: true });
    expect((await core.store.listGrants({ target: 'ASKED_ONCE', status: 'pending' })).length).toBe(0);
  });

  it('a session ttl is seconds or a duration (10m, 1h, 7d), bounded', async () => {
    const s = await core.access.createSession(owner, { vault: 'default', agent: 'svc-bot', ttl: '1h' });
    expect(Math.abs(Date.parse(s.expires_at) - Date.now() - 3_600_000)).toBeLessThan(60_000);
    for (const ttl of ['1x', '8d', '1m', 'h', 10]) expect(await fails(core.access.createSession(owner, { vault: 'default', agent: 'svc-bot', ttl }))).toMatchObject({ status: 400, field: 'ttl' });
  });

  it('an agent lists credential and service names, nothing more', async () => {
    const secrets = await core.secrets.list(agent, 'default', {});
    expect(secrets.items.length).toBeGreaterThan(0);
    for (const it of secrets.items) expect(Object.keys(it).sort()).toEqual(['name', 'vault']);
    // nor can it probe descriptions or categories through the filters
    await core.secrets.put(owner, 'default', 'DESCRIBED', { value: 'd', description: 'the-hidden-words' });
    expect((await core.secrets.list(agent, 'default', { q: 'hidden-words' })).items).toEqual([]);
    expect((await core.secrets.list(owner, 'default', { q: 'hidden-words' })).items.map((x) => x.name)).toEqual(['DESCRIBED']);
    expect(await fails(core.secrets.list(agent, 'default', { category: 'custom' }))).toMatchObject({ status: 400, field: 'category' });
    expect(Object.keys((await core.secrets.list(owner, 'default', {})).items[0]!)).toContain('category');
    await core.services.create(owner, 'default', { name: 'names-only', host: 'api.names.test', auth: { type: 'bearer', key: 'GH_TOKEN' } });
    expect(await core.services.get(agent, 'default', 'names-only')).toEqual({ name: 'names-only', host: 'api.names.test', enabled: true });
    expect((await core.services.list(agent, 'default')).every((s) => !('auth' in s))).toBe(true);
  });

  it('an agent created with a vault named twice is refused, naming the repeat, and nothing is written', async () => {
    expect(await fails(core.access.createAgent(owner, { name: 'twice-bot', vaults: ['default', 'default'] }))).toMatchObject({ status: 400, field: 'vaults[1]' });
    expect(await core.store.getAgentByName('twice-bot')).toBeFalsy();
  });

  it('a transaction the database aborted for a deadlock is a 409 to retry, not a 500', async () => {
    const store = core.store as unknown as { tx: unknown };
    const tx = store.tx;
    store.tx = async () => {
      throw new TransactionConflict('40P01');
    };
    try {
      expect(await fails(core.secrets.put(owner, 'default', 'DEADLOCKED', { value: 'v' }))).toMatchObject({ status: 409, code: 'concurrent_update' });
    } finally {
      store.tx = tx;
    }
    expect(await core.store.getVaultSecretValueRow('default', 'DEADLOCKED')).toBeFalsy();
  });

  /** New vaults `fallback`, then `name` falling back to them in that order, with svc-bot a member of `name`. */
  async function chain(name: string, fallback: string[]): Promise<void> {
    for (const f of fallback) await core.vaults.create(owner, { name: f });
    await core.vaults.create(owner, { name, fallback });
    await core.access.addVaultAgent(owner, name, 'svc-bot');
  }

  it('deleting a secret revokes its grants (audited): a secret made again under the name is not vended', async () => {
    await core.secrets.put(owner, 'default', 'VEND_AGAIN', { value: 'v-again-1' });
    const g = await core.grants.create(owner, 'default', { agent: 'svc-bot', secret: 'VEND_AGAIN', mode: 'read' });
    expect((await core.grants.vend(agent, 'VEND_AGAIN', 'default')).value).toBe('v-again-1');
    expect(await core.secrets.delete(owner, 'default', 'VEND_AGAIN')).toMatchObject({ revoked_grants: 1 });
    const [rev] = (await core.audit.query(core.store, { action: 'grant.revoke', limit: 1 })).items;
    expect(rev).toMatchObject({ target: 'secret:VEND_AGAIN', details: { grant: g.id, agent: 'svc-bot', reason: 'secret deleted' } });
    await core.secrets.put(owner, 'default', 'VEND_AGAIN', { value: 'v-again-2' });
    expect(await fails(core.grants.vend(agent, 'VEND_AGAIN', 'default'))).toMatchObject({ status: 403 });
    // the audit's secret filter finds the grant's events as well as the secret's own
    const about = (await core.audit.query(core.store, { secret: 'VEND_AGAIN', limit: 50 })).items.map((e) => e.action);
    expect(about).toEqual(expect.arrayContaining(['secret.create', 'secret.delete', 'grant.approve', 'grant.revoke', 'secret.vend']));
    expect((await core.audit.query(core.store, { agent: 'svc-bot', limit: 200 })).items.map((e) => e.action)).toEqual(expect.arrayContaining(['grant.approve', 'grant.revoke', 'secret.vend']));
  });

  it('deleting a vault\'s own copy keeps the grants while the name still resolves through its fallback chain', async () => {
    await chain('tier-user', ['tier-platform']);
    await core.secrets.put(owner, 'tier-platform', 'TIERED_KEY', { value: 'platform-value' });
    await core.secrets.put(owner, 'tier-user', 'TIERED_KEY', { value: 'user-value' });
    await core.grants.create(owner, 'tier-user', { agent: 'svc-bot', secret: 'TIERED_KEY', mode: 'read' });
    expect((await core.grants.vend(agent, 'TIERED_KEY', 'tier-user')).value).toBe('user-value');
    expect(await core.secrets.delete(owner, 'tier-user', 'TIERED_KEY')).toMatchObject({ revoked_grants: 0 });
    expect((await core.grants.vend(agent, 'TIERED_KEY', 'tier-user')).value).toBe('platform-value');
  });

  it('deleting a secret revokes the grants of the vaults that reached it through their fallback chain, unless it still resolves there', async () => {
    await chain('chain-a', ['chain-b']);
    await core.vaults.create(owner, { name: 'chain-c', fallback: ['chain-b'] });
    await core.access.addVaultAgent(owner, 'chain-c', 'svc-bot');
    await core.secrets.put(owner, 'chain-b', 'CHAIN_KEY', { value: 'from-b' });
    await core.secrets.put(owner, 'chain-c', 'CHAIN_KEY', { value: 'own-c' }); // chain-c has its own
    const ga = await core.grants.create(owner, 'chain-a', { agent: 'svc-bot', secret: 'CHAIN_KEY', mode: 'read' });
    await core.grants.create(owner, 'chain-c', { agent: 'svc-bot', secret: 'CHAIN_KEY', mode: 'read' });
    expect((await core.grants.vend(agent, 'CHAIN_KEY', 'chain-a')).value).toBe('from-b');
    expect(await core.secrets.delete(owner, 'chain-b', 'CHAIN_KEY')).toMatchObject({ revoked_grants: 1 });
    const [rev] = (await core.audit.query(core.store, { action: 'grant.revoke', limit: 1 })).items;
    expect(rev).toMatchObject({ vault: 'chain-a', details: { grant: ga.id, reason: 'secret deleted' } });
    // a secret made again under the name is not vended through the old grant; chain-c's grant lives on
    await core.secrets.put(owner, 'chain-b', 'CHAIN_KEY', { value: 'from-b-again' });
    expect(await fails(core.grants.vend(agent, 'CHAIN_KEY', 'chain-a'))).toMatchObject({ status: 403 });
    expect((await core.grants.vend(agent, 'CHAIN_KEY', 'chain-c')).value).toBe('own-c');
  });

  it.runIf(ctx.backend === 'postgres')('RACE: the name deleted at once from both vaults of a chain: the grant of the vault that reached them is revoked, every time', async () => {
    await chain('both-a', ['both-b1', 'both-b2']);
    for (let i = 0; i < 8; i++) {
      const key = `BOTH_KEY_${i}`;
      await core.secrets.put(owner, 'both-b1', key, { value: 'one' });
      await core.secrets.put(owner, 'both-b2', key, { value: 'two' });
      const g = await core.grants.create(owner, 'both-a', { agent: 'svc-bot', secret: key, mode: 'read' });
      const [r1, r2] = await Promise.all([core.secrets.delete(owner, 'both-b1', key), core.secrets.delete(owner, 'both-b2', key)]);
      expect(r1.revoked_grants + r2.revoked_grants, key).toBe(1);
      expect((await core.store.getGrant(g.id))?.status, key).toBe('revoked');
    }
  });

  it('a shorter fallback chain revokes the grants on names that no longer resolve, and keeps the others', async () => {
    await chain('short-a', ['short-b']);
    await core.secrets.put(owner, 'short-b', 'SHORT_GONE', { value: 'from-b' });
    await core.secrets.put(owner, 'short-a', 'SHORT_OWN', { value: 'own' });
    const gone = await core.grants.create(owner, 'short-a', { agent: 'svc-bot', secret: 'SHORT_GONE', mode: 'read' });
    const own = await core.grants.create(owner, 'short-a', { agent: 'svc-bot', secret: 'SHORT_OWN', mode: 'read' });
    expect((await core.grants.vend(agent, 'SHORT_GONE', 'short-a')).value).toBe('from-b');
    await core.vaults.update(owner, 'short-a', { description: 'no chain change' });
    expect((await core.store.getGrant(gone.id))?.status).toBe('approved');
    await core.vaults.update(owner, 'short-a', { fallback: [] });
    expect((await core.store.getGrant(gone.id))?.status).toBe('revoked');
    expect((await core.store.getGrant(own.id))?.status).toBe('approved');
    const [rev] = (await core.audit.query(core.store, { action: 'grant.revoke', limit: 1 })).items;
    expect(rev).toMatchObject({ vault: 'short-a', details: { grant: gone.id, reason: 'fallback chain changed' } });
    // the chain back: the old grant does not come back with it
    await core.vaults.update(owner, 'short-a', { fallback: ['short-b'] });
    expect(await fails(core.grants.vend(agent, 'SHORT_GONE', 'short-a'))).toMatchObject({ status: 403 });
    expect((await core.grants.vend(agent, 'SHORT_OWN', 'short-a')).value).toBe('own');
  });

  it('a vend under a live grant of a secret that is gone (removed behind its back, as in a race) answers 404 and is audited (outcome error)', async () => {
    await core.vaults.create(owner, { name: 'vend-a' });
    await core.access.addVaultAgent(owner, 'vend-a', 'svc-bot');
    await core.secrets.put(owner, 'vend-a', 'VEND_GONE', { value: 'v-gone-1' });
    const g = await core.grants.create(owner, 'vend-a', { agent: 'svc-bot', secret: 'VEND_GONE', mode: 'read' });
    expect((await core.grants.vend(agent, 'VEND_GONE', 'vend-a')).value).toBe('v-gone-1');
    const raw = await openRaw(ctx);
    try {
      const [row] = await raw.all("select s.id from secrets s join vaults v on v.id = s.vault_id where v.name = 'vend-a' and s.name = 'VEND_GONE'");
      await raw.run('delete from secret_versions where secret_id = ?', [row!.id]);
      await raw.run('delete from secrets where id = ?', [row!.id]);
    } finally {
      await raw.close();
    }
    expect(await fails(core.grants.vend(agent, 'VEND_GONE', 'vend-a'))).toMatchObject({ status: 404 });
    const [last] = (await core.audit.query(core.store, { action: 'secret.vend', limit: 1 })).items;
    expect(last).toMatchObject({ actor: 'agent:svc-bot', target: 'VEND_GONE', outcome: 'error', details: { grant: g.id, reason: 'secret_not_found' } });
  });

  it('an expiry past the year 9999 is refused with 400 naming its field (it would compare as already past), writing nothing', async () => {
    const tokensBefore = (await core.auth.listApiTokens(owner)).length;
    for (const ttl of [300_000_000_000, Number.MAX_SAFE_INTEGER]) {
      expect(await fails(core.auth.createApiToken(owner, 'far', ttl))).toMatchObject({ status: 400, field: 'ttl' });
    }
    expect((await core.auth.listApiTokens(owner)).length).toBe(tokensBefore);
    for (const expires of ['10000-01-01', '+275760-09-13T00:00:00Z']) {
      expect(await fails(core.grants.create(owner, 'default', { agent: 'svc-bot', secret: 'STRIPE_KEY', mode: 'read', expires }))).toMatchObject({ status: 400, field: 'expires' });
    }
    // the latest allowed expiry is a live grant, not an expired one
    const g = await core.grants.create(owner, 'default', { agent: 'svc-bot', secret: 'GH_TOKEN', mode: 'read', expires: '9999-12-31T00:00:00Z' });
    expect(g).toMatchObject({ expires_at: '9999-12-31T00:00:00.000Z' });
    expect((await core.grants.list(owner, 'default', {})).find((x: { id: string }) => x.id === g.id)).toMatchObject({ status: 'approved' });
  });

  it('creates, lists, gets, replaces (PUT semantics) and deletes, audited', async () => {
    const created = await core.services.create(owner, 'default', {
      name: 'stripe', host: 'api.stripe.com', auth: { type: 'bearer', key: 'STRIPE_KEY' }, methods: ['GET', 'POST'], quota_per_minute: 600, description: 'Stripe',
    });
    expect(created).toMatchObject({ name: 'stripe', host: 'api.stripe.com', methods: ['GET', 'POST'], quota_per_minute: 600, enabled: true });
    expect((await core.services.list(owner, 'default')).map((s) => s.name)).toContain('stripe');
    expect(await core.services.get(member, 'default', 'stripe')).toMatchObject({ auth: { type: 'bearer', key: 'STRIPE_KEY' } });

    const dup = await fails(core.services.create(owner, 'default', { name: 'stripe', host: 'api.stripe.com', auth: { type: 'bearer', key: 'STRIPE_KEY' } }));
    expect(dup).toMatchObject({ status: 409, code: 'service_exists' });

    // PUT replaces: absent optional fields go back to their defaults
    const put = await core.services.set(owner, 'default', 'stripe', { host: 'api.stripe.com/v1', auth: { type: 'header', name: 'X-Api-Key', key: 'STRIPE_KEY' }, enabled: false });
    expect(put.created).toBe(false);
    expect(put.service).toMatchObject({ host: 'api.stripe.com/v1', methods: [], quota_per_minute: null, enabled: false, description: null });
    const row = await core.store.getService((await core.vaults.require('default')).id, 'stripe');
    expect(row).toMatchObject({ host: 'api.stripe.com', path_prefix: '/v1', port: null, enabled: 0 });

    const again = await core.services.set(owner, 'default', 'github', { host: '*.github.com', auth: { type: 'bearer', key: 'GH_TOKEN' } });
    expect(again.created).toBe(true);

    const sets = (await core.store.queryAudit({ action: 'service.set', limit: 10 })).map((r) => ({ target: r.target, details: JSON.parse(r.details) }));
    expect(sets.find((e) => e.target === 'stripe' && e.details.created === false)?.details.changed).toEqual(expect.arrayContaining(['host', 'auth', 'methods', 'enabled']));

    expect(await core.services.delete(owner, 'default', 'github')).toMatchObject({ deleted: 'github' });
    expect(await fails(core.services.get(owner, 'default', 'github'))).toMatchObject({ status: 404 });
    expect(await fails(core.services.delete(owner, 'default', 'github'))).toMatchObject({ status: 404 });
    expect((await core.store.queryAudit({ action: 'service.delete', limit: 5 }))[0]).toMatchObject({ target: 'github', outcome: 'ok' });
  });

  it('refuses a rule whose credential does not exist (400 naming the field); the fallback chain counts', async () => {
    const e = await fails(core.services.create(owner, 'default', { name: 'openai', host: 'api.openai.com', auth: { type: 'bearer', key: 'OPENAI_KEY' } }));
    expect(e).toMatchObject({ status: 400, code: 'credential_not_found', field: 'auth.key' });
    const e2 = await fails(core.services.create(owner, 'default', { name: 'basic', host: 'api.x.com', auth: { type: 'basic', username_key: 'STRIPE_KEY', password_key: 'NOPE' } }));
    expect(e2.field).toBe('auth.password_key');
    const e3 = await fails(core.services.create(owner, 'default', { name: 'tpl', host: 'api.x.com', auth: { type: 'template', headers: { 'X-A': '{{ STRIPE_KEY }}:{{ NOPE }}' } } }));
    expect(e3.field).toBe('auth.headers.X-A');
    expect(await core.services.get(owner, 'default', 'openai').catch((x: LatchkeyError) => x.status)).toBe(404);

    await core.vaults.create(owner, { name: 'platform' });
    await core.secrets.put(owner, 'platform', 'OPENAI_KEY', { value: 'sk-platform' });
    await core.vaults.create(owner, { name: 'user-tier', fallback: ['platform'] });
    expect(await core.services.create(owner, 'user-tier', { name: 'openai', host: 'api.openai.com', auth: { type: 'bearer', key: 'OPENAI_KEY' } })).toMatchObject({ name: 'openai' });
  });

  it('rejects invalid specs with the failing field', async () => {
    const base = { name: 'x', host: 'api.x.com', auth: { type: 'bearer', key: 'STRIPE_KEY' } };
    for (const [over, field] of [
      [{ host: 'https://api.x.com' }, 'host'], [{ host: '*.com' }, 'host'], [{ name: 'Bad Name' }, 'name'], [{ quota_per_minute: 100_001 }, 'quota_per_minute'],
      [{ auth: { type: 'header', name: 'Host', key: 'STRIPE_KEY' } }, 'auth.name'], [{ methods: ['GE T'] }, 'methods[0]'], [{ enabled: 'yes' }, 'enabled'],
      [{ surprise: 1 }, 'surprise'],
    ] as Array<[Record<string, unknown>, string]>) {
      expect((await fails(core.services.create(owner, 'default', { ...base, ...over }))).field, JSON.stringify(over)).toBe(field);
    }
  });

  it('agents and members list; only admins manage (denials audited)', async () => {
    expect((await core.services.list(agent, 'default')).length).toBeGreaterThan(0);
    expect((await core.services.list(member, 'default')).length).toBeGreaterThan(0);
    const e = await fails(core.services.set(agent, 'default', 'evil', { host: 'evil.example.com', auth: { type: 'bearer', key: 'STRIPE_KEY' } }));
    expect(e.status).toBe(403);
    expect((await fails(core.services.delete(member, 'default', 'stripe'))).status).toBe(403);
    const denials = await core.store.queryAudit({ action: 'service.set', outcome: 'denied', limit: 10 });
    expect(denials.map((r) => r.actor)).toEqual(expect.arrayContaining(['agent:svc-bot', 'user:member@example.test']));
    expect(await fails(core.services.list(agent, 'platform'))).toMatchObject({ status: 403 });
  });

  it('deleting a service revokes the grants to use it', async () => {
    await core.services.set(owner, 'default', 'gh2', { host: 'api.github.com', auth: { type: 'bearer', key: 'GH_TOKEN' } });
    const g = await core.grants.create(owner, 'default', { agent: 'svc-bot', service: 'gh2', mode: 'use' });
    expect(g.status).toBe('approved');
    const r = await core.services.delete(owner, 'default', 'gh2');
    expect(r.revoked_grants).toBe(1);
    expect((await core.store.getGrant(g.id))?.status).toBe('revoked');
    // a new service of the same name starts with no grant
    await core.services.set(owner, 'default', 'gh2', { host: 'evil.example.com', auth: { type: 'bearer', key: 'GH_TOKEN' } });
    const vault = await core.vaults.require('default');
    expect(await core.store.findActiveGrant(vault.id, agent.principal.kind === 'agent' ? agent.principal.id : '', 'service', 'gh2', ['use'], new Date().toISOString())).toBeNull();
  });

  it('no audit row or error carries a credential value', async () => {
    const rows = await core.store.queryAudit({ limit: 1000 });
    const text = JSON.stringify(rows);
    for (const v of ['sk_test_abc', 'ghp_x', 'sk-platform']) expect(text).not.toContain(v);
  });
});
