/** Services: how a credential is attached to outbound requests (host matcher, auth rule, limits). */
import { z } from 'zod';
import type { Core } from '../../core/core.js';
import { vaultParam, type App, type Req } from '../http.js';

const key = z.string().min(1).max(128);
/** An auth rule; core validates names, header tokens and placeholders and reports the failing field. */
export const authRule = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('bearer'), key }),
  z.strictObject({ type: z.literal('basic'), username_key: key, password_key: key.optional() }),
  z.strictObject({ type: z.literal('header'), name: z.string().min(1).max(128), key, prefix: z.string().max(256).optional() }),
  z.strictObject({ type: z.literal('query'), param: z.string().min(1).max(128), key }),
  z.strictObject({ type: z.literal('template'), headers: z.record(z.string().min(1).max(128), z.string().max(4096)) }),
]);

const specFields = {
  host: z.string().min(1).max(800),
  auth: authRule,
  methods: z.array(z.string().min(1).max(20)).max(16).optional(),
  path_prefixes: z.array(z.string().min(1).max(512)).max(32).optional(),
  quota_per_minute: z.number().int().min(1).max(100_000).nullable().optional(),
  enabled: z.boolean().optional(),
  description: z.string().max(1024).nullable().optional(),
};
const serviceName = z.string().min(1).max(63);
/** A service spec with its name (POST, proposals). */
export const serviceSpec = z.strictObject({ name: serviceName, ...specFields });
/** A service spec without a name (PUT: the path names it). */
const putBody = z.strictObject(specFields);
const serviceP = z.strictObject({ vault: z.string().min(1).max(63), name: serviceName });

type P = { vault: string; name: string };

export function serviceRoutes(core: Core) {
  return async (app: App) => {
    app.get('/v1/vaults/:vault/services', { schema: { summary: 'Services of a vault (people and its agents)', tags: ['services'], params: vaultParam } },
      async (req: Req<unknown, unknown, { vault: string }>) => ({ items: await core.services.list(req.ctx, req.params.vault) }));

    app.post('/v1/vaults/:vault/services', { schema: { summary: 'Create a service; 409 if one of that name exists; every referenced credential must exist', tags: ['services'], params: vaultParam, body: serviceSpec } },
      async (req: Req<z.infer<typeof serviceSpec>, unknown, { vault: string }>, reply) => {
        reply.code(201);
        return core.services.create(req.ctx, req.params.vault, req.body);
      });

    app.get('/v1/vaults/:vault/services/:name', { schema: { summary: 'One service', tags: ['services'], params: serviceP } },
      async (req: Req<unknown, unknown, P>) => core.services.get(req.ctx, req.params.vault, req.params.name));

    app.put('/v1/vaults/:vault/services/:name', { schema: { summary: 'Create or replace a service (absent optional fields take their defaults)', tags: ['services'], params: serviceP, body: putBody } },
      async (req: Req<z.infer<typeof putBody>, unknown, P>, reply) => {
        const { service, created } = await core.services.set(req.ctx, req.params.vault, req.params.name, req.body);
        reply.code(created ? 201 : 200);
        return service;
      });

    app.delete('/v1/vaults/:vault/services/:name', { schema: { summary: 'Delete a service (its grants are revoked)', tags: ['services'], params: serviceP } },
      async (req: Req<unknown, unknown, P>) => core.services.delete(req.ctx, req.params.vault, req.params.name));
  };
}
