/** Vaults: list, create, update (fallback chain), delete with its secrets. */
import { z } from 'zod';
import type { Core } from '../../core/core.js';
import type { VaultInput } from '../../core/vaults.js';
import { intQuery, vaultParam, type App, type Req } from '../http.js';

const vaultName = z.string().min(1).max(63);
const createBody = z.strictObject({
  name: vaultName,
  description: z.string().max(1024).nullable().optional(),
  fallback: z.array(vaultName).max(8).optional(),
  passthrough: z.boolean().optional(),
});
const updateBody = createBody.omit({ name: true });
/** `expect_secrets`: delete only if the vault holds exactly this many secrets (what the caller confirmed) */
const deleteQuery = z.strictObject({ expect_secrets: intQuery(0, 2_147_483_647).optional() });

export function vaultRoutes(core: Core) {
  return async (app: App) => {
    app.get('/v1/vaults', { schema: { summary: 'List vaults', tags: ['vaults'] } }, async (req) => ({ items: await core.vaults.list(req.ctx) }));

    app.post('/v1/vaults', { schema: { summary: 'Create a vault', tags: ['vaults'], body: createBody } }, async (req: Req<VaultInput>, reply) => {
      reply.code(201);
      return core.vaults.create(req.ctx, req.body);
    });

    app.patch('/v1/vaults/:vault', { schema: { summary: 'Change a vault (fallback chain, description, passthrough)', tags: ['vaults'], params: vaultParam, body: updateBody } },
      async (req: Req<VaultInput, unknown, { vault: string }>) => core.vaults.update(req.ctx, req.params.vault, req.body));

    app.delete('/v1/vaults/:vault', { schema: { summary: 'Delete a vault and every secret in it (with expect_secrets, only if it holds exactly that many: else 409 vault_changed)', tags: ['vaults'], params: vaultParam, querystring: deleteQuery } },
      async (req: Req<unknown, z.infer<typeof deleteQuery>, { vault: string }>) => core.vaults.delete(req.ctx, req.params.vault, req.query.expect_secrets));
  };
}
