/** People, sessions, API tokens, vault members, agents, agent sessions, grants, vending, discovery. */
import { z } from 'zod';
import type { Core } from '../../core/core.js';
import { type App, type Req } from '../http.js';

export const SESSION_COOKIE = 'lk_session';

const email = z.string().max(254);
const name = z.string().min(1).max(63);
const vaultP = z.strictObject({ vault: name });
const loginBody = z.strictObject({ email, password: z.string().max(1024) });
const meBody = z.strictObject({ email: email.optional(), password: z.string().max(1024).optional(), current_password: z.string().max(1024).optional() });
const tokenBody = z.strictObject({ name: z.string().min(1).max(100), ttl: z.number().int().min(60).optional() });
const userBody = z.strictObject({ email, password: z.string().max(1024).optional(), role: z.enum(['owner', 'admin', 'member']).optional() });
const roleBody = z.strictObject({ role: z.enum(['owner', 'admin', 'member']) });
const memberBody = z.strictObject({ email, role: z.enum(['admin', 'member']).optional() });
const agentBody = z.strictObject({ name, vaults: z.array(name).max(64).optional(), description: z.string().max(1024).optional() });
const vaultAgentBody = z.strictObject({ name });
const sessionBody = z.strictObject({ vault: name, ttl: z.union([z.number().int(), z.string().max(16)]).optional(), agent: name.optional() });
const grantBody = z.strictObject({
  secret: z.string().max(128).optional(), service: z.string().max(63).optional(), mode: z.enum(['use', 'read']).optional(),
  reason: z.string().max(1000).optional(), agent: name.optional(), expires: z.string().max(40).optional(),
});
const grantP = z.strictObject({ vault: name, id: z.string().min(1).max(64) });
const approveBody = z.strictObject({ expires: z.string().max(40).optional() }).optional();
const denyBody = z.strictObject({ reason: z.string().max(1000).optional() }).optional();
const grantQuery = z.strictObject({ status: z.enum(['pending', 'approved', 'denied', 'revoked', 'expired']).optional(), agent: name.optional() });
const vendP = z.strictObject({ name: z.string().min(1).max(128) });
const vendQ = z.strictObject({ vault: name.optional() });

export function accessRoutes(core: Core, opts: { secureCookies: boolean }) {
  return async (app: App) => {
    // ---- people's sessions and tokens
    app.post('/v1/auth/login', { config: { public: true, rateTier: 'login' }, schema: { summary: 'Email + password login; sets the console session cookie', tags: ['auth'], body: loginBody } },
      async (req: Req<z.infer<typeof loginBody>>, reply) => {
        const r = await core.auth.login(req.ctx, req.body.email, req.body.password);
        reply.setCookie(SESSION_COOKIE, r.cookie, { httpOnly: true, sameSite: 'strict', secure: opts.secureCookies, path: '/', expires: new Date(r.expiresAt) });
        return { user: r.user, expires_at: r.expiresAt };
      });
    app.post('/v1/auth/logout', { schema: { summary: 'End the console session, or revoke the API token used', tags: ['auth'] } }, async (req, reply) => {
      reply.clearCookie(SESSION_COOKIE, { path: '/' });
      return core.auth.logout(req.ctx);
    });
    app.patch('/v1/auth/me', { schema: { summary: 'Set your email and/or password (first run: the owner sets them with the printed token)', tags: ['auth'], body: meBody } },
      async (req: Req<z.infer<typeof meBody>>) => core.auth.updateSelf(req.ctx, req.body));
    app.get('/v1/tokens', { schema: { summary: 'Your API tokens (no values)', tags: ['auth'] } }, async (req) => ({ items: await core.auth.listApiTokens(req.ctx) }));
    app.post('/v1/tokens', { schema: { summary: 'Create an API token (shown once)', tags: ['auth'], body: tokenBody } }, async (req: Req<z.infer<typeof tokenBody>>, reply) => {
      reply.code(201);
      return core.auth.createApiToken(req.ctx, req.body.name, req.body.ttl);
    });
    app.delete('/v1/tokens/:id', { schema: { summary: 'Revoke one of your API tokens', tags: ['auth'], params: z.strictObject({ id: z.string().max(64) }) } },
      async (req: Req<unknown, unknown, { id: string }>) => core.auth.revokeApiToken(req.ctx, req.params.id));

    // ---- people (instance)
    app.get('/v1/users', { schema: { summary: 'People', tags: ['people'] } }, async (req) => ({ items: await core.access.listUsers(req.ctx) }));
    app.post('/v1/users', { schema: { summary: 'Add a person (returns an API token once)', tags: ['people'], body: userBody } }, async (req: Req<z.infer<typeof userBody>>, reply) => {
      reply.code(201);
      return core.access.createUser(req.ctx, req.body);
    });
    app.patch('/v1/users/:email', { schema: { summary: "Change a person's instance role (the last owner stays)", tags: ['people'], params: z.strictObject({ email }), body: roleBody } },
      async (req: Req<z.infer<typeof roleBody>, unknown, { email: string }>) => core.access.setUserRole(req.ctx, req.params.email, req.body.role));
    app.delete('/v1/users/:email', { schema: { summary: 'Remove a person (not the last owner)', tags: ['people'], params: z.strictObject({ email }) } },
      async (req: Req<unknown, unknown, { email: string }>) => core.access.removeUser(req.ctx, req.params.email));

    // ---- vault membership
    app.get('/v1/vaults/:vault/members', { schema: { summary: 'Members of a vault (people and agents)', tags: ['people'], params: vaultP } },
      async (req: Req<unknown, unknown, { vault: string }>) => ({ items: await core.access.listMembers(req.ctx, req.params.vault) }));
    app.post('/v1/vaults/:vault/members', { schema: { summary: 'Add a person to a vault (admin | member)', tags: ['people'], params: vaultP, body: memberBody } },
      async (req: Req<z.infer<typeof memberBody>, unknown, { vault: string }>, reply) => {
        reply.code(201);
        return core.access.addMember(req.ctx, req.params.vault, req.body);
      });
    app.delete('/v1/vaults/:vault/members/:email', { schema: { summary: 'Remove a person from a vault', tags: ['people'], params: z.strictObject({ vault: name, email }) } },
      async (req: Req<unknown, unknown, { vault: string; email: string }>) => core.access.removeMember(req.ctx, req.params.vault, req.params.email));
    app.get('/v1/vaults/:vault/agents', { schema: { summary: 'Agents in a vault', tags: ['agents'], params: vaultP } },
      async (req: Req<unknown, unknown, { vault: string }>) => ({ items: await core.access.listVaultAgents(req.ctx, req.params.vault) }));
    app.post('/v1/vaults/:vault/agents', { schema: { summary: 'Add an agent to a vault (role proxy)', tags: ['agents'], params: vaultP, body: vaultAgentBody } },
      async (req: Req<z.infer<typeof vaultAgentBody>, unknown, { vault: string }>, reply) => {
        reply.code(201);
        return core.access.addVaultAgent(req.ctx, req.params.vault, req.body.name);
      });
    app.delete('/v1/vaults/:vault/agents/:name', { schema: { summary: 'Remove an agent from a vault', tags: ['agents'], params: z.strictObject({ vault: name, name }) } },
      async (req: Req<unknown, unknown, { vault: string; name: string }>) => core.access.removeVaultAgent(req.ctx, req.params.vault, req.params.name));

    // ---- agents
    app.get('/v1/agents', { schema: { summary: 'Agents', tags: ['agents'] } }, async (req) => ({ items: await core.access.listAgents(req.ctx) }));
    app.post('/v1/agents', { schema: { summary: 'Create an agent (token shown once)', tags: ['agents'], body: agentBody } }, async (req: Req<z.infer<typeof agentBody>>, reply) => {
      reply.code(201);
      return core.access.createAgent(req.ctx, req.body);
    });
    app.delete('/v1/agents/:name', { schema: { summary: 'Revoke an agent (its tokens stop working on the next request)', tags: ['agents'], params: z.strictObject({ name }) } },
      async (req: Req<unknown, unknown, { name: string }>) => core.access.revokeAgent(req.ctx, req.params.name));
    app.post('/v1/agents/:name/rotate-token', { schema: { summary: "Replace an agent's token (shown once)", tags: ['agents'], params: z.strictObject({ name }) } },
      async (req: Req<unknown, unknown, { name: string }>) => core.access.rotateAgentToken(req.ctx, req.params.name));
    app.post('/v1/sessions', { schema: { summary: 'Short-lived agent session scoped to one vault (5 min to 7 days)', tags: ['agents'], body: sessionBody } },
      async (req: Req<z.infer<typeof sessionBody>>, reply) => {
        reply.code(201);
        return core.access.createSession(req.ctx, req.body);
      });

    // ---- grants
    app.get('/v1/vaults/:vault/grants', { schema: { summary: 'Grants (agents see their own)', tags: ['grants'], params: vaultP, querystring: grantQuery } },
      async (req: Req<unknown, z.infer<typeof grantQuery>, { vault: string }>) => ({ items: await core.grants.list(req.ctx, req.params.vault, req.query) }));
    app.post('/v1/vaults/:vault/grants', { config: { rateTier: 'request' }, schema: { summary: "An agent's access request, or a person's direct grant", tags: ['grants'], params: vaultP, body: grantBody } },
      async (req: Req<z.infer<typeof grantBody>, unknown, { vault: string }>, reply) => {
        const g = req.ctx.principal.kind === 'agent' ? await core.grants.request(req.ctx, req.params.vault, req.body) : await core.grants.create(req.ctx, req.params.vault, req.body);
        // a repeated request made nothing new: 200 with the pending one
        reply.code('duplicate' in g && g.duplicate ? 200 : 201);
        return g;
      });
    app.post('/v1/vaults/:vault/grants/:id/approve', { schema: { summary: 'Approve a request (optionally with an expiry: 1h, 7d or an ISO time)', tags: ['grants'], params: grantP, body: approveBody } },
      async (req: Req<z.infer<typeof approveBody>, unknown, { vault: string; id: string }>) => core.grants.approve(req.ctx, req.params.vault, req.params.id, req.body ?? {}));
    app.post('/v1/vaults/:vault/grants/:id/deny', { schema: { summary: 'Deny a request (with a reason)', tags: ['grants'], params: grantP, body: denyBody } },
      async (req: Req<z.infer<typeof denyBody>, unknown, { vault: string; id: string }>) => core.grants.deny(req.ctx, req.params.vault, req.params.id, req.body ?? {}));
    app.post('/v1/vaults/:vault/grants/:id/revoke', { schema: { summary: 'Revoke a grant (acts on the next request)', tags: ['grants'], params: grantP } },
      async (req: Req<unknown, unknown, { vault: string; id: string }>) => core.grants.revoke(req.ctx, req.params.vault, req.params.id));

    // ---- agents' side
    app.get('/v1/agent/secrets/:name', { schema: { summary: 'Vending: the value under an approved read grant, else 403 with the grant state', tags: ['grants'], params: vendP, querystring: vendQ } },
      async (req: Req<unknown, z.infer<typeof vendQ>, { name: string }>, reply) => {
        reply.header('Cache-Control', 'no-store');
        return core.grants.vend(req.ctx, req.params.name, req.query.vault);
      });
    app.get('/v1/discover', { schema: { summary: 'For an agent: its vaults, services, credential names, grants and how to ask for more', tags: ['grants'] } },
      async (req) => core.grants.discover(req.ctx));
  };
}
