/** Secrets: metadata, values (audited reads), versions, rotation, rollback, migration, rotate-all. */
import { z } from 'zod';
import type { Core } from '../../core/core.js';
import { CATEGORIES } from '../../core/names.js';
import { MAX_VERSION, type CreateInput, type PutInput } from '../../core/secrets.js';
import { cursorQuery, intQuery, secretParam, vaultParam, type App, type Req } from '../http.js';

const category = z.enum(CATEGORIES);
const tags = z.array(z.string().max(64)).max(32);
const description = z.string().max(1024).nullable();
const value = z.string().max(65536);

const createBody = z.strictObject({
  name: z.string().max(128).optional(),
  value: value.optional(),
  preset: z.string().max(64).optional(),
  fields: z.record(z.string().max(64), value).optional(),
  category: category.optional(),
  description: description.optional(),
  tags: tags.optional(),
});
const putBody = z.strictObject({
  value,
  cas: z.number().int().min(0).optional(),
  category: category.optional(),
  description: description.optional(),
  tags: tags.optional(),
});
const listQuery = z.strictObject({ category: category.optional(), prefix: z.string().max(128).optional(), q: z.string().max(256).optional(), ...cursorQuery });
const valueQuery = z.strictObject({ version: intQuery(1, MAX_VERSION).optional() });
/** rotate takes no body (an empty one, or `{}`) */
const noBody = z.strictObject({}).optional();
const rollbackBody = z.strictObject({ version: z.number().int().min(1).max(MAX_VERSION) });
const migrateBody = z.strictObject({ to: z.string().min(1).max(63) });
const rotateAllBody = z.strictObject({ after: z.string().max(512).optional(), limit: z.number().int().min(1).max(1_000_000).optional() }).optional();

type P = { vault: string; name: string };

export function secretRoutes(core: Core) {
  return async (app: App) => {
    app.get('/v1/vaults/:vault/secrets', { schema: { summary: 'List secrets (metadata only)', tags: ['secrets'], params: vaultParam, querystring: listQuery } },
      async (req: Req<unknown, z.infer<typeof listQuery>, { vault: string }>) => core.secrets.list(req.ctx, req.params.vault, req.query));

    app.post('/v1/vaults/:vault/secrets', { schema: { summary: 'Create a secret, or every field of a platform preset; 409 if it exists', tags: ['secrets'], params: vaultParam, body: createBody } },
      async (req: Req<CreateInput, unknown, { vault: string }>, reply) => {
        const items = await core.secrets.create(req.ctx, req.params.vault, req.body);
        reply.code(201);
        return { items };
      });

    app.put('/v1/vaults/:vault/secrets/:name', { schema: { summary: 'Add a version (creates the secret if absent); optional check-and-set', tags: ['secrets'], params: secretParam, body: putBody } },
      async (req: Req<PutInput, unknown, P>, reply) => {
        const { secret, created } = await core.secrets.put(req.ctx, req.params.vault, req.params.name, req.body);
        reply.code(created ? 201 : 200);
        return secret;
      });

    app.get('/v1/vaults/:vault/secrets/:name', { schema: { summary: 'Metadata and versions', tags: ['secrets'], params: secretParam } },
      async (req: Req<unknown, unknown, P>) => core.secrets.get(req.ctx, req.params.vault, req.params.name));

    app.get('/v1/vaults/:vault/secrets/:name/value', { schema: { summary: 'Decrypt the current (or a given) version; audited secret.read; walks the fallback chain', tags: ['secrets'], params: secretParam, querystring: valueQuery } },
      async (req: Req<unknown, z.infer<typeof valueQuery>, P>, reply) => {
        reply.header('Cache-Control', 'no-store');
        return core.secrets.read(req.ctx, req.params.vault, req.params.name, req.query.version);
      });

    app.delete('/v1/vaults/:vault/secrets/:name', { schema: { summary: 'Delete permanently, all versions', tags: ['secrets'], params: secretParam } },
      async (req: Req<unknown, unknown, P>) => core.secrets.delete(req.ctx, req.params.vault, req.params.name));

    app.post('/v1/vaults/:vault/secrets/:name/rotate', { schema: { summary: 'Re-encrypt under a fresh data key; the value does not change', tags: ['secrets'], params: secretParam, body: noBody } },
      async (req: Req<unknown, unknown, P>) => core.secrets.rotate(req.ctx, req.params.vault, req.params.name));

    app.post('/v1/vaults/:vault/secrets/:name/rollback', { schema: { summary: 'New version holding the value of an older one', tags: ['secrets'], params: secretParam, body: rollbackBody } },
      async (req: Req<{ version: number }, unknown, P>) => core.secrets.rollback(req.ctx, req.params.vault, req.params.name, req.body.version));

    app.post('/v1/vaults/:vault/secrets/:name/migrate', { schema: { summary: 'Move the secret, every version, to another vault (re-sealed there); audited secret.migrate', tags: ['secrets'], params: secretParam, body: migrateBody } },
      async (req: Req<{ to: string }, unknown, P>) => core.secrets.migrate(req.ctx, req.params.vault, req.params.name, req.body));

    app.post('/v1/vaults/:vault/rotate-all', { schema: { summary: 'Re-encrypt every secret in the vault in crash-safe batches; returns counts', tags: ['secrets'], params: vaultParam, body: rotateAllBody } },
      async (req: Req<{ after?: string; limit?: number } | undefined, unknown, { vault: string }>) => core.secrets.rotateAll(req.ctx, req.params.vault, req.body ?? {}));
  };
}
