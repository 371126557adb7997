/** Health (public), status, presets, who-am-I. */
import { z } from 'zod';
import type { Core } from '../../core/core.js';
import { PRESETS } from '../../core/presets.js';
import type { App } from '../http.js';

export function systemRoutes(core: Core) {
  return async (app: App) => {
    app.get('/v1/health', { config: { public: true }, schema: { summary: 'Liveness (no auth)', tags: ['system'] } }, async () => ({ status: 'ok', version: core.info.version }));

    app.get('/v1/status', { schema: { summary: 'Storage backend, counts by category, keys, last rotation, audit head', tags: ['system'], querystring: z.strictObject({}) } }, async (req) => {
      await core.authorize(req.ctx, 'status.read');
      // instance admins see the whole instance, where the data lives, the keys and the audit head;
      // anyone else counts only the vaults they are in (the rest of the instance is not their business)
      const operator = await core.can(req.ctx, 'key.read', null);
      const vaults = await core.vaults.visible(req.ctx);
      const counts = await core.store.countSecrets(operator ? undefined : vaults.map((v) => v.id));
      const audit = operator ? await Promise.all([core.store.getAuditHead(), core.store.countAudit()]) : null;
      return {
        backend: core.store.backend,
        ...(operator ? { location: core.store.location } : {}),
        version: core.info.version,
        started_at: core.info.startedAt,
        vaults: vaults.length,
        secrets: counts.total,
        by_category: counts.byCategory,
        ...(operator ? { key: { kek_version: core.keyring.currentKekVersion, master_key_source: core.info.masterSource } } : {}),
        last_rotation: counts.lastRotatedAt,
        ...(audit ? { audit: { seq: audit[0].seq, hash: audit[0].hash, events: audit[1] } } : {}),
      };
    });

    app.get('/v1/presets', { schema: { summary: 'Platform presets: fields, optional fields and formats', tags: ['secrets'] } }, async () => ({ items: PRESETS }));

    app.get('/v1/auth/me', { schema: { summary: 'Who the bearer of this token is', tags: ['auth'], querystring: z.strictObject({}) } }, async (req) => core.auth.me(req.ctx));
  };
}
