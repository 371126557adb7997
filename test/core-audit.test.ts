/**
 * The audit log through core, on SQLite and PostgreSQL: fail closed (an event that cannot be
 * written fails the operation and leaves the data as it was), tamper evidence as `latchkey audit
 * verify` sees it (altered, deleted, inserted, reordered events; a truncated tail against a
 * checkpoint; a forged checkpoint), several writers at once (two server processes on PostgreSQL),
 * retention, every query filter with cursor pagination, and the JSON-lines sink. A sentinel value
 * is stored in secrets throughout and must never appear in an audit row or the sink.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { newKeyringRows, Keyring } from '../src/crypto/keyring.js';
import { AuditLog, type Checkpoint } from '../src/core/audit.js';
import { openCore } from '../src/core/bootstrap.js';
import type { Core } from '../src/core/core.js';
import { LatchkeyError } from '../src/core/errors.js';
import type { OpContext } from '../src/core/principal.js';
import type { Store } from '../src/store/store.js';
import { describeBackends } from './helpers/backends.js';
import { openRaw, type RawSql, type SqlRow } from './helpers/raw-sql.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const MASTER = 'a7'.repeat(32);
const SENTINEL = 'SENTINEL_VALUE_9c41f07e_never_in_audit';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
type EventRow = SqlRow & { seq: number };
const COLS = ['seq', 'id', 'ts', 'actor', 'action', 'vault', 'target', 'outcome', 'ip', 'request_id', 'details', 'prev_hash', 'hash'] as const;

async function rejects(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected the operation to fail');
}

describeBackends('core audit', (ctx) => {
  let core: Core;
  let owner: OpContext;
  let raw: RawSql;
  let auditFile: string;

  const asCtx = async (token: string): Promise<OpContext> => ({ principal: await core.auth.authenticate(token), ip: '203.0.113.7', requestId: `req-${randomBytes(4).toString('hex')}` });
  const verify = (cp?: Checkpoint | null) => core.audit.verify(core.store, cp ?? null);
  const events = async (): Promise<EventRow[]> => (await raw.all('select * from audit_events order by seq')).map((r) => ({ ...r, seq: Number(r.seq) }) as EventRow);
  const head = async () => {
    const h = (await raw.all('select * from audit_head where id = 1'))[0]!;
    return { seq: Number(h.seq), hash: String(h.hash), anchor_seq: Number(h.anchor_seq), anchor_hash: String(h.anchor_hash) };
  };

  /** The audit table and head as they are, and a way to put them back exactly. */
  async function snapshot() {
    const rows = await events();
    const h = await head();
    return async () => {
      await raw.run('delete from audit_events');
      for (const r of rows) await raw.run(`insert into audit_events (${COLS.join(', ')}) values (${COLS.map(() => '?').join(', ')})`, COLS.map((c) => r[c]));
      await raw.run('update audit_head set seq = ?, hash = ?, anchor_seq = ?, anchor_hash = ? where id = 1', [h.seq, h.hash, h.anchor_seq, h.anchor_hash]);
      expect((await verify()).ok).toBe(true);
    };
  }

  /** Moves events with seq > k up by `by` (two steps, so no primary-key clash on either backend). */
  async function shiftAfter(k: number, by: number) {
    await raw.run('update audit_events set seq = seq + 1000000 where seq > ?', [k]);
    await raw.run('update audit_events set seq = seq - ? where seq > 1000000', [1000000 - by]);
  }

  beforeAll(async () => {
    auditFile = join(ctx.home, 'audit.jsonl');
    const opened = await openCore({ home: ctx.home, databaseUrl: ctx.databaseUrl, allowInit: true, auditFile, env: { LATCHKEY_MASTER_KEY: MASTER } });
    core = opened.core;
    owner = await asCtx(opened.initialized!.ownerToken);
    raw = await openRaw(ctx);
    for (let i = 0; i < 6; i++) await core.secrets.put(owner, 'default', `SEED_${i}`, { value: `${SENTINEL}-${i}` });
    await core.secrets.read(owner, 'default', 'SEED_0');
  });

  afterAll(async () => {
    await core?.close();
    await raw?.close();
  });

  // ---- fail closed

  it('fails closed: when the audit event cannot be written, create/update/delete/rotate/read fail and nothing changes', async () => {
    await core.secrets.put(owner, 'default', 'FC_KEY', { value: `${SENTINEL}-fc-1` });
    const before = await raw.dump();
    if (ctx.backend === 'sqlite') {
      await raw.run("CREATE TRIGGER lk_block_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit store unavailable'); END");
    } else {
      await raw.run("CREATE FUNCTION lk_block_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit store unavailable'; END $$");
      await raw.run('CREATE TRIGGER lk_block_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION lk_block_audit()');
    }
    try {
      const attempts: Array<[string, () => Promise<unknown>]> = [
        ['create', () => core.secrets.create(owner, 'default', { name: 'FC_NEW', value: `${SENTINEL}-new` })],
        ['put (create)', () => core.secrets.put(owner, 'default', 'FC_NEW2', { value: `${SENTINEL}-new2` })],
        ['update', () => core.secrets.put(owner, 'default', 'FC_KEY', { value: `${SENTINEL}-fc-2` })],
        ['rotate', () => core.secrets.rotate(owner, 'default', 'FC_KEY')],
        ['delete', () => core.secrets.delete(owner, 'default', 'FC_KEY')],
        ['rollback', () => core.secrets.rollback(owner, 'default', 'FC_KEY', 1)],
        ['rotate all', () => core.secrets.rotateAll(owner, 'default')],
        ['read', () => core.secrets.read(owner, 'default', 'FC_KEY')],
        ['key rotate', () => core.keys.rotate(owner)],
        ['vault create', () => core.vaults.create(owner, { name: 'fc-vault' })],
      ];
      for (const [what, op] of attempts) {
        const err = await rejects(op());
        expect(String((err as Error).message), what).not.toContain(SENTINEL);
      }
      expect(await raw.dump()).toEqual(before);
      expect(core.keyring.currentKekVersion).toBe(1);
    } finally {
      await raw.run('DROP TRIGGER lk_block_audit' + (ctx.backend === 'postgres' ? ' ON audit_events' : ''));
      if (ctx.backend === 'postgres') await raw.run('DROP FUNCTION lk_block_audit()');
    }
    // the trigger is gone: the same operations work again, and the chain is intact
    await core.secrets.put(owner, 'default', 'FC_KEY', { value: `${SENTINEL}-fc-2` });
    await core.secrets.rotate(owner, 'default', 'FC_KEY');
    expect((await core.secrets.read(owner, 'default', 'FC_KEY')).value).toBe(`${SENTINEL}-fc-2`);
    await core.secrets.delete(owner, 'default', 'FC_KEY');
    const tail = (await events()).slice(-4).map((e) => `${e.action}:${e.target}`);
    expect(tail).toEqual(['secret.update:FC_KEY', 'secret.rotate:FC_KEY', 'secret.read:FC_KEY', 'secret.delete:FC_KEY']);
    expect((await verify()).ok).toBe(true);
  });

  // ---- tamper evidence

  it('an untouched chain verifies; every event links to the previous one', async () => {
    const r = await verify();
    const rows = await events();
    expect(r).toMatchObject({ ok: true, first_bad: null, checkpoint: null, checked: rows.length, head: { seq: rows.at(-1)!.seq, hash: rows.at(-1)!.hash } });
    expect(rows.map((e) => e.seq)).toEqual(rows.map((_, i) => i + 1));
    for (let i = 1; i < rows.length; i++) expect(rows[i]!.prev_hash).toBe(rows[i - 1]!.hash);
  });

  it('detects an altered event (any column) and names it', async () => {
    const restore = await snapshot();
    const rows = await events();
    const k = rows[Math.floor(rows.length / 2)]!.seq;
    for (const [col, value] of [['target', 'SOMETHING_ELSE'], ['actor', 'system'], ['outcome', 'denied'], ['details', '{}'], ['ts', '2001-01-01T00:00:00.000Z'], ['ip', '10.9.9.9'], ['action', 'secret.rollback']] as const) {
      await raw.run(`update audit_events set ${col} = ? where seq = ?`, [value, k]);
      const r = await verify();
      expect(r.ok, col).toBe(false);
      expect(r.first_bad, col).toEqual({ seq: k, reason: expect.stringMatching(/altered/) });
      await restore();
    }
    // the stored hash itself, or the prev link
    await raw.run('update audit_events set hash = ? where seq = ?', ['0'.repeat(64), k]);
    expect((await verify()).first_bad?.seq).toBe(k);
    await restore();
    await raw.run('update audit_events set prev_hash = ? where seq = ?', ['0'.repeat(64), k]);
    expect((await verify()).first_bad).toEqual({ seq: k, reason: expect.stringMatching(/link/) });
    await restore();
  });

  it('detects a deleted event (middle, first, last)', async () => {
    const restore = await snapshot();
    const rows = await events();
    const k = rows[3]!.seq;
    await raw.run('delete from audit_events where seq = ?', [k]);
    let r = await verify();
    expect(r.ok).toBe(false);
    expect(r.first_bad).toEqual({ seq: k + 1, reason: expect.stringMatching(/missing/) });
    await restore();
    // deleting and renumbering to hide the gap breaks the link instead
    await raw.run('delete from audit_events where seq = ?', [k]);
    await shiftAfter(k, -1);
    await raw.run('update audit_head set seq = seq - 1 where id = 1');
    r = await verify();
    expect(r.first_bad).toEqual({ seq: k, reason: expect.stringMatching(/link|altered/) });
    await restore();
    await raw.run('delete from audit_events where seq = 1');
    expect((await verify()).first_bad?.seq).toBe(2);
    await restore();
    const last = rows.at(-1)!.seq;
    await raw.run('delete from audit_events where seq = ?', [last]);
    r = await verify();
    expect(r.ok).toBe(false);
    expect(r.first_bad).toEqual({ seq: last, reason: expect.stringMatching(/head/) });
    await restore();
  });

  it('detects an inserted event (forged in the middle, replayed at the tail)', async () => {
    const restore = await snapshot();
    const rows = await events();
    const k = rows[2]!.seq;
    const src = rows[2]!;
    await shiftAfter(k, 1);
    await raw.run(`insert into audit_events (${COLS.join(', ')}) values (${COLS.map(() => '?').join(', ')})`,
      COLS.map((c) => (c === 'seq' ? k + 1 : c === 'id' ? 'forged-0000' : c === 'prev_hash' ? src.hash : c === 'target' ? 'INSERTED' : src[c])));
    await raw.run('update audit_head set seq = seq + 1 where id = 1');
    let r = await verify();
    expect(r.ok).toBe(false);
    expect(r.first_bad).toEqual({ seq: k + 1, reason: expect.stringMatching(/altered/) });
    await restore();
    // an exact copy of an earlier event replayed as the newest one (head moved along)
    const h = await head();
    const copy = rows[1]!;
    await raw.run(`insert into audit_events (${COLS.join(', ')}) values (${COLS.map(() => '?').join(', ')})`, COLS.map((c) => (c === 'seq' ? h.seq + 1 : copy[c])));
    await raw.run('update audit_head set seq = ?, hash = ? where id = 1', [h.seq + 1, copy.hash]);
    r = await verify();
    expect(r.first_bad).toEqual({ seq: h.seq + 1, reason: expect.stringMatching(/link/) });
    await restore();
    // a row added past the head without moving the head
    await raw.run(`insert into audit_events (${COLS.join(', ')}) values (${COLS.map(() => '?').join(', ')})`, COLS.map((c) => (c === 'seq' ? h.seq + 1 : c === 'prev_hash' ? h.hash : copy[c])));
    r = await verify();
    expect(r.ok).toBe(false);
    expect(r.first_bad?.seq).toBe(h.seq + 1);
    await restore();
    // the head row deleted: reported as tampering, not an internal error
    await raw.run('delete from audit_head where id = 1');
    r = await verify();
    expect(r).toMatchObject({ ok: false, first_bad: { seq: 0, reason: expect.stringMatching(/head record .* missing/) } });
    await raw.run('insert into audit_head (id, seq, hash, anchor_seq, anchor_hash) values (1, ?, ?, ?, ?)', [h.seq, h.hash, h.anchor_seq, h.anchor_hash]);
    await restore();
    // rows numbered at or below the start of the chain (0, negative): the walk starts after them,
    // but a query lists them, so verify must report them
    for (const seq of [0, -7]) {
      await raw.run(`insert into audit_events (${COLS.join(', ')}) values (${COLS.map(() => '?').join(', ')})`,
        COLS.map((c) => (c === 'seq' ? seq : c === 'id' ? `forged-below-${-seq}` : c === 'actor' ? 'user:alice@example.test' : copy[c])));
      r = await verify();
      expect(r.ok, `seq ${seq}`).toBe(false);
      expect(r.first_bad, `seq ${seq}`).toEqual({ seq, reason: expect.stringMatching(/inserted/) });
      await restore();
    }
  });

  it('detects reordered events (seq numbers swapped, ids swapped, contents swapped)', async () => {
    const restore = await snapshot();
    const rows = await events();
    const a = rows[3]!, b = rows[4]!;
    await raw.run('update audit_events set seq = -1 where seq = ?', [a.seq]);
    await raw.run('update audit_events set seq = ? where seq = ?', [a.seq, b.seq]);
    await raw.run('update audit_events set seq = ? where seq = -1', [b.seq]);
    let r = await verify();
    expect(r.ok).toBe(false);
    expect(r.first_bad?.seq).toBe(a.seq);
    await restore();
    await raw.run('update audit_events set id = ? where seq = ?', [b.id, a.seq]);
    await raw.run('update audit_events set id = ? where seq = ?', [a.id, b.seq]);
    r = await verify();
    expect(r.first_bad).toEqual({ seq: a.seq, reason: expect.stringMatching(/altered/) });
    await restore();
    // every column but seq swapped (both rows keep a valid-looking hash of their own)
    const others = COLS.filter((c) => c !== 'seq');
    const set = others.map((c) => `${c} = ?`).join(', ');
    await raw.run(`update audit_events set ${set} where seq = ?`, [...others.map((c) => b[c]), a.seq]);
    await raw.run(`update audit_events set ${set} where seq = ?`, [...others.map((c) => a[c]), b.seq]);
    r = await verify();
    expect(r.ok).toBe(false);
    expect(r.first_bad?.seq).toBe(a.seq);
    await restore();
  });

  it('detects events deleted from the start when the anchor is moved to hide it', async () => {
    const restore = await snapshot();
    const rows = await events();
    const cut = rows[4]!;
    await raw.run('delete from audit_events where seq <= ?', [cut.seq]);
    await raw.run('update audit_head set anchor_seq = ?, anchor_hash = ? where id = 1', [cut.seq, cut.hash]);
    const r = await verify();
    expect(r.ok).toBe(false);
    expect(r.first_bad).toEqual({ seq: cut.seq + 1, reason: expect.stringMatching(/anchor/) });
    await restore();
  });

  it('a verify running while another writer commits does not report tampering', async () => {
    // another replica commits between two reads of the walk
    let calls = 0;
    const racing = new Proxy(core.store, {
      get(target, prop, receiver) {
        if (prop === 'auditRange') {
          return async (after: number, limit: number) => {
            const rows = await target.auditRange(after, limit);
            if (calls++ === 0) {
              await core.secrets.put(owner, 'default', 'MIDWALK', { value: `${SENTINEL}-midwalk` });
              await core.secrets.read(owner, 'default', 'MIDWALK');
            }
            return rows;
          };
        }
        const v = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    }) as Store;
    const r = await core.audit.verify(racing);
    expect(r.first_bad).toBeNull();
    expect(r.ok).toBe(true);
    expect(calls).toBeGreaterThan(0);
    // and concurrently for real: writes and verifies interleaved
    const writes = Promise.all(Array.from({ length: 20 }, (_, i) => core.secrets.put(owner, 'default', `RACE_${i}`, { value: `${SENTINEL}-race` })));
    const checks = await Promise.all(Array.from({ length: 5 }, () => verify()));
    await writes;
    for (const c of checks) expect(c.ok).toBe(true);
    expect((await verify()).ok).toBe(true);
  });

  // ---- checkpoints and truncation

  it('a checkpoint detects truncation of the tail, even when the head is rewritten to match', async () => {
    const cp = await core.audit.checkpoint(core.store);
    const h = await head();
    expect(cp).toMatchObject({ seq: h.seq, hash: h.hash, ts: expect.any(String), mac: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(await verify(cp)).toMatchObject({ ok: true, checkpoint: { seq: cp.seq, ok: true, reason: null } });
    await core.secrets.put(owner, 'default', 'AFTER_CP', { value: `${SENTINEL}-after` });
    expect(await verify(cp)).toMatchObject({ ok: true, checkpoint: { ok: true } });

    const restore = await snapshot();
    const rows = await events();
    const keep = rows.find((e) => e.seq === cp.seq - 3)!;
    await raw.run('delete from audit_events where seq > ?', [keep.seq]);
    // without fixing the head: caught even without a checkpoint
    expect((await verify()).first_bad).toEqual({ seq: keep.seq + 1, reason: expect.stringMatching(/head/) });
    // head rewritten to the new last event: the chain alone looks fine, the checkpoint does not
    await raw.run('update audit_head set seq = ?, hash = ? where id = 1', [keep.seq, keep.hash]);
    expect((await verify()).ok).toBe(true);
    const r = await verify(cp);
    expect(r.ok).toBe(false);
    expect(r.checkpoint).toEqual({ seq: cp.seq, ok: false, reason: expect.stringMatching(/truncated/) });
    // everything wiped and the head reset to genesis
    await raw.run('delete from audit_events');
    await raw.run("update audit_head set seq = 0, hash = anchor_hash where id = 1");
    expect(await verify(cp)).toMatchObject({ ok: false, checkpoint: { ok: false, reason: expect.stringMatching(/truncated/) } });
    await restore();
    // the event at the checkpoint replaced by another one
    await raw.run('update audit_events set hash = ? where seq = ?', ['f'.repeat(64), cp.seq]);
    expect(await verify(cp)).toMatchObject({ ok: false, checkpoint: { ok: false } });
    await restore();
  });

  it('a forged or foreign checkpoint is rejected; a malformed one is a 400', async () => {
    const cp = await core.audit.checkpoint(core.store);
    for (const forged of [
      { ...cp, seq: cp.seq - 2 },
      { ...cp, seq: cp.seq + 5 },
      { ...cp, hash: 'e'.repeat(64) },
      { ...cp, ts: '2020-01-01T00:00:00.000Z' },
      { ...cp, mac: cp.mac.replace(/^./, (c) => (c === '0' ? '1' : '0')) },
      { ...cp, mac: '' },
    ]) {
      const r = await verify(forged);
      expect(r.ok).toBe(false);
      expect(r.checkpoint).toEqual({ seq: forged.seq, ok: false, reason: expect.stringMatching(/not made by this instance or was altered/) });
    }
    // made by another instance (another audit key) for the same head
    const otherMaster = randomBytes(32);
    const other = new Keyring(otherMaster);
    other.load(newKeyringRows(otherMaster));
    const foreign = { ...cp, mac: new AuditLog(other).checkpointMac(cp.seq, cp.hash, cp.ts) };
    expect((await verify(foreign)).checkpoint?.ok).toBe(false);
    const e = await rejects(verify({ seq: cp.seq, hash: cp.hash } as Checkpoint));
    expect(e).toBeInstanceOf(LatchkeyError);
    expect((e as LatchkeyError).status).toBe(400);
    expect((await verify(cp)).ok).toBe(true);
  });

  // ---- retention

  it('retention prune deletes old events and leaves a chain that still verifies (and keeps verifying)', async () => {
    const cpOld = await core.audit.checkpoint(core.store);
    await sleep(5);
    const before = new Date().toISOString();
    await sleep(5);
    await core.secrets.put(owner, 'default', 'AFTER_PRUNE_POINT', { value: `${SENTINEL}-p` });
    const all = await events();
    const old = all.filter((e) => String(e.ts) < before);
    expect(old.length).toBeGreaterThan(10);
    const res = await core.audit.prune(core.store, owner, before);
    expect(res).toEqual({ pruned: old.length, anchor_seq: old.at(-1)!.seq });
    const left = await events();
    expect(left[0]!.seq).toBe(old.at(-1)!.seq + 1);
    expect(left.at(-1)).toMatchObject({ action: 'audit.prune', actor: 'user:owner' });
    expect(JSON.parse(String(left.at(-1)!.details))).toMatchObject({ pruned: old.length, anchor_seq: old.at(-1)!.seq, anchor_hash: old.at(-1)!.hash });
    let r = await verify();
    expect(r).toMatchObject({ ok: true, checked: left.length, anchor: { seq: old.at(-1)!.seq, hash: old.at(-1)!.hash } });
    // a checkpoint older than the retained log is fine; a newer one is checked
    expect(await verify(cpOld)).toMatchObject({ ok: true, checkpoint: { ok: true } });
    await core.secrets.put(owner, 'default', 'AFTER_PRUNE', { value: `${SENTINEL}-p2` });
    const cp = await core.audit.checkpoint(core.store);
    expect((await verify(cp)).ok).toBe(true);
    // a second prune (which removes the first prune's event) re-anchors again
    await sleep(5);
    const before2 = new Date().toISOString();
    await sleep(5);
    await core.secrets.read(owner, 'default', 'AFTER_PRUNE');
    const res2 = await core.audit.prune(core.store, owner, before2);
    expect(res2.pruned).toBeGreaterThan(0);
    r = await verify(cp);
    expect(r).toMatchObject({ ok: true, anchor: { seq: res2.anchor_seq } });
    // nothing older than the anchor: a no-op
    expect(await core.audit.prune(core.store, owner, '2000-01-01T00:00:00.000Z')).toEqual({ pruned: 0, anchor_seq: res2.anchor_seq });
    // moving the anchor further by hand (deleting retained events) is caught
    const restore = await snapshot();
    const rows = await events();
    await raw.run('delete from audit_events where seq <= ?', [rows[1]!.seq]);
    await raw.run('update audit_head set anchor_seq = ?, anchor_hash = ? where id = 1', [rows[1]!.seq, rows[1]!.hash]);
    expect((await verify()).first_bad?.reason).toMatch(/anchor/);
    await restore();
  });

  // ---- query

  it('queries by vault, actor, agent, secret, action (exact and prefix), outcome, time range and free text, newest first with a cursor', async () => {
    await core.vaults.create(owner, { name: 'qv' });
    await core.secrets.put(owner, 'qv', 'ZEBRA_KEY', { value: `${SENTINEL}-z1` });
    await sleep(3);
    const tUpdate = new Date().toISOString();
    await sleep(3); // timestamps have millisecond resolution: keep the update strictly after tUpdate
    await core.secrets.put(owner, 'qv', 'ZEBRA_KEY', { value: `${SENTINEL}-z2` });
    await core.secrets.read(owner, 'qv', 'ZEBRA_KEY');
    await core.secrets.rotate(owner, 'qv', 'ZEBRA_KEY');
    const tRotate = new Date().toISOString();
    await sleep(3);
    const agent = await asCtx((await core.access.createAgent(owner, { name: 'qbot', vaults: ['qv'] })).token);
    await rejects(core.secrets.read(agent, 'qv', 'ZEBRA_KEY'));
    await core.grants.request(agent, 'qv', { secret: 'ZEBRA_KEY', mode: 'read', reason: 'needs it for the zebra job' });
    const member = await asCtx((await core.access.createUser(owner, { email: 'nosy@example.test', role: 'member' })).token);
    await rejects(core.secrets.read(member, 'qv', 'ZEBRA_KEY'));

    const q = (f: Partial<Parameters<Core['audit']['query']>[1]>) => core.audit.query(core.store, { limit: 1000, ...f });
    const all = await events();

    const byVault = (await q({ vault: 'qv' })).items;
    expect(byVault.length).toBe(all.filter((e) => e.vault === 'qv').length);
    expect(byVault.every((e) => e.vault === 'qv')).toBe(true);
    expect(byVault.map((e) => e.action)).toEqual(expect.arrayContaining(['secret.create', 'secret.update', 'secret.read', 'secret.rotate', 'grant.request', 'member.add']));

    const byActor = (await q({ actor: 'user:nosy@example.test' })).items;
    expect(byActor.map((e) => [e.action, e.outcome, e.target])).toEqual([['secret.read', 'denied', 'ZEBRA_KEY']]);

    const byAgent = (await q({ actor: 'agent:qbot' })).items;
    expect(byAgent.map((e) => `${e.action}:${e.outcome}`)).toEqual(['grant.request:ok', 'secret.read:denied']);

    const bySecret = (await q({ target: 'ZEBRA_KEY' })).items;
    expect(bySecret.map((e) => `${e.actor}:${e.action}:${e.outcome}`)).toEqual([
      'user:nosy@example.test:secret.read:denied', 'agent:qbot:secret.read:denied', 'user:owner:secret.rotate:ok', 'user:owner:secret.read:ok',
      'user:owner:secret.update:ok', 'user:owner:secret.create:ok',
    ]);
    expect(bySecret[3]).toMatchObject({ ip: '203.0.113.7', request_id: expect.stringMatching(/^req-/), vault: 'qv', details: { version: 2 } });

    const exact = (await q({ action: 'secret.read' })).items;
    expect(exact.length).toBe(all.filter((e) => e.action === 'secret.read').length);
    expect(new Set(exact.map((e) => e.action))).toEqual(new Set(['secret.read']));
    for (const prefix of ['secret.', 'secret.*']) {
      const pre = (await q({ action: prefix })).items;
      expect(pre.length).toBe(all.filter((e) => String(e.action).startsWith('secret.')).length);
      expect(new Set(pre.map((e) => e.action))).toEqual(new Set(all.map((e) => String(e.action)).filter((a) => a.startsWith('secret.'))));
      for (const a of ['secret.create', 'secret.update', 'secret.read', 'secret.rotate']) expect(pre.some((e) => e.action === a), a).toBe(true);
      expect(pre.every((e) => e.action.startsWith('secret.'))).toBe(true);
    }
    expect((await q({ action: 'secret' })).items).toEqual([]);
    expect((await q({ action: 'secret.rea' })).items).toEqual([]);

    const denied = (await q({ outcome: 'denied' })).items;
    expect(denied.length).toBe(all.filter((e) => e.outcome === 'denied').length);
    expect(denied.length).toBeGreaterThanOrEqual(2);
    expect(denied.every((e) => e.outcome === 'denied')).toBe(true);
    expect((await q({ outcome: 'denied', vault: 'qv', action: 'secret.read', actor: 'agent:qbot' })).items).toHaveLength(1);

    const range = (await q({ vault: 'qv', since: tUpdate, until: tRotate })).items;
    expect(range.map((e) => e.action)).toEqual(['secret.rotate', 'secret.read', 'secret.update']);
    expect((await q({ vault: 'qv', since: tRotate })).items.every((e) => e.ts >= tRotate)).toBe(true);
    expect((await q({ vault: 'qv', until: tUpdate })).items.map((e) => e.action)).toEqual(['secret.create', 'vault.create']);

    const text = (await q({ q: 'zebra' })).items;
    expect(text.length).toBeGreaterThanOrEqual(7);
    expect(text.every((e) => JSON.stringify(e).toLowerCase().includes('zebra'))).toBe(true);
    expect((await q({ q: 'nosy@example' })).items.length).toBeGreaterThanOrEqual(1);
    expect((await q({ q: '%' })).items).toEqual([]);
    expect((await q({ q: SENTINEL })).items).toEqual([]);

    // cursor pagination, newest first, over the whole log
    const full = (await q({})).items;
    expect(full.map((e) => e.seq)).toEqual(all.map((e) => e.seq).reverse());
    const paged: number[] = [];
    let cursor: number | undefined;
    for (let pages = 0; pages < 1000; pages++) {
      const page = await q({ limit: 7, beforeSeq: cursor });
      paged.push(...page.items.map((e) => e.seq));
      if (!page.next_cursor) break;
      cursor = Number(page.next_cursor);
    }
    expect(paged).toEqual(full.map((e) => e.seq));
    // filters combine with the cursor
    const p1 = await q({ vault: 'qv', limit: 2 });
    expect(p1.items).toHaveLength(2);
    const p2 = await q({ vault: 'qv', limit: 100, beforeSeq: Number(p1.next_cursor) });
    expect([...p1.items, ...p2.items].map((e) => e.seq)).toEqual(byVault.map((e) => e.seq));
    expect(p2.next_cursor).toBeNull();
  });

  // ---- the JSON-lines sink

  it('the JSON-lines sink (auditFile) receives every committed event, 0600, without secret values', async () => {
    const text = readFileSync(auditFile, 'utf8');
    expect(statSync(auditFile).mode & 0o777).toBe(0o600);
    expect(text).not.toContain(SENTINEL);
    const lines = text.trim().split('\n').map((l) => JSON.parse(l));
    for (const l of lines) expect(l).toMatchObject({ seq: expect.any(Number), id: expect.any(String), ts: expect.any(String), actor: expect.any(String), action: expect.any(String), outcome: expect.any(String), details: expect.any(Object), hash: expect.any(String) });
    const dbIds = new Set((await events()).map((e) => e.id));
    const inFile = new Set(lines.map((l) => l.id));
    // everything still in the database (after pruning) went to the sink, with the same hash
    for (const id of dbIds) expect(inFile.has(id)).toBe(true);
    const zebra = lines.filter((l) => l.target === 'ZEBRA_KEY').map((l) => l.action);
    expect(zebra).toEqual(expect.arrayContaining(['secret.create', 'secret.update', 'secret.read', 'secret.rotate']));
    // events of operations that failed closed never reached the sink
    expect(lines.some((l) => l.target === 'FC_NEW' || l.target === 'FC_NEW2' || l.target === 'fc-vault')).toBe(false);
    // no duplicates
    expect(inFile.size).toBe(lines.length);
  });

  it('no secret value appears in any audit row, or anywhere in the database in the clear', async () => {
    const rows = await events();
    expect(rows.length).toBeGreaterThan(10);
    expect(JSON.stringify(rows)).not.toContain(SENTINEL);
    const dump = await raw.dump();
    const needleHex = Buffer.from(SENTINEL.slice(0, 16)).toString('hex');
    for (const [table, tableRows] of Object.entries(dump)) {
      for (const r of tableRows) {
        expect(r, table).not.toContain(SENTINEL.slice(0, 16));
        expect(r, table).not.toContain(needleHex);
      }
    }
    expect((await verify()).ok).toBe(true);
  });

  // ---- several server processes on one PostgreSQL database

  if (ctx.backend === 'postgres') {
    it('two server processes writing concurrently leave one gap-free chain that verifies', { timeout: 120_000 }, async () => {
      const bootstrapJs = join(ROOT, 'dist', 'src', 'core', 'bootstrap.js');
      if (!existsSync(bootstrapJs)) throw new Error('build first: npx tsc -p tsconfig.build.json (or npm run build)');
      const db = await ctx.freshDatabase();
      const home = join(db.home, 'replicas');
      const opened = await openCore({ home, databaseUrl: db.databaseUrl, allowInit: true, env: { LATCHKEY_MASTER_KEY: MASTER } });
      const ownerToken = opened.initialized!.ownerToken;
      const c0 = opened.core;
      const script = join(db.home, 'writer.mjs');
      writeFileSync(script, `
        import { createInterface } from 'node:readline';
        const { openCore } = await import(${JSON.stringify(pathToFileURL(bootstrapJs).href)});
        const [home, url, token, prefix, n] = process.argv.slice(2);
        const { core } = await openCore({ home, databaseUrl: url, allowInit: false, poolSize: 4, env: { LATCHKEY_MASTER_KEY: process.env.LK_MASTER } });
        const ctx = { principal: await core.auth.authenticate(token), ip: null, requestId: prefix };
        process.stdout.write('ready\\n');
        const rl = createInterface({ input: process.stdin });
        await new Promise((r) => rl.once('line', r));
        rl.close();
        let next = 0, errors = 0;
        const worker = async () => {
          for (;;) {
            const i = next++;
            if (i >= Number(n)) return;
            const name = prefix + '_' + i;
            try {
              await core.secrets.put(ctx, 'default', name, { value: process.env.LK_VALUE + i });
              if (i % 5 === 0) await core.secrets.put(ctx, 'default', name, { value: process.env.LK_VALUE + 'v2' });
              if (i % 3 === 0) await core.secrets.read(ctx, 'default', name);
            } catch (e) { errors++; process.stderr.write(String(e && e.message) + '\\n'); }
          }
        };
        await Promise.all(Array.from({ length: 6 }, worker));
        await core.close();
        process.stdout.write(JSON.stringify({ done: true, errors }) + '\\n');
      `);
      const N = 200;
      const spawnWriter = (prefix: string) => spawn(process.execPath, [script, home, db.databaseUrl!, ownerToken, prefix, String(N)], {
        cwd: ROOT, env: { ...process.env, LK_MASTER: MASTER, LK_VALUE: SENTINEL }, stdio: ['pipe', 'pipe', 'pipe'],
      }) as ChildProcessWithoutNullStreams;
      const children = [spawnWriter('ALPHA'), spawnWriter('BRAVO')];
      try {
        const outputs = children.map((ch) => {
          let out = '';
          let err = '';
          ch.stdout.on('data', (d) => (out += d));
          ch.stderr.on('data', (d) => (err += d));
          const ready = new Promise<void>((res, rej) => {
            const t = setInterval(() => {
              if (out.includes('ready')) { clearInterval(t); res(); }
            }, 20);
            ch.once('exit', (code) => { clearInterval(t); rej(new Error(`writer exited early (${code}): ${err}`)); });
          });
          const done = new Promise<{ code: number | null; out: string; err: string }>((res) => ch.once('exit', (code) => res({ code, out, err })));
          return { ready, done };
        });
        await Promise.all(outputs.map((o) => o.ready));
        for (const ch of children) ch.stdin.end('go\n');
        const results = await Promise.all(outputs.map((o) => o.done));
        for (const r of results) {
          expect(r.err).toBe('');
          expect(r.code).toBe(0);
          expect(JSON.parse(r.out.trim().split('\n').at(-1)!)).toEqual({ done: true, errors: 0 });
        }
        const r = await c0.audit.verify(c0.store);
        expect(r.first_bad).toBeNull();
        expect(r.ok).toBe(true);
        const draw = await openRaw(db);
        try {
          const rows = (await draw.all('select seq, id, action, request_id, target from audit_events order by seq')).map((x) => ({ ...x, seq: Number(x.seq) }) as EventRow);
          expect(rows.map((x) => x.seq)).toEqual(rows.map((_, i) => i + 1));
          expect(new Set(rows.map((x) => x.id)).size).toBe(rows.length);
          const expected = N + Math.ceil(N / 5) + Math.ceil(N / 3);
          for (const p of ['ALPHA', 'BRAVO']) expect(rows.filter((x) => x.request_id === p).length).toBe(expected);
          expect(r.checked).toBe(rows.length);
          // the two writers really interleaved
          const seqOwners = rows.filter((x) => x.request_id === 'ALPHA' || x.request_id === 'BRAVO').map((x) => x.request_id);
          let switches = 0;
          for (let i = 1; i < seqOwners.length; i++) if (seqOwners[i] !== seqOwners[i - 1]) switches++;
          expect(switches).toBeGreaterThan(20);
          expect(JSON.stringify(await draw.all('select * from audit_events'))).not.toContain(SENTINEL);
        } finally {
          await draw.close();
        }
        expect((await c0.secrets.read(await asCtxOn(c0, ownerToken), 'default', 'BRAVO_0')).value).toBe(`${SENTINEL}v2`);
      } finally {
        for (const ch of children) if (ch.exitCode === null) ch.kill('SIGKILL');
        await c0.close();
      }
    });
  }
});

async function asCtxOn(core: Core, token: string): Promise<OpContext> {
  return { principal: await core.auth.authenticate(token), ip: null, requestId: null };
}
