/** Audit: query with filters and cursor, verify the chain (optionally against a checkpoint), export a checkpoint. */
import { z } from 'zod';
import type { Checkpoint } from '../../core/audit.js';
import type { Core } from '../../core/core.js';
import { invalid } from '../../core/errors.js';
import { isoTime } from '../../core/time.js';
import { intQuery, type App, type Req } from '../http.js';

const time = z.string().max(40);
const query = z.strictObject({
  vault: z.string().max(63).optional(),
  actor: z.string().max(320).optional(),
  agent: z.string().max(128).optional(),
  secret: z.string().max(128).optional(),
  action: z.string().max(64).optional(),
  outcome: z.enum(['ok', 'denied', 'error']).optional(),
  since: time.optional(),
  until: time.optional(),
  q: z.string().max(256).optional(),
  limit: intQuery(1, 1000).optional(),
  cursor: z.string().regex(/^[0-9]{1,15}$/).optional(),
});
const checkpoint = z.strictObject({ seq: z.number().int().min(0), hash: z.string().max(128), ts: z.string().max(40), mac: z.string().max(128) });
const verifyBody = z.strictObject({ checkpoint: checkpoint.optional() });

/** A date, or a date and time with an optional zone: `2026-11-30`, `2026-11-30T08:00:00Z`, `…+01:00` (not `1`, not `-1`). */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;

function timeParam(v: string | undefined, field: string): string | undefined {
  if (v === undefined) return undefined;
  const t = ISO_TIME.test(v) ? Date.parse(v) : Number.NaN;
  if (Number.isNaN(t)) throw invalid(field, 'must be an ISO-8601 time');
  return isoTime(t, field);
}

export function auditRoutes(core: Core) {
  return async (app: App) => {
    app.get('/v1/audit', { schema: { summary: 'Query audit events, newest first', tags: ['audit'], querystring: query } }, async (req: Req<unknown, z.infer<typeof query>>) => {
      const q = req.query;
      // the whole log is for instance admins; a vault's admins may read the events of their vault
      const vault = q.vault ? await core.store.getVault(q.vault) : null;
      await core.authorize(req.ctx, 'audit.read', vault);
      if (q.agent && q.actor) throw invalid('agent', 'give either actor or agent, not both');
      // events name their vault by name: a vault's admin reads its events from its creation on, not
      // those of an earlier, deleted vault that had the same name (instance admins read everything)
      let since = timeParam(q.since, 'since');
      if (vault && (!since || since < vault.created_at) && !(await core.can(req.ctx, 'audit.read', null))) since = vault.created_at;
      return core.audit.query(core.store, {
        vault: q.vault, actor: q.actor, agent: q.agent, secret: q.secret, action: q.action, outcome: q.outcome,
        since, until: timeParam(q.until, 'until'), q: q.q, limit: q.limit ?? 100,
        beforeSeq: q.cursor ? Number(q.cursor) : undefined,
      });
    });

    app.get('/v1/audit/verify', { schema: { summary: 'Verify the hash chain', tags: ['audit'] } }, async (req) => {
      await core.authorize(req.ctx, 'audit.verify');
      return core.audit.verify(core.store);
    });

    app.post('/v1/audit/verify', { schema: { summary: 'Verify the hash chain and that nothing after a checkpoint was truncated', tags: ['audit'], body: verifyBody } },
      async (req: Req<z.infer<typeof verifyBody>>) => {
        await core.authorize(req.ctx, 'audit.verify');
        return core.audit.verify(core.store, (req.body?.checkpoint as Checkpoint | undefined) ?? null);
      });

    const pruneBody = z.strictObject({ before: time });
    app.post('/v1/audit/prune', { schema: { summary: 'Retention: delete events older than `before`; the chain re-anchors and still verifies', tags: ['audit'], body: pruneBody } },
      async (req: Req<z.infer<typeof pruneBody>>) => {
        await core.authorize(req.ctx, 'audit.prune');
        return core.audit.prune(core.store, req.ctx, timeParam(req.body.before, 'before')!);
      });

    app.get('/v1/audit/checkpoint', { schema: { summary: 'Export a signed checkpoint of the chain head', tags: ['audit'] } }, async (req) => {
      await core.authorize(req.ctx, 'audit.verify');
      return core.audit.checkpoint(core.store);
    });
  };
}
