/** Proposals: an agent proposes services and credential slots; a person reviews and approves or rejects. */
import { z } from 'zod';
import type { Core } from '../../core/core.js';
import { PROPOSAL_LIMITS, PROPOSAL_STATES } from '../../core/proposals.js';
import { vaultParam, type App, type Req } from '../http.js';
import { serviceSpec } from './services.js';

const value = z.string().max(PROPOSAL_LIMITS.valueBytes);
const slot = z.strictObject({
  action: z.enum(['set', 'delete']),
  key: z.string().min(1).max(128),
  description: z.string().max(PROPOSAL_LIMITS.description).nullable().optional(),
  obtain: z.string().max(PROPOSAL_LIMITS.obtainUrl).nullable().optional(),
  obtain_instructions: z.string().max(PROPOSAL_LIMITS.instructions).nullable().optional(),
  value: value.optional(),
});
const createBody = z.strictObject({
  message: z.string().max(PROPOSAL_LIMITS.message).optional(),
  services: z.array(serviceSpec).max(PROPOSAL_LIMITS.services).optional(),
  credentials: z.array(slot).max(PROPOSAL_LIMITS.credentials).optional(),
});
const listQuery = z.strictObject({ status: z.enum(PROPOSAL_STATES).optional() });
const proposalP = z.strictObject({ vault: z.string().min(1).max(63), id: z.string().min(1).max(64) });
const approveBody = z.strictObject({ credentials: z.record(z.string().min(1).max(128), value).optional() }).optional();
const rejectBody = z.strictObject({ reason: z.string().max(PROPOSAL_LIMITS.reason).optional() }).optional();
const approvalQuery = z.strictObject({ token: z.string().min(1).max(128) });

/** Room for 50 slots of 64 KiB each (the default body limit is 1 MiB). */
const BODY_LIMIT = 4 * 1024 * 1024;

type P = { vault: string; id: string };

/** `publicUrl`: the address people reach the console at (ending in '/'); the approval URL is absolute under it. */
export function proposalRoutes(core: Core, publicUrl: () => string | null = () => null) {
  return async (app: App) => {
    app.get('/v1/vaults/:vault/proposals', { schema: { summary: 'Proposals of a vault (agents see their own); ?status=pending|approved|rejected|expired', tags: ['proposals'], params: vaultParam, querystring: listQuery } },
      async (req: Req<unknown, z.infer<typeof listQuery>, { vault: string }>) => ({ items: await core.proposals.list(req.ctx, req.params.vault, req.query) }));

    app.post('/v1/vaults/:vault/proposals', {
      bodyLimit: BODY_LIMIT, config: { rateTier: 'proposal' },
      schema: { summary: 'An agent proposes services and credential slots; returns the approval URL (lk_appr_ token, read-only, 24 h) for a person', tags: ['proposals'], params: vaultParam, body: createBody },
    }, async (req: Req<z.infer<typeof createBody>, unknown, { vault: string }>, reply) => {
      reply.code(201);
      const created = await core.proposals.create(req.ctx, req.params.vault, req.body);
      const base = publicUrl();
      // under the public URL's path too (https://example.com/latchkey/approve?…): `base` ends in '/'
      return base ? { ...created, approval_url: new URL(created.approval_url.replace(/^\//, ''), base).toString() } : created;
    });

    app.get('/v1/vaults/:vault/proposals/:id', { schema: { summary: 'One proposal: services with their diff, slots, new-host warnings (never a value)', tags: ['proposals'], params: proposalP } },
      async (req: Req<unknown, unknown, P>) => core.proposals.get(req.ctx, req.params.vault, req.params.id));

    app.post('/v1/vaults/:vault/proposals/:id/approve', {
      bodyLimit: BODY_LIMIT,
      schema: { summary: 'A person approves, supplying {credentials: {KEY: value}}; applies every change in one transaction, once', tags: ['proposals'], params: proposalP, body: approveBody },
    }, async (req: Req<z.infer<typeof approveBody>, unknown, P>) => core.proposals.approve(req.ctx, req.params.vault, req.params.id, req.body ?? {}));

    app.post('/v1/vaults/:vault/proposals/:id/reject', { schema: { summary: 'A person rejects (with an optional reason)', tags: ['proposals'], params: proposalP, body: rejectBody } },
      async (req: Req<z.infer<typeof rejectBody>, unknown, P>) => core.proposals.reject(req.ctx, req.params.vault, req.params.id, req.body ?? {}));

    app.get('/v1/proposals/approval', {
      config: { public: true },
      schema: { summary: 'Read a proposal by its approval token (the token is the credential; read-only: approving needs a signed-in person)', tags: ['proposals'], security: [], querystring: approvalQuery },
    }, async (req: Req<unknown, z.infer<typeof approvalQuery>>) => core.proposals.getByApprovalToken(req.query.token));
  };
}
