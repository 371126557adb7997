/** Keys: status, rotate the key-encryption key, rewrap data keys onto the newest one. */
import { z } from 'zod';
import type { Core } from '../../core/core.js';
import type { App, Req } from '../http.js';

const rewrapBody = z.strictObject({ limit: z.number().int().min(1).max(1_000_000).optional() }).optional();

export function keyRoutes(core: Core) {
  return async (app: App) => {
    app.get('/v1/keys', { schema: { summary: 'Key status', tags: ['keys'] } }, async (req) => core.keys.status(req.ctx));
    app.post('/v1/keys/rotate', { schema: { summary: 'Add a key-encryption key version used for new writes', tags: ['keys'], body: z.strictObject({}).optional() } }, async (req) => core.keys.rotate(req.ctx));
    app.post('/v1/keys/rewrap', { schema: { summary: 'Re-wrap data keys onto the newest key-encryption key', tags: ['keys'], body: rewrapBody } },
      async (req: Req<{ limit?: number } | undefined>) => core.keys.rewrap(req.ctx, req.body ?? {}));
  };
}
