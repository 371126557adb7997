/**
 * Authorization matrix: EVERY /v1 route the server registers × 8 principals, through a real server
 * on both backends, each cell asserted allow or deny, and every denial found in the audit log.
 *
 * The expected matrix below is derived from SPEC §3 (model: roles, agents, grants, proposals) and
 * §5 (API table, status codes), NOT from src/core/policy.ts. Where the SPEC is silent or ambiguous
 * the stricter reading is taken and the cell carries a comment saying so.
 *
 *   allowed = the policy admitted the request: any status but 401/403 (the requests are built to
 *             succeed, so allowed cells must also be 2xx)
 *   denied  = 401 for the anonymous caller, 403 for an authenticated one, plus an audit row with
 *             outcome `denied`, the caller as actor and the client IP, under the request's id
 *
 * Set-up (per backend, one server): vaults `alpha` and `beta`; people: owner (init), member-of-alpha
 * (instance member, vault member), admin-of-alpha (instance member, vault admin), admin-of-beta
 * (instance member, admin of beta only); agents in alpha: no-grant, use-grant (approved `use` grant
 * on service `svc`), read-grant (approved `read` grant on secret READ_ME). Destructive cells get a
 * fresh object per principal (secrets, vaults, agents, users, grants, proposals, tokens).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../src/server/start.js';
import { describeBackends } from './helpers/backends.js';

const MASTER = '5e'.repeat(32);
const PASSWORD = 'correct horse battery staple 42';

const PRINCIPALS = ['anon', 'agentNone', 'agentUse', 'agentRead', 'member', 'admin', 'otherAdmin', 'owner'] as const;
type Who = (typeof PRINCIPALS)[number];
const AGENTS: Who[] = ['agentNone', 'agentUse', 'agentRead'];
const AGENT_NAME: Partial<Record<Who, string>> = { agentNone: 'no-grant', agentUse: 'use-grant', agentRead: 'read-grant' };
const PERSON_EMAIL: Partial<Record<Who, string>> = {
  member: 'member-alpha@example.com', admin: 'admin-alpha@example.com', otherAdmin: 'admin-beta@example.com', owner: 'owner@example.com',
};
const isAgent = (w: Who) => AGENTS.includes(w);

interface Row { method: string; url: string; variant?: string; allow: boolean[]; line: string }
function row(method: string, url: string, expect: string, variant?: string): Row {
  const flags = expect.trim().split(/\s+/);
  if (flags.length !== PRINCIPALS.length || flags.some((f) => f !== 'Y' && f !== '-')) throw new Error(`bad matrix row ${method} ${url}: ${expect}`);
  return { method, url, variant, allow: flags.map((f) => f === 'Y'), line: expect };
}

/*
 * THE EXPECTED MATRIX.  Y = allowed, - = denied.
 * SPEC anchors used below:
 *  [public]   §5 "GET /v1/health | liveness, no auth"; login and the approval link are how one gets a credential.
 *  [authn]    §5 "Unauthenticated → 401; authenticated but not allowed → 403".
 *  [members]  §3 "Per vault: admin | member. Members may read values; only admins manage members and agents."
 *  [agents]   §3 "an agent holds the role proxy: it may list service and credential names, raise proposals and
 *             access requests — and use or read nothing until a grant says so. Nothing more by default."
 *  [grants]   §3 "a person approves … or denies"; "A person may also grant directly"; §5 "an agent's POST is a
 *             request …; a person's POST grants directly".
 *  [props]    §3 "A person opens it, logs in, fills in the values … and approves; … the proposing agent can never approve".
 *  [vend]     §5 "GET /v1/agent/secrets/:name | vending for agents: value if an approved read grant exists, else 403".
 *  [people]   §5 "POST /v1/auth/login, … | people's sessions; POST/GET/DELETE /v1/tokens for API tokens".
 *  [isolate]  §3 "Vault: the unit of isolation" — another vault's admin is nobody in alpha.
 * Instance-wide operations (people, keys, audit verification) are read as the instance owner's (the SPEC names no
 * other holder; stricter reading). Every vault-scoped row targets vault `alpha`.
 */
//                                                                         anon  a:none a:use a:read member admin other owner
const MATRIX: Row[] = [
  // ---- system
  row('GET', '/v1/health', /*                                        */ 'Y     Y      Y     Y      Y      Y     Y     Y'), // [public]
  row('GET', '/v1/openapi.json', /*                                  */ '-     Y      Y     Y      Y      Y     Y     Y'), // API description: nothing of any vault; any authenticated caller
  row('GET', '/v1/status', /*                                        */ '-     -      -     -      Y      Y     Y     Y'), // instance counts/keys/audit head: people's dashboard (§8 Status); agents: [agents] "nothing more"
  row('GET', '/v1/presets', /*                                       */ '-     Y      Y     Y      Y      Y     Y     Y'), // the static platform table of seed 001, no vault data
  row('GET', '/v1/auth/me', /*                                       */ '-     Y      Y     Y      Y      Y     Y     Y'), // whoami works for any token (§7 `whoami`)
  row('PATCH', '/v1/auth/me', /*                                     */ '-     -      -     -      Y      Y     Y     Y'), // a person's own email/password (§8 first-run); agents have neither: 403 [authn]
  row('POST', '/v1/auth/login', /*                                   */ 'Y     Y      Y     Y      Y      Y     Y     Y'), // [public] (valid email + password)
  row('POST', '/v1/auth/logout', /*                                  */ '-     -      -     -      Y      Y     Y     Y'), // [people] "people's sessions": an agent token is authenticated but not a person → 403
  row('GET', '/v1/tokens', /*                                        */ '-     -      -     -      Y      Y     Y     Y'), // [people] API tokens are people's
  row('POST', '/v1/tokens', /*                                       */ '-     -      -     -      Y      Y     Y     Y'), // [people]
  row('DELETE', '/v1/tokens/:id', /*                                 */ '-     -      -     -      Y      Y     Y     Y'), // [people] (each person revokes a token of their own)
  // ---- vaults
  row('GET', '/v1/vaults', /*                                        */ '-     Y      Y     Y      Y      Y     Y     Y'), // everyone sees the vaults they are in (§5 discover lists an agent's vaults)
  row('POST', '/v1/vaults', /*                                       */ '-     -      -     -      Y      Y     Y     Y'), // SPEC silent on who creates vaults; any person (as 1Password/Infisical members may); never an agent [agents]
  row('PATCH', '/v1/vaults/:vault', /*                               */ '-     -      -     -      -      Y     -     Y'), // the fallback chain exposes other vaults' secrets: administration, admins only (stricter reading of [members])
  row('DELETE', '/v1/vaults/:vault', /*                              */ '-     -      -     -      -      Y     -     Y'), // deleting the unit of isolation: admins only (stricter reading)
  // ---- secrets in alpha
  row('GET', '/v1/vaults/:vault/secrets', /*                         */ '-     Y      Y     Y      Y      Y     -     Y'), // [agents] "may list … credential names"; [isolate]
  row('POST', '/v1/vaults/:vault/secrets', /*                        */ '-     -      -     -      Y      Y     -     Y'), // §1 "People put API keys … into it": members write; admins-only is just [members]' list
  row('PUT', '/v1/vaults/:vault/secrets/:name', /*                   */ '-     -      -     -      Y      Y     -     Y'), // as create
  row('GET', '/v1/vaults/:vault/secrets/:name', /*                   */ '-     -      -     -      Y      Y     -     Y'), // versions and metadata are more than a name: [agents] "nothing more"
  row('GET', '/v1/vaults/:vault/secrets/:name/value', /*             */ '-     -      -     -      Y      Y     -     Y'), // [members] "Members may read values"; agents never decrypt here, even with a read grant: they use [vend]
  row('DELETE', '/v1/vaults/:vault/secrets/:name', /*                */ '-     -      -     -      -      Y     -     Y'), // "permanent delete, immediate": irreversible, admins only (stricter reading)
  row('POST', '/v1/vaults/:vault/secrets/:name/rotate', /*           */ '-     -      -     -      Y      Y     -     Y'), // re-encrypts, value unchanged: a writer's operation
  row('POST', '/v1/vaults/:vault/secrets/:name/rollback', /*         */ '-     -      -     -      Y      Y     -     Y'), // a new version: a writer's operation
  row('POST', '/v1/vaults/:vault/secrets/:name/migrate', /*          */ '-     -      -     -      -      -     -     Y'), // leaves alpha (a delete there: its admin) and writes beta (where alpha's admin is nobody, as beta's admin is in alpha): here the owner only
  row('POST', '/v1/vaults/:vault/rotate-all', /*                     */ '-     -      -     -      -      Y     -     Y'), // vault-wide maintenance (seed 001 "after security incidents"): admins only (stricter)
  // ---- audit (instance-wide; SPEC names no reader: the stricter reading is the instance owner/admin)
  row('GET', '/v1/audit', /*                                         */ '-     -      -     -      -      -     -     Y'),
  row('GET', '/v1/audit', /*                                         */ '-     -      -     -      -      Y     -     Y', '?vault=alpha'), // a vault's admin reads the events of that vault (and only with the filter)
  row('GET', '/v1/audit/verify', /*                                  */ '-     -      -     -      -      -     -     Y'),
  row('POST', '/v1/audit/verify', /*                                 */ '-     -      -     -      -      -     -     Y'),
  row('POST', '/v1/audit/prune', /*                                  */ '-     -      -     -      -      -     -     Y'), // retention (§4) deletes history: owner
  row('GET', '/v1/audit/checkpoint', /*                              */ '-     -      -     -      -      -     -     Y'),
  // ---- keys (§2 `latchkey key status|rotate|rewrap`: the instance's keyring)
  row('GET', '/v1/keys', /*                                          */ '-     -      -     -      -      -     -     Y'),
  row('POST', '/v1/keys/rotate', /*                                  */ '-     -      -     -      -      -     -     Y'),
  row('POST', '/v1/keys/rewrap', /*                                  */ '-     -      -     -      -      -     -     Y'),
  // ---- people (instance roles, §3 "instance role owner | admin | member")
  row('GET', '/v1/users', /*                                         */ '-     -      -     -      -      -     -     Y'),
  row('POST', '/v1/users', /*                                        */ '-     -      -     -      -      -     -     Y'),
  row('PATCH', '/v1/users/:email', /*                                */ '-     -      -     -      -      -     -     Y'),
  row('DELETE', '/v1/users/:email', /*                               */ '-     -      -     -      -      -     -     Y'),
  // ---- vault membership
  row('GET', '/v1/vaults/:vault/members', /*                         */ '-     -      -     -      Y      Y     -     Y'), // members see who shares their vault; agents: [agents] "nothing more"
  row('POST', '/v1/vaults/:vault/members', /*                        */ '-     -      -     -      -      Y     -     Y'), // [members] "only admins manage members"
  row('DELETE', '/v1/vaults/:vault/members/:email', /*               */ '-     -      -     -      -      Y     -     Y'), // [members]
  row('GET', '/v1/vaults/:vault/agents', /*                          */ '-     -      -     -      Y      Y     -     Y'), // as members list
  row('POST', '/v1/vaults/:vault/agents', /*                         */ '-     -      -     -      -      Y     -     Y'), // [members] "only admins manage … agents"
  row('DELETE', '/v1/vaults/:vault/agents/:name', /*                 */ '-     -      -     -      -      Y     -     Y'), // [members]
  // ---- agents
  row('GET', '/v1/agents', /*                                        */ '-     -      -     -      Y      Y     Y     Y'), // people get the agents they may manage (a plain member gets an empty list); agents: [agents]
  row('POST', '/v1/agents', /*                                       */ '-     -      -     -      -      Y     -     Y'), // [members] (creating an agent in alpha); agents never mint agents
  row('DELETE', '/v1/agents/:name', /*                               */ '-     -      -     -      -      Y     -     Y'), // [members] (an agent of alpha; beta's admin is nobody here [isolate])
  row('POST', '/v1/agents/:name/rotate-token', /*                    */ '-     -      -     -      -      Y     -     Y'), // [members]
  row('POST', '/v1/sessions', /*                                     */ '-     Y      Y     Y      -      Y     -     Y'), // §5 an agent's own scoped session; a person minting one for an agent manages that agent: [members]
  // ---- grants
  row('GET', '/v1/vaults/:vault/grants', /*                          */ '-     Y      Y     Y      Y      Y     -     Y'), // an agent follows its own access requests [agents]; members read
  row('POST', '/v1/vaults/:vault/grants', /*                         */ '-     Y      Y     Y      -      Y     -     Y'), // [grants] agents request; a person grants directly = manages an agent: admins [members]
  row('POST', '/v1/vaults/:vault/grants/:id/approve', /*             */ '-     -      -     -      -      Y     -     Y'), // [grants] "a person approves"; deciding an agent's access = managing agents: admins (stricter)
  row('POST', '/v1/vaults/:vault/grants/:id/deny', /*                */ '-     -      -     -      -      Y     -     Y'), // as approve
  row('POST', '/v1/vaults/:vault/grants/:id/revoke', /*              */ '-     -      -     -      -      Y     -     Y'), // as approve
  row('GET', '/v1/agent/secrets/:name', /*                           */ '-     -      -     Y      -      -     -     -'), // [vend]: only the read grant; a use grant does not vend; people read via …/value
  row('GET', '/v1/discover', /*                                      */ '-     Y      Y     Y      -      -     -     -'), // §5 "for an agent"
  // ---- services
  row('GET', '/v1/vaults/:vault/services', /*                        */ '-     Y      Y     Y      Y      Y     -     Y'), // [agents] "may list service … names"
  row('POST', '/v1/vaults/:vault/services', /*                       */ '-     -      -     -      -      Y     -     Y'), // a service decides where a credential is sent for agents: managing agents' access (stricter)
  row('GET', '/v1/vaults/:vault/services/:name', /*                  */ '-     Y      Y     Y      Y      Y     -     Y'), // name + host (as §5 discover shows agents)
  row('PUT', '/v1/vaults/:vault/services/:name', /*                  */ '-     -      -     -      -      Y     -     Y'), // as create
  row('DELETE', '/v1/vaults/:vault/services/:name', /*               */ '-     -      -     -      -      Y     -     Y'), // as create
  // ---- proposals
  row('GET', '/v1/vaults/:vault/proposals', /*                       */ '-     Y      Y     Y      Y      Y     -     Y'), // agents follow their own [agents] "raise proposals"
  row('POST', '/v1/vaults/:vault/proposals', /*                      */ '-     Y      Y     Y      -      -     -     -'), // §3 "an agent proposes"; people change services and credentials directly (stricter)
  row('GET', '/v1/vaults/:vault/proposals/:id', /*                   */ '-     Y      Y     Y      Y      Y     -     Y'), // each agent reads its own proposal
  row('POST', '/v1/vaults/:vault/proposals/:id/approve', /*          */ '-     -      -     -      -      Y     -     Y'), // [props] a person, never the agent; it grants the agent `use`: admins [members]
  row('POST', '/v1/vaults/:vault/proposals/:id/reject', /*           */ '-     -      -     -      -      Y     -     Y'), // as approve
  row('GET', '/v1/proposals/approval', /*                            */ 'Y     Y      Y     Y      Y      Y     Y     Y'), // [public] §3 the lk_appr_ link is itself the (read-only) credential
  // ---- the forward proxy's coordinates (§6)
  row('GET', '/v1/ca.pem', /*                                        */ 'Y     Y      Y     Y      Y      Y     Y     Y'), // §6 "CA at GET /v1/ca.pem": a CA certificate is what a client must trust before anything else; public
  row('GET', '/v1/proxy', /*                                         */ '-     Y      Y     Y      Y      Y     Y     Y'), // where the forward proxy listens (`latchkey run`, §6): any authenticated caller, opens nothing
];

interface Req { path: string; body?: unknown; token?: string }
interface Res { status: number; json: any; text: string; requestId: string }

describeBackends('authorization matrix', (ctx) => {
  let server: RunningServer;
  const token = {} as Record<Who, string | null>;
  let spareToken = '';
  let approvalToken = '';
  const ownProposal: Partial<Record<Who, string>> = {};
  let seq = 0;
  const uniq = (prefix: string) => `${prefix}${++seq}`;

  async function call(method: string, path: string, opts: { token?: string | null; body?: unknown } = {}): Promise<Res> {
    const headers: Record<string, string> = {};
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(server.url + path, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
    const text = await res.text();
    let json: any = null;
    try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    return { status: res.status, json, text, requestId: res.headers.get('x-request-id') ?? '' };
  }

  /** A set-up call that must succeed. */
  async function ok(method: string, path: string, tok: string | null, body?: unknown): Promise<any> {
    const r = await call(method, path, { token: tok, body });
    if (r.status >= 300) throw new Error(`set-up ${method} ${path} -> ${r.status} ${r.text}`);
    return r.json;
  }
  const owner = () => token.owner!;

  // ---- fresh objects, made by the owner
  async function newSecret(prefix = 'S_'): Promise<string> {
    const name = uniq(prefix);
    await ok('PUT', `/v1/vaults/alpha/secrets/${name}`, owner(), { value: `value-of-${name}` });
    return name;
  }
  async function newAgent(vaults = ['alpha']): Promise<{ name: string; token: string }> {
    const a = await ok('POST', '/v1/agents', owner(), { name: uniq('tmp-agent-'), vaults });
    return { name: a.name, token: a.token };
  }
  async function newUser(): Promise<string> {
    const u = await ok('POST', '/v1/users', owner(), { email: `${uniq('victim')}@example.com` });
    return u.email;
  }
  /** A vault in which every principal stands as it does in alpha. */
  async function newVaultLikeAlpha(): Promise<string> {
    const name = uniq('gone-');
    await ok('POST', '/v1/vaults', owner(), { name });
    await ok('POST', `/v1/vaults/${name}/members`, owner(), { email: PERSON_EMAIL.member, role: 'member' });
    await ok('POST', `/v1/vaults/${name}/members`, owner(), { email: PERSON_EMAIL.admin, role: 'admin' });
    for (const a of AGENTS) await ok('POST', `/v1/vaults/${name}/agents`, owner(), { name: AGENT_NAME[a] });
    return name;
  }
  async function pendingGrant(): Promise<string> {
    const secret = await newSecret('G_');
    return (await ok('POST', '/v1/vaults/alpha/grants', spareToken, { secret, mode: 'read', reason: 'matrix' })).id;
  }
  async function approvedGrant(): Promise<string> {
    const secret = await newSecret('G_');
    return (await ok('POST', '/v1/vaults/alpha/grants', owner(), { agent: 'spare', secret, mode: 'read' })).id;
  }
  async function newProposal(): Promise<string> {
    return (await ok('POST', '/v1/vaults/alpha/proposals', spareToken, { message: 'matrix', credentials: [{ action: 'set', key: uniq('PA_'), value: 'agent-made' }] })).id;
  }
  async function newService(): Promise<string> {
    const name = uniq('svc-');
    await ok('POST', '/v1/vaults/alpha/services', owner(), { name, host: 'api.example.com', auth: { type: 'bearer', key: 'SVC_KEY' } });
    return name;
  }
  /** A throwaway API token of the same person (for calls that end the caller's own credential). */
  async function ownThrowaway(who: Who): Promise<{ id: string; token: string } | null> {
    if (who === 'anon' || isAgent(who)) return null;
    const t = await ok('POST', '/v1/tokens', token[who], { name: uniq('throwaway-') });
    return { id: t.id, token: t.token };
  }
  const randomId = () => `nonexistent${++seq}`;

  /** How each cell's request is built: (route key) -> (principal) -> request. Destructive routes build fresh targets. */
  const REQ: Record<string, (who: Who) => Promise<Req>> = {
    'GET /v1/health': async () => ({ path: '/v1/health' }),
    'GET /v1/openapi.json': async () => ({ path: '/v1/openapi.json' }),
    'GET /v1/status': async () => ({ path: '/v1/status' }),
    'GET /v1/presets': async () => ({ path: '/v1/presets' }),
    'GET /v1/auth/me': async () => ({ path: '/v1/auth/me' }),
    'PATCH /v1/auth/me': async () => ({ path: '/v1/auth/me', body: {} }),
    'POST /v1/auth/login': async () => ({ path: '/v1/auth/login', body: { email: PERSON_EMAIL.member, password: PASSWORD } }),
    'POST /v1/auth/logout': async (who) => {
      const t = await ownThrowaway(who);
      return { path: '/v1/auth/logout', ...(t ? { token: t.token } : {}) };
    },
    'GET /v1/tokens': async () => ({ path: '/v1/tokens' }),
    'POST /v1/tokens': async () => ({ path: '/v1/tokens', body: { name: uniq('matrix-') } }),
    'DELETE /v1/tokens/:id': async (who) => ({ path: `/v1/tokens/${(await ownThrowaway(who))?.id ?? randomId()}` }),

    'GET /v1/vaults': async () => ({ path: '/v1/vaults' }),
    'POST /v1/vaults': async () => ({ path: '/v1/vaults', body: { name: uniq('made-') } }),
    'PATCH /v1/vaults/:vault': async () => ({ path: '/v1/vaults/alpha', body: { description: `touched ${++seq}` } }),
    'DELETE /v1/vaults/:vault': async () => ({ path: `/v1/vaults/${await newVaultLikeAlpha()}` }),

    'GET /v1/vaults/:vault/secrets': async () => ({ path: '/v1/vaults/alpha/secrets' }),
    'POST /v1/vaults/:vault/secrets': async () => ({ path: '/v1/vaults/alpha/secrets', body: { name: uniq('NEW_'), value: 'v1' } }),
    'PUT /v1/vaults/:vault/secrets/:name': async () => ({ path: `/v1/vaults/alpha/secrets/${uniq('PUT_')}`, body: { value: 'v1' } }),
    'GET /v1/vaults/:vault/secrets/:name': async () => ({ path: '/v1/vaults/alpha/secrets/PLAIN' }),
    'GET /v1/vaults/:vault/secrets/:name/value': async () => ({ path: '/v1/vaults/alpha/secrets/PLAIN/value' }),
    'DELETE /v1/vaults/:vault/secrets/:name': async () => ({ path: `/v1/vaults/alpha/secrets/${await newSecret('DEL_')}` }),
    'POST /v1/vaults/:vault/secrets/:name/rotate': async () => ({ path: '/v1/vaults/alpha/secrets/PLAIN/rotate' }),
    'POST /v1/vaults/:vault/secrets/:name/rollback': async () => ({ path: '/v1/vaults/alpha/secrets/PLAIN/rollback', body: { version: 1 } }),
    'POST /v1/vaults/:vault/secrets/:name/migrate': async () => ({ path: `/v1/vaults/alpha/secrets/${await newSecret('MIG_')}/migrate`, body: { to: 'beta' } }),
    'POST /v1/vaults/:vault/rotate-all': async () => ({ path: '/v1/vaults/alpha/rotate-all', body: {} }),

    'GET /v1/audit': async () => ({ path: '/v1/audit?limit=5' }),
    'GET /v1/audit ?vault=alpha': async () => ({ path: '/v1/audit?vault=alpha&limit=5' }),
    'GET /v1/audit/verify': async () => ({ path: '/v1/audit/verify' }),
    'POST /v1/audit/verify': async () => ({ path: '/v1/audit/verify', body: {} }),
    'POST /v1/audit/prune': async () => ({ path: '/v1/audit/prune', body: { before: '2000-01-01T00:00:00Z' } }),
    'GET /v1/audit/checkpoint': async () => ({ path: '/v1/audit/checkpoint' }),

    'GET /v1/keys': async () => ({ path: '/v1/keys' }),
    'POST /v1/keys/rotate': async () => ({ path: '/v1/keys/rotate' }),
    'POST /v1/keys/rewrap': async () => ({ path: '/v1/keys/rewrap', body: {} }),

    'GET /v1/users': async () => ({ path: '/v1/users' }),
    'POST /v1/users': async () => ({ path: '/v1/users', body: { email: `${uniq('new')}@example.com` } }),
    'PATCH /v1/users/:email': async () => ({ path: `/v1/users/${encodeURIComponent(await newUser())}`, body: { role: 'admin' } }),
    'DELETE /v1/users/:email': async () => ({ path: `/v1/users/${encodeURIComponent(await newUser())}` }),

    'GET /v1/vaults/:vault/members': async () => ({ path: '/v1/vaults/alpha/members' }),
    'POST /v1/vaults/:vault/members': async () => ({ path: '/v1/vaults/alpha/members', body: { email: await newUser(), role: 'member' } }),
    'DELETE /v1/vaults/:vault/members/:email': async () => {
      const email = await newUser();
      await ok('POST', '/v1/vaults/alpha/members', owner(), { email, role: 'member' });
      return { path: `/v1/vaults/alpha/members/${encodeURIComponent(email)}` };
    },
    'GET /v1/vaults/:vault/agents': async () => ({ path: '/v1/vaults/alpha/agents' }),
    'POST /v1/vaults/:vault/agents': async () => ({ path: '/v1/vaults/alpha/agents', body: { name: (await newAgent([])).name } }),
    'DELETE /v1/vaults/:vault/agents/:name': async () => ({ path: `/v1/vaults/alpha/agents/${(await newAgent()).name}` }),

    'GET /v1/agents': async () => ({ path: '/v1/agents' }),
    'POST /v1/agents': async () => ({ path: '/v1/agents', body: { name: uniq('made-agent-'), vaults: ['alpha'] } }),
    'DELETE /v1/agents/:name': async () => ({ path: `/v1/agents/${(await newAgent()).name}` }),
    'POST /v1/agents/:name/rotate-token': async () => ({ path: `/v1/agents/${(await newAgent()).name}/rotate-token` }),
    'POST /v1/sessions': async (who) => ({ path: '/v1/sessions', body: isAgent(who) ? { vault: 'alpha', ttl: 300 } : { vault: 'alpha', ttl: 300, agent: 'spare' } }),

    'GET /v1/vaults/:vault/grants': async () => ({ path: '/v1/vaults/alpha/grants' }),
    'POST /v1/vaults/:vault/grants': async (who) => ({
      path: '/v1/vaults/alpha/grants',
      body: isAgent(who) ? { secret: await newSecret('REQ_'), mode: 'read', reason: 'matrix' } : { agent: 'spare', secret: await newSecret('DIRECT_'), mode: 'read' },
    }),
    'POST /v1/vaults/:vault/grants/:id/approve': async () => ({ path: `/v1/vaults/alpha/grants/${await pendingGrant()}/approve`, body: { expires: '1h' } }),
    'POST /v1/vaults/:vault/grants/:id/deny': async () => ({ path: `/v1/vaults/alpha/grants/${await pendingGrant()}/deny`, body: { reason: 'matrix' } }),
    'POST /v1/vaults/:vault/grants/:id/revoke': async () => ({ path: `/v1/vaults/alpha/grants/${await approvedGrant()}/revoke` }),
    'GET /v1/agent/secrets/:name': async () => ({ path: '/v1/agent/secrets/READ_ME?vault=alpha' }),
    'GET /v1/discover': async () => ({ path: '/v1/discover' }),

    'GET /v1/vaults/:vault/services': async () => ({ path: '/v1/vaults/alpha/services' }),
    'POST /v1/vaults/:vault/services': async () => ({ path: '/v1/vaults/alpha/services', body: { name: uniq('made-svc-'), host: 'api.example.com', auth: { type: 'bearer', key: 'SVC_KEY' } } }),
    'GET /v1/vaults/:vault/services/:name': async () => ({ path: '/v1/vaults/alpha/services/svc' }),
    'PUT /v1/vaults/:vault/services/:name': async () => ({ path: `/v1/vaults/alpha/services/${uniq('put-svc-')}`, body: { host: 'api.example.com', auth: { type: 'bearer', key: 'SVC_KEY' } } }),
    'DELETE /v1/vaults/:vault/services/:name': async () => ({ path: `/v1/vaults/alpha/services/${await newService()}` }),

    'GET /v1/vaults/:vault/proposals': async () => ({ path: '/v1/vaults/alpha/proposals' }),
    'POST /v1/vaults/:vault/proposals': async () => ({ path: '/v1/vaults/alpha/proposals', body: { message: 'matrix', credentials: [{ action: 'set', key: uniq('PROP_'), description: 'needed' }] } }),
    'GET /v1/vaults/:vault/proposals/:id': async (who) => ({ path: `/v1/vaults/alpha/proposals/${ownProposal[who] ?? ownProposal.agentNone}` }),
    'POST /v1/vaults/:vault/proposals/:id/approve': async () => ({ path: `/v1/vaults/alpha/proposals/${await newProposal()}/approve`, body: {} }),
    'POST /v1/vaults/:vault/proposals/:id/reject': async () => ({ path: `/v1/vaults/alpha/proposals/${await newProposal()}/reject`, body: { reason: 'matrix' } }),
    'GET /v1/ca.pem': async () => ({ path: '/v1/ca.pem' }),
    'GET /v1/proxy': async () => ({ path: '/v1/proxy' }),
    'GET /v1/proposals/approval': async () => ({ path: `/v1/proposals/approval?token=${encodeURIComponent(approvalToken)}` }),
  };
  const keyOf = (r: Row) => `${r.method} ${r.url}${r.variant ? ` ${r.variant}` : ''}`;

  /** Expected audit actor of a principal. */
  const actorOf = (who: Who) => (who === 'anon' ? 'system' : isAgent(who) ? `agent:${AGENT_NAME[who]}` : `user:${PERSON_EMAIL[who]}`);

  beforeAll(async () => {
    server = await startServer({
      home: ctx.home, databaseUrl: ctx.databaseUrl, host: '127.0.0.1', port: 0, proxyPort: 0, logLevel: 'silent', env: { LATCHKEY_MASTER_KEY: MASTER, LATCHKEY_RATE_LIMIT: 'off' }, // limits are not under test here
    });
    token.anon = null;
    token.owner = server.initialized!.ownerToken;
    await ok('PATCH', '/v1/auth/me', owner(), { email: PERSON_EMAIL.owner });
    await ok('POST', '/v1/vaults', owner(), { name: 'alpha' });
    await ok('POST', '/v1/vaults', owner(), { name: 'beta' });
    // people: instance role member; their vault roles decide
    for (const w of ['member', 'admin', 'otherAdmin'] as const) {
      const u = await ok('POST', '/v1/users', owner(), { email: PERSON_EMAIL[w], role: 'member', ...(w === 'member' ? { password: PASSWORD } : {}) });
      token[w] = u.token;
    }
    await ok('POST', '/v1/vaults/alpha/members', owner(), { email: PERSON_EMAIL.member, role: 'member' });
    await ok('POST', '/v1/vaults/alpha/members', owner(), { email: PERSON_EMAIL.admin, role: 'admin' });
    await ok('POST', '/v1/vaults/beta/members', owner(), { email: PERSON_EMAIL.otherAdmin, role: 'admin' });
    // secrets and a service in alpha
    for (const name of ['PLAIN', 'READ_ME', 'SVC_KEY']) await ok('PUT', `/v1/vaults/alpha/secrets/${name}`, owner(), { value: `v-${name}` });
    await ok('PUT', '/v1/vaults/beta/secrets/BETA_ONLY', owner(), { value: 'beta' });
    await ok('POST', '/v1/vaults/alpha/services', owner(), { name: 'svc', host: 'api.example.com', auth: { type: 'bearer', key: 'SVC_KEY' } });
    // agents in alpha
    for (const w of [...AGENTS, 'spare' as const]) {
      const a = await ok('POST', '/v1/agents', owner(), { name: w === 'spare' ? 'spare' : AGENT_NAME[w], vaults: ['alpha'] });
      if (w === 'spare') spareToken = a.token;
      else token[w] = a.token;
    }
    // the grants: each agent asks, the alpha admin approves
    const useReq = await ok('POST', '/v1/vaults/alpha/grants', token.agentUse, { service: 'svc', mode: 'use', reason: 'call the example API' });
    expect(useReq.status).toBe('pending');
    await ok('POST', `/v1/vaults/alpha/grants/${useReq.id}/approve`, token.admin, {});
    const readReq = await ok('POST', '/v1/vaults/alpha/grants', token.agentRead, { secret: 'READ_ME', mode: 'read', reason: 'needs the raw value' });
    await ok('POST', `/v1/vaults/alpha/grants/${readReq.id}/approve`, token.admin, {});
    const grants = (await ok('GET', '/v1/vaults/alpha/grants?status=approved', owner())).items as Array<Record<string, unknown>>;
    expect(grants).toEqual(expect.arrayContaining([
      expect.objectContaining({ agent: 'use-grant', service: 'svc', mode: 'use', status: 'approved' }),
      expect.objectContaining({ agent: 'read-grant', secret: 'READ_ME', mode: 'read', status: 'approved' }),
    ]));
    expect(grants.filter((g) => g.agent === 'no-grant')).toEqual([]);
    // each agent has a proposal of its own; one approval link for the public route
    for (const w of AGENTS) {
      const p = await ok('POST', '/v1/vaults/alpha/proposals', token[w], { message: `from ${w}`, credentials: [{ action: 'set', key: `WANT_${w.toUpperCase()}` }] });
      ownProposal[w] = p.id;
      approvalToken = new URL(p.approval_url, server.url).searchParams.get('token')!;
    }
    expect(approvalToken).toMatch(/^lk_appr_/);
  });

  afterAll(async () => {
    await server?.close();
  });

  it('the matrix names every /v1 route the server registers, and only those', () => {
    // parse the router's own tree: "│   ├── /segment (GET, HEAD, POST)"; depth = indent / 4
    const tree = server.app.printRoutes({ commonPrefix: false });
    const registered = new Set<string>();
    const stack: string[] = [];
    for (const line of tree.split('\n')) {
      const m = /^((?:[│ ] {3})*)[├└]── (\S+)(?: \(([^)]*)\))?\s*$/.exec(line);
      if (!m) continue;
      const depth = m[1]!.length / 4;
      stack.length = depth;
      const full = (stack[depth - 1] ?? '') + m[2]!;
      stack[depth] = full;
      for (const method of (m[3] ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
        if (method === 'HEAD') continue; // Fastify's automatic HEAD twin of a GET
        const url = full.replace(/\/{2,}/g, '/');
        if (url.startsWith('/v1/') || url === '/v1') registered.add(`${method} ${url}`);
      }
    }
    expect(registered.size).toBeGreaterThan(50); // the parse worked
    const listed = new Set(MATRIX.map((r) => `${r.method} ${r.url}`));
    const unlisted = [...registered].filter((k) => !listed.has(k)).sort();
    const stale = [...listed].filter((k) => !registered.has(k)).sort();
    expect(unlisted, 'registered /v1 routes missing from the authorization matrix: add a row and a request builder').toEqual([]);
    expect(stale, 'matrix rows for routes the server does not register').toEqual([]);
    // and from the other side: Fastify confirms each listed route, and each row has a request builder
    for (const r of MATRIX) {
      expect(server.app.hasRoute({ method: r.method as 'GET', url: r.url }), `${r.method} ${r.url}`).toBe(true);
      expect(REQ[keyOf(r)], `request builder for ${keyOf(r)}`).toBeTypeOf('function');
    }
    expect(Object.keys(REQ).sort()).toEqual(MATRIX.map(keyOf).sort());
  });

  it(`every route × every principal: allowed or denied as SPEC §3/§5 say; every denial audited (${MATRIX.length} × ${PRINCIPALS.length} cells)`, async () => {
    const wrong: string[] = [];
    const denials: Array<{ cell: string; who: Who; requestId: string }> = [];
    for (const r of MATRIX) {
      for (const [i, who] of PRINCIPALS.entries()) {
        const req = await REQ[keyOf(r)]!(who);
        const res = await call(r.method, req.path, { token: who === 'anon' ? null : (req.token ?? token[who]), body: req.body });
        const cell = `${keyOf(r)} as ${who}`;
        const allowedExpected = r.allow[i]!;
        if (allowedExpected) {
          if (res.status < 200 || res.status >= 300) wrong.push(`${cell}: expected allowed (2xx), got ${res.status} ${res.json?.code ?? ''} ${res.json?.detail ?? ''}`);
        } else {
          const want = who === 'anon' ? 401 : 403;
          if (res.status !== want) wrong.push(`${cell}: expected denied (${want}), got ${res.status} ${res.json?.code ?? ''}`);
          else {
            if (!String(res.json?.type ?? '').includes('problem') && !res.json?.code) wrong.push(`${cell}: denial is not problem+json`);
            denials.push({ cell, who, requestId: res.requestId });
          }
        }
      }
    }
    expect(wrong, `matrix disagreements:\n${wrong.join('\n')}`).toEqual([]);

    // every denial left an audit row: outcome denied, the caller as actor, the client IP, the request id
    const rows = new Map<string, Array<{ actor: string; outcome: string; ip: string | null; action: string }>>();
    for (let cursor: string | null = null; ;) {
      const page: any = await ok('GET', `/v1/audit?outcome=denied&limit=1000${cursor ? `&cursor=${cursor}` : ''}`, owner());
      for (const e of page.items) rows.set(e.request_id, [...(rows.get(e.request_id) ?? []), e]);
      cursor = page.next_cursor;
      if (!cursor) break;
    }
    const unaudited: string[] = [];
    for (const d of denials) {
      const evs = rows.get(d.requestId) ?? [];
      const match = evs.find((e) => e.outcome === 'denied' && e.actor === actorOf(d.who) && !!e.ip && /127\.0\.0\.1/.test(e.ip));
      if (!match) unaudited.push(`${d.cell}: ${evs.length ? JSON.stringify(evs) : 'no audit row'}`);
    }
    expect(unaudited, `denials without a matching audit row:\n${unaudited.join('\n')}`).toEqual([]);
    expect(denials.length).toBe(MATRIX.reduce((n, r) => n + r.allow.filter((a) => !a).length, 0));

    // a plain member lists people's agents but sees none (the list is filtered, not widened)
    expect((await ok('GET', '/v1/agents', token.member)).items).toEqual([]);
    expect((await ok('GET', '/v1/agents', token.otherAdmin)).items.map((a: { name: string }) => a.name)).not.toContain('no-grant');
    // nothing of beta leaked to alpha's people through the list routes
    expect((await ok('GET', '/v1/vaults', token.member)).items.map((v: { name: string }) => v.name)).toEqual(expect.arrayContaining(['alpha']));
    expect((await ok('GET', '/v1/vaults', token.member)).items.map((v: { name: string }) => v.name)).not.toContain('beta');
    expect((await ok('GET', '/v1/vaults', token.agentNone)).items.map((v: { name: string }) => v.name)).not.toContain('beta');
  }, 180_000);

  it('wrong-kind, forged, revoked and expired tokens', async () => {
    const expectAudited = async (res: Res, reason: string) => {
      const page: any = await ok('GET', '/v1/audit?outcome=denied&limit=50', owner());
      const ev = page.items.find((e: { request_id: string }) => e.request_id === res.requestId);
      expect(ev, `audit row for ${reason}`).toMatchObject({ outcome: 'denied', actor: expect.any(String) });
      expect(ev.ip).toMatch(/127\.0\.0\.1/);
      return ev;
    };

    // an approval-link token is not an API token
    const appr = await call('GET', '/v1/vaults', { token: approvalToken });
    expect(appr).toMatchObject({ status: 401, json: { code: 'wrong_token_kind' } });
    expect(appr.text).not.toContain(approvalToken);
    expect((await expectAudited(appr, 'approval token')).action).toBe('auth.failure');
    expect((await call('GET', `/v1/vaults/alpha/proposals/${ownProposal.agentNone}`, { token: approvalToken })).status).toBe(401);

    // an agent token on person-only routes: authenticated, not allowed
    for (const [method, path, body] of [
      ['POST', '/v1/tokens', { name: 'agent-wants-a-pat' }],
      ['GET', '/v1/tokens', undefined],
      ['POST', '/v1/agents', { name: 'agent-made-agent', vaults: ['alpha'] }],
      ['POST', '/v1/users', { email: 'agent-made@example.com' }],
      ['PATCH', '/v1/auth/me', { email: 'agent@example.com' }],
      ['POST', '/v1/vaults', { name: 'agent-vault' }],
    ] as const) {
      const r = await call(method, path, { token: token.agentRead, body });
      expect(r.status, `${method} ${path} with an agent token`).toBe(403);
      expect(await expectAudited(r, `${method} ${path}`)).toMatchObject({ actor: 'agent:read-grant' });
    }
    expect((await call('GET', '/v1/agents', { token: owner() })).json.items.map((a: { name: string }) => a.name)).not.toContain('agent-made-agent');

    // forged tokens of every kind: right prefix, random body
    for (const kind of ['pat', 'agent', 'sess']) {
      const forged = `lk_${kind}_${randomBytes(32).toString('base64url')}`;
      const r = await call('GET', '/v1/auth/me', { token: forged });
      expect(r, `forged lk_${kind}_`).toMatchObject({ status: 401, json: { code: 'invalid_token' } });
      expect(await expectAudited(r, 'forged')).toMatchObject({ actor: 'system', action: 'auth.failure', details: expect.objectContaining({ caller: 'anonymous', credential: `lk_${kind}_` }) });
    }
    expect((await call('GET', '/v1/auth/me', { token: 'lk_pat_short' })).status).toBe(401);
    expect((await call('GET', '/v1/auth/me', { token: `${owner()}x` })).status).toBe(401);

    // a revoked agent's token fails on the very next request
    const a = await newAgent();
    expect((await call('GET', '/v1/discover', { token: a.token })).status).toBe(200);
    await ok('DELETE', `/v1/agents/${a.name}`, token.admin);
    const revoked = await call('GET', '/v1/discover', { token: a.token });
    expect(revoked).toMatchObject({ status: 401, json: { code: expect.stringMatching(/revoked/) } });
    // recorded under the agent the token belonged to (forensics), which the response does not reveal
    expect(await expectAudited(revoked, 'revoked agent')).toMatchObject({ actor: `agent:${a.name}`, action: 'auth.failure', outcome: 'denied' });
    expect(JSON.stringify(revoked.json)).not.toContain(a.name);
    // so does the old token after a rotation, and the session minted before a revocation
    const b = await newAgent();
    const sess = await ok('POST', '/v1/sessions', b.token, { vault: 'alpha', ttl: 300 });
    expect((await call('GET', '/v1/vaults/alpha/services', { token: sess.token })).status).toBe(200);
    const rotated = await ok('POST', `/v1/agents/${b.name}/rotate-token`, owner());
    expect((await call('GET', '/v1/discover', { token: b.token })).status).toBe(401);
    expect((await call('GET', '/v1/discover', { token: rotated.token })).status).toBe(200);
    await ok('DELETE', `/v1/agents/${b.name}`, owner());
    expect((await call('GET', '/v1/vaults/alpha/services', { token: sess.token })).status).toBe(401);

    // a revoked API token of a person
    const t = await ok('POST', '/v1/tokens', token.member, { name: 'short-lived' });
    expect((await call('GET', '/v1/auth/me', { token: t.token })).status).toBe(200);
    await ok('DELETE', `/v1/tokens/${t.id}`, token.member);
    expect((await call('GET', '/v1/auth/me', { token: t.token })).status).toBe(401);

    // an expired session token (minted already past its expiry: the server's clock decides)
    const agentRow = (await server.core.store.getAgentByName('no-grant'))!;
    const alpha = (await server.core.store.getVault('alpha'))!;
    const expired = await server.core.auth.issueToken(server.core.store, 'sess', {
      name: 'session (alpha)', agent_id: agentRow.id, vault_id: alpha.id, expires_at: new Date(Date.now() - 1000).toISOString(),
    });
    const exp = await call('GET', '/v1/vaults/alpha/services', { token: expired.token });
    expect(exp).toMatchObject({ status: 401, json: { code: 'token_expired' } });
    expect(await expectAudited(exp, 'expired session')).toMatchObject({ actor: 'agent:no-grant' });
    // a live session scoped to alpha is refused elsewhere (403: authenticated, wrong vault)
    const live = await ok('POST', '/v1/sessions', token.agentNone, { vault: 'alpha', ttl: 300 });
    expect((await call('GET', '/v1/vaults/alpha/services', { token: live.token })).status).toBe(200);
    await ok('POST', '/v1/vaults/beta/agents', owner(), { name: 'no-grant' });
    expect((await call('GET', '/v1/vaults/beta/services', { token: token.agentNone })).status).toBe(200);
    expect((await call('GET', '/v1/vaults/beta/services', { token: live.token })).status).toBe(403);
    // a session cannot mint another session (authenticated, not allowed: 403)
    expect((await call('POST', '/v1/sessions', { token: live.token, body: { vault: 'alpha' } })).status).toBe(403);
  }, 60_000);

  it('status: instance admins see the instance, where the data lives and the audit head; others count their own vaults only', async () => {
    const all = await ok('GET', '/v1/status', owner());
    expect(all.location).toEqual(expect.any(String));
    expect(all.audit).toMatchObject({ seq: expect.any(Number), hash: expect.any(String), events: expect.any(Number) });
    expect(all.key).toMatchObject({ kek_version: expect.any(Number), master_key_source: expect.any(String) });
    const allVaults = (await ok('GET', '/v1/vaults', owner())).items as Array<{ name: string; secrets: number }>;
    expect(all).toMatchObject({ vaults: allVaults.length, secrets: allVaults.reduce((a, v) => a + v.secrets, 0) });
    for (const who of ['member', 'otherAdmin'] as const) {
      const mine = await ok('GET', '/v1/status', token[who]);
      const theirs = ((await ok('GET', '/v1/vaults', token[who])).items as Array<{ name: string }>).map((v) => v.name);
      const expected = allVaults.filter((v) => theirs.includes(v.name));
      expect(expected.length, who).toBeLessThan(allVaults.length);
      expect(mine, who).toMatchObject({ backend: expect.any(String), vaults: expected.length, secrets: expected.reduce((a, v) => a + v.secrets, 0) });
      expect(Object.values(mine.by_category as Record<string, number>).reduce((a, n) => a + n, 0), who).toBe(mine.secrets);
      expect(mine, who).not.toHaveProperty('location');
      expect(mine, who).not.toHaveProperty('audit');
      expect(mine, who).not.toHaveProperty('key');
    }
  });

  it('[isolate] a vault admin can neither adopt nor take over an agent another vault relies on; sessions are audited', async () => {
    // beta's admin may not pull alpha's agent into beta (then rotate its token, whose grants reach alpha)
    const adopt = await call('POST', '/v1/vaults/beta/agents', { token: token.otherAdmin, body: { name: 'read-grant' } });
    expect(adopt).toMatchObject({ status: 403, json: { code: 'forbidden' } });
    expect((await call('POST', '/v1/agents/read-grant/rotate-token', { token: token.otherAdmin })).status).toBe(403);
    expect((await call('GET', '/v1/agent/secrets/READ_ME?vault=alpha', { token: token.agentRead })).status).toBe(200);
    // an agent in alpha and beta: alpha's admin alone may not revoke it or mint it a new token
    const both = await newAgent(['alpha', 'beta']);
    expect((await call('POST', `/v1/agents/${both.name}/rotate-token`, { token: token.admin })).status).toBe(403);
    expect((await call('DELETE', `/v1/agents/${both.name}`, { token: token.admin })).status).toBe(403);
    expect((await call('GET', '/v1/discover', { token: both.token })).status).toBe(200);
    // alpha's admin may still remove it from alpha, and then act on it where it remains only through beta's admin
    await ok('DELETE', `/v1/vaults/alpha/agents/${both.name}`, token.admin);
    expect((await call('POST', `/v1/agents/${both.name}/rotate-token`, { token: token.admin })).status).toBe(403);
    expect((await ok('POST', `/v1/agents/${both.name}/rotate-token`, token.otherAdmin)).token).toMatch(/^lk_agent_/);
    // an agent in no vault can be taken in by a vault admin (the matrix row), one of alpha's only by alpha's admin
    const own = await newAgent(['alpha']);
    expect((await call('POST', '/v1/vaults/beta/agents', { token: token.otherAdmin, body: { name: own.name } })).status).toBe(403);
    await ok('POST', '/v1/vaults/beta/agents', owner(), { name: own.name });

    // a vault's events are filed under its name: the admin of a new vault with a deleted vault's
    // name does not read the old one's history (instance admins still do)
    const reused = uniq('reused-');
    await ok('POST', '/v1/vaults', owner(), { name: reused });
    await ok('PUT', `/v1/vaults/${reused}/secrets/OLD_KEY`, owner(), { value: 'v-old' });
    await ok('GET', `/v1/vaults/${reused}/secrets/OLD_KEY/value`, owner());
    await ok('DELETE', `/v1/vaults/${reused}`, owner());
    await new Promise((r) => setTimeout(r, 5));
    await ok('POST', '/v1/vaults', token.otherAdmin, { name: reused });
    const mine: any = await ok('GET', `/v1/audit?vault=${reused}&limit=100`, token.otherAdmin);
    expect(mine.items.map((e: { action: string }) => e.action)).toEqual(['vault.create']);
    expect(mine.items[0]).toMatchObject({ actor: 'user:admin-beta@example.com' });
    const all: any = await ok('GET', `/v1/audit?vault=${reused}&limit=100`, owner());
    expect(all.items.map((e: { action: string }) => e.action)).toEqual(expect.arrayContaining(['secret.create', 'secret.read', 'vault.delete']));

    // a session is a credential acting as the agent: its minting is in the audit log
    const sess = await ok('POST', '/v1/sessions', token.agentNone, { vault: 'alpha', ttl: 300 });
    const page: any = await ok('GET', '/v1/audit?action=token.create&limit=20', owner());
    expect(page.items.find((e: { details: { token?: string } }) => e.details?.token === sess.id)).toMatchObject({
      actor: 'agent:no-grant', vault: 'alpha', target: 'agent:no-grant', outcome: 'ok', details: { kind: 'session' },
    });
  }, 60_000);
});
