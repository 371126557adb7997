/**
 * The audit log: a hash chain keyed by the keyring's audit key (itself sealed under the master key),
 * so somebody with only the database cannot re-forge it. Events are appended inside the caller's
 * transaction under the chain-head lock (fail closed; replicas serialize on the head row).
 */
import { appendFileSync } from 'node:fs';
import type { Keyring } from '../crypto/keyring.js';
import { safeEqual, uuidV7 } from '../crypto/tokens.js';
import { AuditHeadMissing, type AuditQuery, type AuditRow, type Store } from '../store/store.js';
import { GENESIS_HASH } from '../store/schema.js';
import { invalid } from './errors.js';
import { actorOf, type OpContext } from './principal.js';

export const AUDIT_ACTIONS = [
  'secret.create', 'secret.update', 'secret.read', 'secret.vend', 'secret.rotate', 'secret.delete', 'secret.rollback',
  'vault.rotate_all', 'secret.migrate', 'proxy.request', 'grant.request', 'grant.approve', 'grant.deny', 'grant.revoke',
  'proposal.create', 'proposal.approve', 'proposal.reject', 'agent.create', 'agent.revoke', 'agent.rotate_token',
  'member.add', 'member.remove', 'key.rotate', 'key.rewrap', 'key.rekey', 'auth.login', 'auth.failure',
  'service.set', 'service.delete', 'vault.create', 'vault.delete', 'vault.update', 'audit.prune', 'user.update', 'token.create', 'token.revoke',
  'ca.create',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];
export type Outcome = 'ok' | 'denied' | 'error';

export interface AuditInput {
  action: AuditAction;
  vault?: string | null;
  target?: string | null;
  outcome?: Outcome;
  details?: Record<string, unknown>;
}

export interface AuditEvent {
  seq: number;
  id: string;
  ts: string;
  actor: string;
  action: string;
  vault: string | null;
  target: string | null;
  outcome: string;
  ip: string | null;
  request_id: string | null;
  details: Record<string, unknown>;
  hash: string;
}

export interface Checkpoint {
  seq: number;
  hash: string;
  ts: string;
  mac: string;
}

export interface VerifyResult {
  ok: boolean;
  checked: number;
  head: { seq: number; hash: string };
  anchor: { seq: number; hash: string };
  first_bad: { seq: number; reason: string } | null;
  checkpoint: { seq: number; ok: boolean; reason: string | null } | null;
}

export type AuditSink = (events: AuditEvent[]) => void;

/** The bytes each link's MAC covers: every column but the hash itself, in a fixed order. */
function canonical(r: Omit<AuditRow, 'hash'>): string {
  return JSON.stringify([r.seq, r.id, r.ts, r.actor, r.action, r.vault, r.target, r.outcome, r.ip, r.request_id, r.details, r.prev_hash]);
}

export function toEvent(r: AuditRow): AuditEvent {
  let details: Record<string, unknown> = {};
  try {
    details = JSON.parse(r.details);
  } catch {
    details = { unparseable: true };
  }
  return { seq: r.seq, id: r.id, ts: r.ts, actor: r.actor, action: r.action, vault: r.vault, target: r.target, outcome: r.outcome, ip: r.ip, request_id: r.request_id, details, hash: r.hash };
}

export function jsonLinesSink(path: string): AuditSink {
  return (events) => {
    const text = events.map((e) => JSON.stringify(e)).join('\n') + '\n';
    if (path === '-') process.stdout.write(text);
    else appendFileSync(path, text, { mode: 0o600 });
  };
}

export class AuditLog {
  private sinks: AuditSink[] = [];

  constructor(private readonly keyring: Keyring) {}

  addSink(s: AuditSink): void {
    this.sinks.push(s);
  }

  /** Appends events in the given transaction-bound store. Returns the rows written (for the sinks, after commit). */
  append(s: Store, ctx: OpContext, inputs: AuditInput[]): Promise<AuditRow[]> {
    return this.appendEntries(s, inputs.map((input) => ({ ctx, input })));
  }

  /**
   * Appends events (of one operation, or of several requests: group commit) under the head lock:
   * inside `s`'s transaction when it is one, else in a transaction of their own.
   */
  async appendEntries(s: Store, entries: Array<{ ctx: OpContext; input: AuditInput }>): Promise<AuditRow[]> {
    if (entries.length === 0) return [];
    return s.appendAudit((head) => this.chain(head, entries));
  }

  /** The rows that extend the chain from `head`: sequence numbers, links and MACs. */
  private chain(head: { seq: number; hash: string }, entries: Array<{ ctx: OpContext; input: AuditInput }>): AuditRow[] {
    let prev = head.hash;
    let seq = head.seq;
    const at = Date.now();
    const ts = new Date(at).toISOString();
    return entries.map(({ ctx, input: e }) => {
      seq += 1;
      const base = {
        seq, id: uuidV7(at), ts, actor: actorOf(ctx.principal), action: e.action, vault: e.vault ?? null, target: e.target ?? null,
        outcome: e.outcome ?? 'ok', ip: ctx.ip, request_id: ctx.requestId,
        details: JSON.stringify(ctx.principal.kind === 'anonymous' ? { ...e.details, caller: 'anonymous' } : (e.details ?? {})), prev_hash: prev,
      };
      const hash = this.keyring.auditMac(canonical(base));
      prev = hash;
      return { ...base, hash };
    });
  }

  /** Hands committed rows to the extra sinks; a failing sink never fails the operation (the store is the record). */
  emit(rows: AuditRow[]): void {
    if (!rows.length || !this.sinks.length) return;
    const events = rows.map(toEvent);
    for (const sink of this.sinks) {
      try {
        sink(events);
      } catch (err) {
        process.stderr.write(`latchkey: audit sink failed: ${(err as Error).message}\n`);
      }
    }
  }

  async query(store: Store, q: AuditQuery): Promise<{ items: AuditEvent[]; next_cursor: string | null }> {
    const rows = await store.queryAudit(q);
    const last = rows.at(-1);
    return { items: rows.map(toEvent), next_cursor: rows.length === q.limit && last ? String(last.seq) : null };
  }

  /**
   * Retention: deletes events older than `before` and moves the chain anchor to the last deleted
   * event's hash, so the remaining chain still verifies from there. Records an `audit.prune` event.
   */
  async prune(store: Store, ctx: OpContext, before: string): Promise<{ pruned: number; anchor_seq: number }> {
    let written: AuditRow[] = [];
    const out = await store.tx(async (s) => {
      const head = await s.lockAuditHead();
      const last = await s.lastAuditBefore(before);
      if (!last || last.seq <= head.anchor_seq) return { pruned: 0, anchor_seq: head.anchor_seq };
      const pruned = await s.pruneAudit(last.seq, last.hash);
      written = await this.append(s, ctx, [{ action: 'audit.prune', details: { before, pruned, anchor_seq: last.seq, anchor_hash: last.hash } }]);
      return { pruned, anchor_seq: last.seq };
    });
    this.emit(written);
    return out;
  }

  checkpointMac(seq: number, hash: string, ts: string): string {
    return this.keyring.auditMac(`checkpoint|${seq}|${hash}|${ts}`);
  }

  async checkpoint(store: Store): Promise<Checkpoint> {
    const head = await store.getAuditHead();
    const ts = new Date().toISOString();
    return { seq: head.seq, hash: head.hash, ts, mac: this.checkpointMac(head.seq, head.hash, ts) };
  }

  /**
   * Walks the chain from the anchor. Reports the first event that does not fit: altered content,
   * a link to the wrong predecessor (inserted, deleted or reordered events), a gap in sequence
   * numbers, a head that does not match the last event, or an anchor (the start of the retained
   * chain) that no `audit.prune` event vouches for (events deleted from the start); and, with a
   * checkpoint, truncation. Safe while other replicas append: the head is read after the walk and
   * the walk catches up to it, so events committed meanwhile are not mistaken for tampering.
   */
  async verify(store: Store, checkpoint?: Checkpoint | null, onProgress?: (checked: number) => void): Promise<VerifyResult> {
    let start: Awaited<ReturnType<Store['getAuditHead']>>;
    try {
      start = await store.getAuditHead();
    } catch (err) {
      if (!(err instanceof AuditHeadMissing)) throw err;
      return {
        ok: false, checked: 0, head: { seq: 0, hash: '' }, anchor: { seq: 0, hash: GENESIS_HASH },
        first_bad: { seq: 0, reason: 'the chain head record (audit_head) is missing: the database was altered' }, checkpoint: null,
      };
    }
    let prev = start.anchor_hash;
    let expectSeq = start.anchor_seq + 1;
    let checked = 0;
    let firstBad: VerifyResult['first_bad'] = null;
    let cpResult: VerifyResult['checkpoint'] = null;
    // a moved anchor is legitimate only when a (MAC-verified) audit.prune event records it
    let anchorVouched = start.anchor_seq === 0 && start.anchor_hash === GENESIS_HASH;
    if (checkpoint) {
      if (!checkpoint || typeof checkpoint.seq !== 'number' || typeof checkpoint.hash !== 'string' || typeof checkpoint.ts !== 'string' || typeof checkpoint.mac !== 'string') {
        throw invalid('checkpoint', 'must be a checkpoint exported by `latchkey audit checkpoint`');
      }
      if (!safeEqual(this.checkpointMac(checkpoint.seq, checkpoint.hash, checkpoint.ts), checkpoint.mac)) {
        cpResult = { seq: checkpoint.seq, ok: false, reason: 'the checkpoint file was not made by this instance or was altered' };
      }
    }
    let after = start.anchor_seq;
    let lastSeq = start.anchor_seq;
    const BATCH = 2000;
    const walk = async (upTo: number | null): Promise<void> => {
      for (;;) {
        let rows = await store.auditRange(after, BATCH);
        const full = rows.length === BATCH;
        if (upTo !== null) rows = rows.filter((r) => r.seq <= upTo);
        if (!rows.length) return;
        for (const r of rows) {
          checked++;
          if (!firstBad) {
            const { hash, ...rest } = r;
            if (r.seq !== expectSeq) {
              firstBad = { seq: r.seq, reason: r.seq > expectSeq ? `event(s) ${expectSeq}..${r.seq - 1} are missing (deleted)` : 'sequence number out of order (inserted or reordered)' };
            } else if (r.prev_hash !== prev) {
              firstBad = { seq: r.seq, reason: 'link to the previous event is broken (an event before it was inserted, deleted, altered or reordered)' };
            } else if (!safeEqual(this.keyring.auditMac(canonical(rest)), hash)) {
              firstBad = { seq: r.seq, reason: 'event content was altered (its MAC does not match)' };
            } else if (!anchorVouched && r.action === 'audit.prune') {
              const d = toEvent(r).details;
              if (d.anchor_seq === start.anchor_seq && d.anchor_hash === start.anchor_hash) anchorVouched = true;
            }
          }
          if (checkpoint && cpResult === null && r.seq === checkpoint.seq) {
            cpResult = r.hash === checkpoint.hash
              ? { seq: checkpoint.seq, ok: true, reason: null }
              : { seq: checkpoint.seq, ok: false, reason: 'the event at the checkpoint differs from the one exported' };
          }
          prev = r.hash;
          expectSeq = r.seq + 1;
          lastSeq = r.seq;
        }
        after = rows[rows.length - 1]!.seq;
        onProgress?.(checked);
        if (!full || (upTo !== null && after >= upTo)) return;
      }
    };
    await walk(null);
    // Read the head only now: every commit writes its events and the head together, so a head read
    // after the walk is at or past every event seen. Events committed during the walk are caught up
    // to that head (and no further, so a busy log still finishes).
    const head = await store.getAuditHead();
    if (head.seq > lastSeq) await walk(head.seq);
    if (!firstBad && (head.seq !== lastSeq || head.hash !== prev)) {
      firstBad = { seq: lastSeq + 1, reason: `the chain head (seq ${head.seq}) does not match the last stored event (seq ${lastSeq}): events were removed from the tail or the head was altered` };
    }
    if (!firstBad) {
      // the retained log starts after the anchor: a row at or below it is no event of the chain
      // (the walk never reads it, but a query would list it)
      const [below] = await store.queryAudit({ beforeSeq: start.anchor_seq + 1, limit: 1 });
      if (below) firstBad = { seq: below.seq, reason: `an event numbered at or below the start of the log (seq ${start.anchor_seq}) is not part of the chain: it was inserted` };
    }
    if (!firstBad && !anchorVouched) {
      firstBad = {
        seq: start.anchor_seq + 1,
        reason: `the log starts after seq ${start.anchor_seq} but no audit.prune event records that anchor: events were deleted from the start of the log or the anchor was altered`,
      };
    }
    if (checkpoint && cpResult === null) {
      cpResult = checkpoint.seq <= start.anchor_seq
        ? { seq: checkpoint.seq, ok: true, reason: 'checkpoint is older than the retained log (pruned)' }
        : { seq: checkpoint.seq, ok: false, reason: `truncated: the log ends at seq ${lastSeq} but the checkpoint saw seq ${checkpoint.seq}` };
    }
    return {
      ok: !firstBad && (cpResult?.ok ?? true),
      checked,
      head: { seq: head.seq, hash: head.hash },
      anchor: { seq: start.anchor_seq, hash: start.anchor_seq === 0 ? GENESIS_HASH : start.anchor_hash },
      first_bad: firstBad,
      checkpoint: cpResult,
    };
  }
}
