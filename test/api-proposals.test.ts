/**
 * Proposals and services over HTTP through the real server: an agent proposes, the approval link
 * reads without auth, a person approves with values, the agent then holds a `use` grant.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../src/server/start.js';
import { describeBackends } from './helpers/backends.js';

const MASTER = '9d'.repeat(32);
const PERSON_VALUE = 'sk_live_typed_by_person_88';
const AGENT_VALUE = 'gen_token_from_agent_77';

describeBackends('proposals API', (ctx) => {
  let server: RunningServer;
  let ownerToken: string;
  let agentToken: string;

  async function call(method: string, path: string, opts: { token?: string | null; body?: unknown } = {}) {
    const headers: Record<string, string> = {};
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(server.url + path, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
    const text = await res.text();
    return { status: res.status, type: res.headers.get('content-type') ?? '', text, json: text ? JSON.parse(text) : null };
  }

  beforeAll(async () => {
    server = await startServer({
      home: ctx.home, databaseUrl: ctx.databaseUrl, host: '127.0.0.1', port: 0, proxyPort: 0, logLevel: 'silent', env: { LATCHKEY_MASTER_KEY: MASTER },
    });
    ownerToken = server.initialized!.ownerToken;
    const a = await call('POST', '/v1/agents', { token: ownerToken, body: { name: 'api-bot', vaults: ['default'] } });
    expect(a.status).toBe(201);
    agentToken = a.json.token;
  });

  afterAll(async () => {
    await server?.close();
  });

  it('approval URLs: absolute under a public URL with a path; relative when the server listens on every address', async () => {
    for (const [extra, expected] of [
      [{ host: '127.0.0.1', publicUrl: 'https://vault.example.com/lk' }, /^https:\/\/vault\.example\.com\/lk\/approve\?token=lk_appr_/],
      [{ host: '0.0.0.0' }, /^\/approve\?token=lk_appr_/],
    ] as const) {
      const db = await ctx.freshDatabase();
      const s = await startServer({ home: db.home, databaseUrl: db.databaseUrl, port: 0, proxyPort: 0, logLevel: 'silent', env: { LATCHKEY_MASTER_KEY: MASTER }, ...extra });
      try {
        const base = s.url.replace('0.0.0.0', '127.0.0.1');
        const post = async (path: string, token: string, body: unknown): Promise<any> => (await fetch(base + path, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })).json();
        const a = await post('/v1/agents', s.initialized!.ownerToken, { name: 'url-bot', vaults: ['default'] });
        const p = await post('/v1/vaults/default/proposals', a.token, { message: 'url test', credentials: [{ action: 'set', key: 'URL_KEY', description: 'k' }] });
        expect(p.approval_url).toMatch(expected);
      } finally {
        await s.close(); // the database goes with this block's afterAll
      }
    }
  });

  it('services over HTTP: create, list, PUT, validation with the field, 409, delete', async () => {
    expect((await call('PUT', '/v1/vaults/default/secrets/GH_TOKEN', { token: ownerToken, body: { value: 'ghp_abc' } })).status).toBe(201);
    const c = await call('POST', '/v1/vaults/default/services', { token: ownerToken, body: { name: 'github', host: '*.github.com', auth: { type: 'bearer', key: 'GH_TOKEN' } } });
    expect(c.status).toBe(201);
    expect(c.json).toMatchObject({ name: 'github', host: '*.github.com', enabled: true });
    expect((await call('POST', '/v1/vaults/default/services', { token: ownerToken, body: { name: 'github', host: 'x.com', auth: { type: 'bearer', key: 'GH_TOKEN' } } })).status).toBe(409);
    const missing = await call('POST', '/v1/vaults/default/services', { token: ownerToken, body: { name: 'nope', host: 'x.com', auth: { type: 'bearer', key: 'MISSING_KEY' } } });
    expect(missing).toMatchObject({ status: 400, json: { code: 'credential_not_found', field: 'auth.key' } });
    expect(missing.type).toContain('application/problem+json');
    const unknown = await call('POST', '/v1/vaults/default/services', { token: ownerToken, body: { name: 'x', host: 'x.com', auth: { type: 'bearer', key: 'GH_TOKEN' }, extra: 1 } });
    expect(unknown).toMatchObject({ status: 400, json: { field: 'extra' } });
    const put = await call('PUT', '/v1/vaults/default/services/github', { token: ownerToken, body: { host: 'api.github.com', auth: { type: 'header', name: 'Authorization', key: 'GH_TOKEN', prefix: 'token ' }, methods: ['GET'] } });
    expect(put).toMatchObject({ status: 200, json: { host: 'api.github.com', methods: ['GET'] } });
    const list = await call('GET', '/v1/vaults/default/services', { token: agentToken });
    expect(list.status).toBe(200);
    expect(list.json.items.map((s: { name: string }) => s.name)).toContain('github');
    expect((await call('PUT', '/v1/vaults/default/services/evil', { token: agentToken, body: { host: 'evil.com', auth: { type: 'bearer', key: 'GH_TOKEN' } } })).status).toBe(403);
    expect((await call('DELETE', '/v1/vaults/default/services/github', { token: ownerToken })).status).toBe(200);
    expect((await call('GET', '/v1/vaults/default/services/github', { token: ownerToken })).status).toBe(404);
  });

  it('agent proposes -> approval link without auth -> person approves with values -> agent holds a use grant', async () => {
    const created = await call('POST', '/v1/vaults/default/proposals', {
      token: agentToken,
      body: {
        message: 'I need Stripe',
        services: [{ name: 'stripe', host: 'api.stripe.com', auth: { type: 'bearer', key: 'STRIPE_KEY' }, methods: ['GET', 'POST'] }],
        credentials: [
          { action: 'set', key: 'STRIPE_KEY', description: 'Stripe API key', obtain: 'https://dashboard.stripe.com/apikeys', obtain_instructions: 'Developers > API Keys > Reveal test key' },
          { action: 'set', key: 'GENERATED_TOKEN', description: 'Token generated during setup', value: AGENT_VALUE },
        ],
      },
    });
    expect(created.status).toBe(201);
    // an absolute URL under the server's public address (here: where it listens)
    expect(created.json).toMatchObject({ status: 'pending', approval_url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/approve\?token=lk_appr_/) });
    expect(created.json.approval_url.startsWith(`${server.url}/approve?token=`)).toBe(true);
    const token = new URL(created.json.approval_url, server.url).searchParams.get('token')!;
    const id = created.json.id as string;

    // the approval link needs no auth, shows no values
    const view = await call('GET', `/v1/proposals/approval?token=${encodeURIComponent(token)}`);
    expect(view.status).toBe(200);
    expect(view.text).not.toContain(AGENT_VALUE);
    expect(view.json).toMatchObject({ id, status: 'pending', agent: 'api-bot', message: 'I need Stripe' });
    expect(view.json.services[0]).toMatchObject({ name: 'stripe', change: 'add' });
    expect(view.json.credentials).toEqual(expect.arrayContaining([
      expect.objectContaining({ key: 'STRIPE_KEY', missing_value: true, has_value: false }),
      expect.objectContaining({ key: 'GENERATED_TOKEN', has_value: true, missing_value: false }),
    ]));
    expect((await call('GET', '/v1/proposals/approval?token=lk_appr_' + 'A'.repeat(43))).status).toBe(404);
    expect((await call('GET', '/v1/proposals/approval')).status).toBe(400);
    // the approval token is not an API token
    expect((await call('GET', '/v1/vaults/default/proposals', { token })).status).toBe(401);

    // people cannot propose; the agent cannot approve; a value is required for STRIPE_KEY
    expect((await call('POST', '/v1/vaults/default/proposals', { token: ownerToken, body: { credentials: [{ action: 'set', key: 'X_KEY' }] } })).status).toBe(403);
    expect((await call('POST', `/v1/vaults/default/proposals/${id}/approve`, { token: agentToken, body: {} })).status).toBe(403);
    const noValue = await call('POST', `/v1/vaults/default/proposals/${id}/approve`, { token: ownerToken, body: {} });
    expect(noValue).toMatchObject({ status: 400, json: { field: 'credentials.STRIPE_KEY' } });

    const approved = await call('POST', `/v1/vaults/default/proposals/${id}/approve`, { token: ownerToken, body: { credentials: { STRIPE_KEY: PERSON_VALUE } } });
    expect(approved.status).toBe(200);
    expect(approved.json).toMatchObject({ id, status: 'approved' });
    expect(approved.text).not.toContain(PERSON_VALUE);
    expect((await call('POST', `/v1/vaults/default/proposals/${id}/approve`, { token: ownerToken, body: {} })).json).toMatchObject({ code: 'proposal_decided' });

    // the agent now holds an approved use grant on the service
    const grants = await call('GET', '/v1/vaults/default/grants', { token: agentToken });
    expect(grants.status).toBe(200);
    expect(grants.json.items).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'service', service: 'stripe', mode: 'use', status: 'approved', agent: 'api-bot' })]));
    // the values are stored, the service exists
    expect((await call('GET', '/v1/vaults/default/secrets/STRIPE_KEY/value', { token: ownerToken })).json.value).toBe(PERSON_VALUE);
    expect((await call('GET', '/v1/vaults/default/secrets/GENERATED_TOKEN/value', { token: ownerToken })).json.value).toBe(AGENT_VALUE);
    expect((await call('GET', '/v1/vaults/default/services/stripe', { token: agentToken })).json).toMatchObject({ host: 'api.stripe.com' });

    // lists and reads
    const mine = await call('GET', '/v1/vaults/default/proposals?status=approved', { token: agentToken });
    expect(mine.json.items.map((p: { id: string }) => p.id)).toContain(id);
    expect((await call('GET', `/v1/vaults/default/proposals/${id}`, { token: ownerToken })).json).toMatchObject({ id, status: 'approved' });
    expect((await call('GET', '/v1/vaults/default/proposals?status=bogus', { token: ownerToken })).status).toBe(400);

    // no value anywhere in the audit log
    const audit = await call('GET', '/v1/audit?limit=500', { token: ownerToken });
    expect(audit.status).toBe(200);
    expect(audit.text).not.toContain(PERSON_VALUE);
    expect(audit.text).not.toContain(AGENT_VALUE);
  });

  it('reject over HTTP, and 400s for bodies over the limits', async () => {
    const created = await call('POST', '/v1/vaults/default/proposals', { token: agentToken, body: { credentials: [{ action: 'set', key: 'REJECT_ME' }] } });
    const rej = await call('POST', `/v1/vaults/default/proposals/${created.json.id}/reject`, { token: ownerToken, body: { reason: 'no' } });
    expect(rej).toMatchObject({ status: 200, json: { status: 'rejected', decision_reason: 'no' } });
    const many = await call('POST', '/v1/vaults/default/proposals', { token: agentToken, body: { credentials: Array.from({ length: 51 }, (_, i) => ({ action: 'set', key: `K_${i}` })) } });
    expect(many).toMatchObject({ status: 400, json: { field: 'credentials' } });
    const empty = await call('POST', '/v1/vaults/default/proposals', { token: agentToken, body: {} });
    expect(empty).toMatchObject({ status: 400, json: { field: 'services' } });
    // 50 slots of 64 KiB fit the route's body limit
    const big = await call('POST', '/v1/vaults/default/proposals', {
      token: agentToken, body: { credentials: Array.from({ length: 50 }, (_, i) => ({ action: 'set', key: `BIG_${i}`, value: 'x'.repeat(65536) })) },
    });
    expect(big.status).toBe(201);
  });
});
