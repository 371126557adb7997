/**
 * core.proposals on SQLite and PostgreSQL: agents propose, people review (no values, diff,
 * new-host warnings) and approve in one transaction, exactly once (also across two replicas).
 */
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { openCore } from '../src/core/bootstrap.js';
import type { Core } from '../src/core/core.js';
import { LatchkeyError } from '../src/core/errors.js';
import type { OpContext } from '../src/core/principal.js';
import { mintToken } from '../src/crypto/tokens.js';
import { blobKekVersion } from '../src/crypto/keyring.js';
import { InstanceCa } from '../src/proxy/ca.js';
import { describeBackends } from './helpers/backends.js';
import { openRaw } from './helpers/raw-sql.js';

const MASTER = '5a'.repeat(32);
const AGENT_VALUE = 'tok_agent_generated_7f3a9';
const PERSON_VALUE = 'sk_live_person_typed_4411';

async function fails(p: Promise<unknown>): Promise<LatchkeyError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof LatchkeyError) return e;
    throw e;
  }
  throw new Error('expected a LatchkeyError');
}

const tokenOf = (url: string) => new URL(url, 'http://x').searchParams.get('token')!;

describeBackends('core.proposals', (ctx) => {
  let core: Core;
  let ownerToken: string;
  let owner: OpContext;
  let agent: OpContext;
  let other: OpContext;
  let n = 0;

  const asCtx = async (c: Core, token: string): Promise<OpContext> => ({ principal: await c.auth.authenticate(token), ip: '127.0.0.1', requestId: null });
  const agentId = (c: OpContext) => (c.principal.kind === 'agent' ? c.principal.id : '');
  const vaultId = async () => (await core.vaults.require('default')).id;
  const uniq = (p: string) => `${p}${++n}`;

  beforeAll(async () => {
    const opened = await openCore({ home: ctx.home, databaseUrl: ctx.databaseUrl, allowInit: true, env: { LATCHKEY_MASTER_KEY: MASTER } });
    core = opened.core;
    ownerToken = opened.initialized!.ownerToken;
    owner = await asCtx(core, ownerToken);
    agent = await asCtx(core, (await core.access.createAgent(owner, { name: 'proposer', vaults: ['default'] })).token);
    other = await asCtx(core, (await core.access.createAgent(owner, { name: 'other-bot', vaults: ['default'] })).token);
    await core.secrets.put(owner, 'default', 'STRIPE_KEY', { value: 'sk_test_existing_0001' });
    await core.secrets.put(owner, 'default', 'OLD_API_KEY', { value: 'old_value_0002' });
    await core.services.create(owner, 'default', { name: 'stripe', host: 'api.stripe.com', auth: { type: 'bearer', key: 'STRIPE_KEY' }, methods: ['GET'] });
  });

  afterAll(async () => {
    await core?.close();
  });

  it('an agent proposes: pending, approval URL with an lk_appr_ token stored only as its hash, values sealed', async () => {
    const r = await core.proposals.create(agent, 'default', {
      message: 'I need Stripe and a token I generated',
      services: [{ name: 'generated', host: 'api.generated.example', auth: { type: 'bearer', key: 'GENERATED_TOKEN' } }],
      credentials: [
        { action: 'set', key: 'GENERATED_TOKEN', description: 'Token generated during setup', value: AGENT_VALUE },
        { action: 'set', key: 'NEW_STRIPE', description: 'Stripe API key', obtain: 'https://dashboard.stripe.com/apikeys', obtain_instructions: 'Developers > API Keys' },
      ],
    });
    expect(r.status).toBe('pending');
    expect(r.approval_url).toMatch(/^\/approve\?token=lk_appr_[A-Za-z0-9_-]{43}$/);
    const now = Date.now();
    expect(Date.parse(r.approval_expires_at) - now).toBeGreaterThan(23.9 * 3600_000);
    expect(Date.parse(r.approval_expires_at) - now).toBeLessThanOrEqual(24 * 3600_000);
    expect(Date.parse(r.expires_at) - now).toBeGreaterThan(6.99 * 86400_000);

    const row = (await core.store.getProposal(r.id))!;
    const token = tokenOf(r.approval_url);
    expect(row.approval_hash).toBe(core.keyring.tokenHash(token));
    expect(row.approval_hash).not.toContain(token);
    expect(row.sealed_values).toBeTruthy();
    expect(Buffer.from(row.sealed_values!).includes(Buffer.from(AGENT_VALUE))).toBe(false);
    const { sealed_values: _sealed, ...rest } = row;
    expect(JSON.stringify(rest)).not.toContain(AGENT_VALUE);
    expect(JSON.parse(row.credentials)[0]).toMatchObject({ key: 'GENERATED_TOKEN', has_value: true });
    const ev = (await core.store.queryAudit({ action: 'proposal.create', target: r.id, limit: 1 }))[0]!;
    expect(ev.actor).toBe('agent:proposer');
    expect(ev.details).not.toContain(AGENT_VALUE);
  });

  it('people cannot propose (403, audited)', async () => {
    const e = await fails(core.proposals.create(owner, 'default', { credentials: [{ action: 'set', key: 'X_KEY' }] }));
    expect(e.status).toBe(403);
    expect((await core.store.queryAudit({ action: 'proposal.create', outcome: 'denied', limit: 1 }))[0]?.actor).toMatch(/^user:/);
  });

  it('enforces the limits and references with 400s naming the field', async () => {
    const svc = (i: number) => ({ name: `s${i}`, host: `s${i}.example.com`, auth: { type: 'bearer', key: 'STRIPE_KEY' } });
    const cases: Array<[Record<string, unknown>, string]> = [
      [{}, 'services'],
      [{ services: [], credentials: [] }, 'services'],
      [{ services: Array.from({ length: 21 }, (_, i) => svc(i)) }, 'services'],
      [{ credentials: Array.from({ length: 51 }, (_, i) => ({ action: 'set', key: `K_${i}` })) }, 'credentials'],
      [{ message: 'm'.repeat(4001), credentials: [{ action: 'set', key: 'A_KEY' }] }, 'message'],
      [{ credentials: [{ action: 'set', key: 'A_KEY', description: 'd'.repeat(1025) }] }, 'credentials[0].description'],
      [{ credentials: [{ action: 'set', key: 'A_KEY', obtain_instructions: 'i'.repeat(4001) }] }, 'credentials[0].obtain_instructions'],
      [{ credentials: [{ action: 'set', key: 'A_KEY', value: 'v'.repeat(65537) }] }, 'credentials[0].value'],
      [{ credentials: [{ action: 'set', key: 'A_KEY', value: 'é'.repeat(40000) }] }, 'credentials[0].value'],
      [{ credentials: [{ action: 'set', key: 'lower_case' }] }, 'credentials[0].key'],
      [{ credentials: [{ action: 'upsert', key: 'A_KEY' }] }, 'credentials[0].action'],
      [{ credentials: [{ action: 'set', key: 'A_KEY', obtain: 'http://example.com' }] }, 'credentials[0].obtain'],
      [{ credentials: [{ action: 'set', key: 'A_KEY' }, { action: 'set', key: 'A_KEY' }] }, 'credentials[1].key'],
      [{ credentials: [{ action: 'delete', key: 'NOT_THERE' }] }, 'credentials[0].key'],
      [{ credentials: [{ action: 'delete', key: 'OLD_API_KEY', value: 'x' }] }, 'credentials[0].value'],
      [{ services: [{ name: 'x', host: 'x.example.com', auth: { type: 'bearer', key: 'UNKNOWN_KEY' } }] }, 'services[0].auth.key'],
      [{ services: [{ name: 'x', host: 'x.example.com', auth: { type: 'bearer', key: 'OLD_API_KEY' } }], credentials: [{ action: 'delete', key: 'OLD_API_KEY' }] }, 'services[0].auth.key'],
      [{ services: [svc(1), svc(1)] }, 'services[1].name'],
      [{ services: [{ ...svc(1), host: '*.com' }] }, 'services[0].host'],
      [{ credentials: [{ action: 'set', key: 'A_KEY', extra: true }] }, 'credentials[0].extra'],
    ];
    for (const [body, field] of cases) {
      const e = await fails(core.proposals.create(agent, 'default', body));
      expect({ status: e.status, field: e.field }, JSON.stringify(body).slice(0, 120)).toEqual({ status: 400, field });
      expect(e.message).not.toContain('vvvv');
    }
    // at the limits it is fine
    const ok = await core.proposals.create(agent, 'default', {
      message: 'm'.repeat(4000), services: Array.from({ length: 20 }, (_, i) => svc(i)),
      credentials: [{ action: 'set', key: 'MAX_VALUE', value: 'v'.repeat(65536), description: 'd'.repeat(1024), obtain_instructions: 'i'.repeat(4000) }],
    });
    expect(ok.status).toBe('pending');
  });

  it('the approval view: no values, a diff against current services, missing values, new-host warnings', async () => {
    const r = await core.proposals.create(agent, 'default', {
      message: 'move stripe, add an API',
      services: [
        { name: 'stripe', host: 'stripe-proxy.evil.example', auth: { type: 'bearer', key: 'STRIPE_KEY' }, methods: ['GET'] },
        { name: 'newapi', host: 'api.new.example', auth: { type: 'header', name: 'X-Api-Key', key: 'NEW_API_KEY' } },
        { name: 'stripe-same', host: 'api.stripe.com/v2', auth: { type: 'bearer', key: 'STRIPE_KEY' } },
      ],
      credentials: [
        { action: 'set', key: 'NEW_API_KEY', description: 'key for the new API', obtain: 'https://new.example/keys' },
        { action: 'set', key: 'AGENT_MADE', value: AGENT_VALUE },
        { action: 'set', key: 'STRIPE_KEY' },
        { action: 'delete', key: 'OLD_API_KEY' },
      ],
    });
    const view = await core.proposals.getByApprovalToken(tokenOf(r.approval_url));
    expect(JSON.stringify(view)).not.toContain(AGENT_VALUE);
    expect(view).toMatchObject({ id: r.id, status: 'pending', agent: 'proposer', message: 'move stripe, add an API', vault: 'default' });
    const byName = Object.fromEntries(view.services.map((s) => [s.name, s]));
    expect(byName.stripe).toMatchObject({ change: 'update', changes: { host: { from: 'api.stripe.com', to: 'stripe-proxy.evil.example' } } });
    expect(Object.keys((byName.stripe as { changes: object }).changes)).toEqual(['host']);
    expect(byName.newapi).toMatchObject({ change: 'add' });
    const slots = Object.fromEntries(view.credentials.map((c) => [c.key, c]));
    expect(slots.NEW_API_KEY).toMatchObject({ action: 'set', has_value: false, exists: false, missing_value: true, obtain: 'https://new.example/keys' });
    expect(slots.AGENT_MADE).toMatchObject({ has_value: true, missing_value: false });
    expect(slots.STRIPE_KEY).toMatchObject({ has_value: false, exists: true, missing_value: false });
    expect(slots.OLD_API_KEY).toMatchObject({ action: 'delete', exists: true });
    expect(slots.AGENT_MADE).not.toHaveProperty('value');
    // STRIPE_KEY is sent to api.stripe.com today: a new host warns, the same host (other path) does not
    expect(view.warnings).toEqual([{
      service: 'stripe', credential: 'STRIPE_KEY', new_host: 'stripe-proxy.evil.example', current_hosts: ['api.stripe.com'],
      message: 'an existing credential would be sent to a host it was not sent to before',
    }]);

    // the same view for people and for the proposing agent; another agent does not see it
    expect((await core.proposals.get(owner, 'default', r.id)).warnings).toHaveLength(1);
    expect((await core.proposals.get(agent, 'default', r.id)).id).toBe(r.id);
    expect(await fails(core.proposals.get(other, 'default', r.id))).toMatchObject({ status: 404 });
    expect((await core.proposals.list(other, 'default', {})).map((p) => p.id)).not.toContain(r.id);
    expect((await core.proposals.list(agent, 'default', { status: 'pending' })).map((p) => p.id)).toContain(r.id);
    expect((await core.proposals.list(owner, 'default', {})).map((p) => p.id)).toContain(r.id);
    await core.proposals.reject(owner, 'default', r.id, { reason: 'not moving stripe' });
  });

  it('approval links: wrong or malformed token 404, expired link 410', async () => {
    expect(await fails(core.proposals.getByApprovalToken(mintToken('appr')))).toMatchObject({ status: 404, code: 'proposal_not_found' });
    expect(await fails(core.proposals.getByApprovalToken('lk_appr_short'))).toMatchObject({ status: 404 });
    expect(await fails(core.proposals.getByApprovalToken(mintToken('pat')))).toMatchObject({ status: 404 });
    const r = await core.proposals.create(agent, 'default', { credentials: [{ action: 'set', key: uniq('LINK_') }] });
    await core.store.transitionProposal(r.id, { status: 'pending', approval_expires_at: new Date(Date.now() - 1000).toISOString() });
    expect(await fails(core.proposals.getByApprovalToken(tokenOf(r.approval_url)))).toMatchObject({ status: 410, code: 'approval_link_expired' });
    // the proposal itself is still pending and can be approved from the console
    expect((await core.proposals.get(owner, 'default', r.id)).status).toBe('pending');
  });

  it('a person approves: secrets, services and use grants applied together, audited; agent values used unless overridden', async () => {
    const svcA = uniq('svc-a');
    const svcB = uniq('svc-b');
    const r = await core.proposals.create(agent, 'default', {
      services: [
        { name: svcA, host: `${svcA}.example.com`, auth: { type: 'bearer', key: 'AGENT_TOKEN_X' } },
        { name: svcB, host: '*.b.example.com', auth: { type: 'basic', username_key: 'PERSON_KEY_X', password_key: 'STRIPE_KEY' } },
      ],
      credentials: [
        { action: 'set', key: 'AGENT_TOKEN_X', value: AGENT_VALUE, description: 'made by the agent' },
        { action: 'set', key: 'PERSON_KEY_X', value: 'agent-guess-to-be-overridden' },
        { action: 'delete', key: 'OLD_API_KEY' },
      ],
    });
    const res = await core.proposals.approve(owner, 'default', r.id, { credentials: { PERSON_KEY_X: PERSON_VALUE } });
    expect(res).toMatchObject({ id: r.id, status: 'approved', decided_by: expect.stringMatching(/^user:/) });
    expect(res.applied).toMatchObject({ secrets_set: ['AGENT_TOKEN_X', 'PERSON_KEY_X'], secrets_deleted: ['OLD_API_KEY'], services: [svcA, svcB] });
    expect(JSON.stringify(res)).not.toContain(PERSON_VALUE);

    expect((await core.secrets.read(owner, 'default', 'AGENT_TOKEN_X')).value).toBe(AGENT_VALUE);
    expect((await core.secrets.read(owner, 'default', 'PERSON_KEY_X')).value).toBe(PERSON_VALUE);
    expect((await core.secrets.get(owner, 'default', 'AGENT_TOKEN_X')).description).toBe('made by the agent');
    expect(await fails(core.secrets.read(owner, 'default', 'OLD_API_KEY'))).toMatchObject({ status: 404 });
    expect(await core.services.get(owner, 'default', svcB)).toMatchObject({ host: '*.b.example.com', auth: { type: 'basic' } });
    const grants = await core.grants.list(agent, 'default', { status: 'approved' });
    expect(grants.filter((g) => g.kind === 'service' && (g.service === svcA || g.service === svcB))).toHaveLength(2);
    expect(grants.find((g) => g.service === svcA)).toMatchObject({ mode: 'use', agent: 'proposer' });

    const events = (await core.store.queryAudit({ limit: 50 })).filter((e) => e.target === r.id || JSON.parse(e.details).proposal === r.id);
    expect(events.map((e) => e.action).sort()).toEqual(
      ['grant.approve', 'grant.approve', 'proposal.approve', 'proposal.create', 'secret.create', 'secret.create', 'secret.delete', 'service.set', 'service.set'].sort(),
    );
    const applyEvents = events.filter((e) => e.action !== 'proposal.create');
    expect(new Set(applyEvents.map((e) => e.ts)).size).toBe(1); // one transaction, one commit
    const text = JSON.stringify(await core.store.queryAudit({ limit: 1000 }));
    for (const v of [AGENT_VALUE, PERSON_VALUE, 'agent-guess-to-be-overridden']) expect(text).not.toContain(v);
    expect((await core.audit.verify(core.store)).ok).toBe(true);

    // twice: the second is a 409 and nothing is applied again
    expect(await fails(core.proposals.approve(owner, 'default', r.id, {}))).toMatchObject({ status: 409, code: 'proposal_decided' });
    expect((await core.secrets.get(owner, 'default', 'AGENT_TOKEN_X')).version).toBe(1);
  });

  it('the proposing agent can never approve (403, audited denied); nor reject', async () => {
    const r = await core.proposals.create(agent, 'default', { credentials: [{ action: 'set', key: uniq('SELF_'), value: 'v' }] });
    expect(await fails(core.proposals.approve(agent, 'default', r.id, {}))).toMatchObject({ status: 403 });
    const denial = (await core.store.queryAudit({ action: 'proposal.approve', outcome: 'denied', limit: 1 }))[0]!;
    expect(denial).toMatchObject({ actor: 'agent:proposer', target: r.id, vault: 'default' });
    expect(await fails(core.proposals.reject(agent, 'default', r.id, {}))).toMatchObject({ status: 403 });
    expect(await fails(core.proposals.approve(other, 'default', r.id, {}))).toMatchObject({ status: 403 });
    expect((await core.store.getProposal(r.id))?.status).toBe('pending');
  });

  it('approval checks values before the transaction: a missing or too large value, a foreign key, leave nothing applied', async () => {
    const key = uniq('NEEDS_');
    const svc = uniq('needs-');
    const r = await core.proposals.create(agent, 'default', {
      services: [{ name: svc, host: `${svc}.example.com`, auth: { type: 'bearer', key } }],
      credentials: [{ action: 'set', key }, { action: 'set', key: `${key}_B`, value: 'agent-b' }],
    });
    expect(await fails(core.proposals.approve(owner, 'default', r.id, {}))).toMatchObject({ status: 400, field: `credentials.${key}` });
    expect(await fails(core.proposals.approve(owner, 'default', r.id, { credentials: { [key]: 'x'.repeat(65537) } }))).toMatchObject({ status: 400, field: `credentials.${key}`, code: 'value_too_large' });
    expect(await fails(core.proposals.approve(owner, 'default', r.id, { credentials: { [key]: 'ok', OTHER_KEY: 'x' } }))).toMatchObject({ status: 400, field: 'credentials.OTHER_KEY' });
    expect(await core.store.getSecret(await vaultId(), `${key}_B`)).toBeNull();
    expect(await core.store.getService(await vaultId(), svc)).toBeNull();
    expect((await core.store.getProposal(r.id))?.status).toBe('pending');
    expect(await core.store.queryAudit({ action: 'proposal.approve', target: r.id, limit: 5 })).toHaveLength(0);
  });

  it('a failure mid-apply rolls everything back (all or nothing), and a later approval applies it', async () => {
    const key = uniq('MID_');
    const svc = uniq('mid-');
    const r = await core.proposals.create(agent, 'default', {
      services: [{ name: svc, host: `${svc}.example.com`, auth: { type: 'bearer', key } }],
      credentials: [{ action: 'set', key, value: AGENT_VALUE }, { action: 'delete', key: 'STRIPE_KEY' }],
    });
    const before = await core.store.countAudit();
    // the secrets are applied first; the service write then fails inside the same transaction
    const spy = vi.spyOn(core.services, 'setIn').mockRejectedValueOnce(new Error('simulated failure after the slots were applied'));
    await expect(core.proposals.approve(owner, 'default', r.id, {})).rejects.toThrow('simulated failure');
    spy.mockRestore();
    expect(await core.store.getSecret(await vaultId(), key)).toBeNull();
    expect(await core.store.getSecret(await vaultId(), 'STRIPE_KEY')).not.toBeNull();
    expect(await core.store.getService(await vaultId(), svc)).toBeNull();
    expect((await core.store.getProposal(r.id))?.status).toBe('pending');
    expect(await core.store.countAudit()).toBe(before);

    // a real constraint failure: another writer created the secret after the approval read it as absent
    const realPut = core.secrets.putIn.bind(core.secrets);
    const spy2 = vi.spyOn(core.secrets, 'putIn').mockImplementationOnce(async (s, c, v, name, value, ev, o) => {
      await s.insertSecret({ id: `dup-${name}`, vault_id: v.id, name: 'DUP_BLOCKER', category: 'custom', preset: null, description: null, tags: '[]', current_version: 1, created_at: '', updated_at: '', last_rotated_at: null });
      await s.insertSecret({ id: `dup2-${name}`, vault_id: v.id, name: 'DUP_BLOCKER', category: 'custom', preset: null, description: null, tags: '[]', current_version: 1, created_at: '', updated_at: '', last_rotated_at: null });
      return realPut(s, c, v, name, value, ev, o);
    });
    expect(await fails(core.proposals.approve(owner, 'default', r.id, {}))).toMatchObject({ status: 409, code: 'concurrent_update' });
    spy2.mockRestore();
    expect(await core.store.getSecret(await vaultId(), 'DUP_BLOCKER')).toBeNull();
    expect((await core.store.getProposal(r.id))?.status).toBe('pending');
    expect(await core.store.countAudit()).toBe(before);

    await core.proposals.approve(owner, 'default', r.id, {});
    expect((await core.secrets.read(owner, 'default', key)).value).toBe(AGENT_VALUE);
    expect(await core.store.getSecret(await vaultId(), 'STRIPE_KEY')).toBeNull();
    await core.secrets.put(owner, 'default', 'STRIPE_KEY', { value: 'sk_test_existing_0001' });
  });

  it('reject: people only, with a reason; then it cannot be approved', async () => {
    const r = await core.proposals.create(agent, 'default', { credentials: [{ action: 'set', key: uniq('REJ_'), value: 'v' }] });
    const res = await core.proposals.reject(owner, 'default', r.id, { reason: 'not needed' });
    expect(res).toMatchObject({ status: 'rejected', decision_reason: 'not needed' });
    expect((await core.store.queryAudit({ action: 'proposal.reject', target: r.id, limit: 1 }))[0]).toMatchObject({ outcome: 'ok' });
    expect(await fails(core.proposals.approve(owner, 'default', r.id, {}))).toMatchObject({ status: 409, code: 'proposal_decided' });
    expect(await fails(core.proposals.reject(owner, 'default', r.id, {}))).toMatchObject({ status: 409 });
    expect((await core.proposals.list(owner, 'default', { status: 'rejected' })).map((p) => p.id)).toContain(r.id);
  });

  it('expiry: a pending proposal past expires_at reads as expired and cannot be approved (409)', async () => {
    const key = uniq('EXP_');
    const r = await core.proposals.create(agent, 'default', { credentials: [{ action: 'set', key, value: 'v' }] });
    await core.store.transitionProposal(r.id, { status: 'pending', expires_at: new Date(Date.now() - 1000).toISOString() });
    expect((await core.proposals.list(owner, 'default', { status: 'expired' })).map((p) => p.id)).toContain(r.id);
    expect((await core.proposals.list(owner, 'default', { status: 'pending' })).map((p) => p.id)).not.toContain(r.id);
    expect((await core.proposals.get(owner, 'default', r.id)).status).toBe('expired');
    expect(await fails(core.proposals.approve(owner, 'default', r.id, {}))).toMatchObject({ status: 409, code: 'proposal_expired' });
    expect((await core.store.getProposal(r.id))?.status).toBe('expired');
    expect(await core.store.getSecret(await vaultId(), key)).toBeNull();
    expect((await core.proposals.list(owner, 'default', { status: 'expired' })).map((p) => p.id)).toContain(r.id);
  });

  it('a decided or expired proposal keeps no sealed values; the periodic sweep marks the expired', async () => {
    const sealedOf = async (id: string) => (await core.store.getProposal(id))!.sealed_values;
    const approved = await core.proposals.create(agent, 'default', { credentials: [{ action: 'set', key: uniq('DROP_A_'), value: 'agent-value-approved' }] });
    const rejected = await core.proposals.create(agent, 'default', { credentials: [{ action: 'set', key: uniq('DROP_R_'), value: 'agent-value-rejected' }] });
    const expiring = await core.proposals.create(agent, 'default', { credentials: [{ action: 'set', key: uniq('DROP_E_'), value: 'agent-value-expired' }] });
    const staying = await core.proposals.create(agent, 'default', { credentials: [{ action: 'set', key: uniq('DROP_S_'), value: 'agent-value-pending' }] });
    for (const r of [approved, rejected, expiring, staying]) expect(await sealedOf(r.id)).toBeTruthy();
    await core.proposals.approve(owner, 'default', approved.id, {});
    await core.proposals.reject(owner, 'default', rejected.id, {});
    expect(await sealedOf(approved.id)).toBeNull();
    expect(await sealedOf(rejected.id)).toBeNull();
    await core.store.transitionProposal(expiring.id, { status: 'pending', expires_at: new Date(Date.now() - 1000).toISOString() });
    expect(await core.proposals.expireDue()).toBeGreaterThanOrEqual(1);
    expect(await core.store.getProposal(expiring.id)).toMatchObject({ status: 'expired', sealed_values: null });
    // values left on a proposal decided before they were dropped on decision go with the sweep
    const raw = await openRaw(ctx);
    try {
      await raw.run('update proposals set sealed_values = ? where id = ?', [Buffer.from('legacy-sealed-bytes'), rejected.id]);
    } finally {
      await raw.close();
    }
    expect(await sealedOf(rejected.id)).toBeTruthy();
    await core.proposals.expireDue();
    expect(await sealedOf(rejected.id)).toBeNull();
    // one still pending and in time keeps its values, and they still open
    expect(await core.store.getProposal(staying.id)).toMatchObject({ status: 'pending' });
    expect(await sealedOf(staying.id)).toBeTruthy();
    await core.proposals.approve(owner, 'default', staying.id, {});
  });

  it('key rewrap moves pending proposals\' values and the proxy CA key onto the newest KEK; both still open', async () => {
    const ca = new InstanceCa(core);
    const pem = await ca.certPem();
    const key = uniq('REWRAP_');
    const pending = await core.proposals.create(agent, 'default', { credentials: [{ action: 'set', key, value: 'agent-value-rewrapped' }] });
    const before = (await core.keys.status(owner)).needs_rewrap;
    const { kek_version: kek } = await core.keys.rotate(owner);
    const status = await core.keys.status(owner);
    const versions = status.keks.filter((k) => k.version < kek).reduce((a, k) => a + k.sealed_versions, 0);
    // every pending proposal with values (this one and earlier tests'), and the CA key
    const blobs = 1 + (await core.store.listProposals({ status: 'pending' })).filter((p) => p.sealed_values?.length).length;
    expect(blobs).toBeGreaterThanOrEqual(2);
    expect(before).toBe(0);
    expect(status.needs_rewrap).toBe(versions + blobs);
    // the limit counts the blobs too: one of them now, the rest after
    expect(await core.keys.rewrap(owner, { limit: versions + 1 })).toEqual({ rewrapped: versions + 1, remaining: blobs - 1, kek_version: kek, done: false });
    expect(await core.keys.rewrap(owner)).toEqual({ rewrapped: blobs - 1, remaining: 0, kek_version: kek, done: true });
    expect((await core.keys.status(owner)).needs_rewrap).toBe(0);
    expect(blobKekVersion((await core.store.getProxyCa())!.sealed_key)).toBe(kek);
    expect(blobKekVersion((await core.store.getProposal(pending.id))!.sealed_values!)).toBe(kek);
    const event = (await core.store.queryAudit({ action: 'key.rewrap', limit: 1 }))[0]!;
    expect(JSON.parse(event.details)).toEqual({ rewrapped: blobs - 1, kek_version: kek, kinds: ['proposal'] });
    // a fresh CA loader opens the re-wrapped key and serves the same certificate and leaves under it
    const again = new InstanceCa(core);
    expect(await again.certPem()).toBe(pem);
    expect((await again.leaf('rewrap.example')).certPem).toContain('BEGIN CERTIFICATE');
    await core.proposals.approve(owner, 'default', pending.id, {});
    expect((await core.secrets.read(owner, 'default', key)).value).toBe('agent-value-rewrapped');
  });

  it.runIf(ctx.backend === 'postgres')('RACE: two replicas approve the same proposal at once, 10 times: exactly one applies, once', async () => {
    const second = (await openCore({ home: ctx.home, databaseUrl: ctx.databaseUrl, allowInit: true, env: { LATCHKEY_MASTER_KEY: MASTER } })).core;
    try {
      const owner2 = await asCtx(second, ownerToken);
      const vid = await vaultId();
      for (let i = 0; i < 10; i++) {
        const key = `RACE_KEY_${i}`;
        const svc = `race-${i}`;
        const r = await core.proposals.create(agent, 'default', {
          services: [{ name: svc, host: `${svc}.example.com`, auth: { type: 'bearer', key } }],
          credentials: [{ action: 'set', key, value: `race-agent-${i}` }],
        });
        const results = await Promise.allSettled([
          core.proposals.approve(owner, 'default', r.id, { credentials: { [key]: `race-one-${i}` } }),
          second.proposals.approve(owner2, 'default', r.id, { credentials: { [key]: `race-two-${i}` } }),
        ]);
        const ok = results.filter((x) => x.status === 'fulfilled');
        const bad = results.filter((x): x is PromiseRejectedResult => x.status === 'rejected');
        expect(ok, `round ${i}`).toHaveLength(1);
        expect(bad[0]!.reason).toMatchObject({ status: 409, code: 'proposal_decided' });
        const secret = (await core.store.getSecret(vid, key))!;
        expect(secret.current_version).toBe(1);
        expect((await core.store.listGrants({ vaultId: vid, agentId: agentId(agent), kind: 'service', target: svc }))).toHaveLength(1);
        expect(await core.store.queryAudit({ action: 'proposal.approve', target: r.id, limit: 5 })).toHaveLength(1);
        expect(await core.store.queryAudit({ action: 'secret.create', target: key, limit: 5 })).toHaveLength(1);
        const winner = results[0]!.status === 'fulfilled' ? 'one' : 'two';
        expect((await core.secrets.read(owner, 'default', key)).value).toBe(`race-${winner}-${i}`);
      }
      expect((await core.audit.verify(core.store)).ok).toBe(true);
    } finally {
      await second.close();
    }
  });
});
