/**
 * Durable commits for SQLite without blocking the event loop.
 *
 * With `synchronous = FULL`, SQLite fsyncs the WAL inside COMMIT, on the calling thread: every
 * commit stops the whole server for the length of an fsync. Instead the writer connection runs
 * with `synchronous = NORMAL` (commits reach the OS, the database stays consistent) and this
 * module makes every commit durable before anyone relies on it: after a commit, the caller awaits
 * an fdatasync of the WAL file that *started after* its commit, run on libuv's thread pool.
 * Commits that land while one fsync is in flight share the next one (group commit). So nobody is
 * answered before their change is on disk, as with FULL, and the server keeps serving meanwhile.
 *
 * The wrapped connection counts every statement that writes (COMMIT included); `settle()`, called
 * after a transaction and after every write outside one, waits for an fsync that started after
 * the count it sees. A count, not a dirty flag: a flag was cleared by an fsync that started before
 * another caller's commit was awaited, and the check "is a transaction open?" also saw the next
 * caller's transaction — both answered commits before they were on disk.
 */
import { open, type FileHandle } from 'node:fs/promises';
import type BetterSqlite3 from 'better-sqlite3';
import { classify, type ReadCache, type StatementKind } from './read-cache.js';
import type { KyselyPlugin, PluginTransformQueryArgs, PluginTransformResultArgs, QueryResult, RootOperationNode, UnknownRow } from 'kysely';

export class WalSync {
  private handle: FileHandle | null = null;
  /** the fsync running now, and the write count when it started (it covers every write up to there) */
  private inflight: { from: number; done: Promise<void> } | null = null;
  private next: Promise<void> | null = null;
  /** statements that wrote on the writer connection (commits included), ever */
  writes = 0;
  /** every write up to this count is on disk */
  syncedUpTo = 0;
  /** fsyncs done (for tests and the bench) */
  syncs = 0;
  private closed = false;

  constructor(private readonly walPath: string) {}

  /** Counts a statement that wrote (called right after it ran, commits included). */
  wrote(): void {
    this.writes++;
  }

  /**
   * Resolves once every write made before the call is on disk: by an fsync that started after
   * them. Commits that land while one fsync runs share the next one (group commit). Called after
   * a commit or an autocommit write, never inside the caller's own transaction (it would wait for
   * its own uncommitted writes); another caller's open transaction does not matter.
   */
  settle(): Promise<void> {
    const target = this.writes;
    if (this.syncedUpTo >= target) return Promise.resolve();
    const running = this.inflight;
    if (running && running.from >= target) return running.done;
    if (!running) return this.start();
    // the running fsync started before some of these writes: the one after it covers them
    this.next ??= running.done.catch(() => {}).then(() => {
      this.next = null;
      return this.start();
    });
    return this.next;
  }

  private start(): Promise<void> {
    const from = this.writes;
    const done = this.fsync().then(() => {
      if (from > this.syncedUpTo) this.syncedUpTo = from;
    }).finally(() => {
      if (this.inflight?.done === done) this.inflight = null;
    });
    this.inflight = { from, done };
    return done;
  }

  private async fsync(): Promise<void> {
    if (this.closed) return;
    if (!this.handle) this.handle = await open(this.walPath, 'r');
    await this.handle.datasync();
    this.syncs++;
  }

  async close(): Promise<void> {
    await this.inflight?.done.catch(() => {});
    await this.next?.catch(() => {});
    this.closed = true;
    await this.handle?.close().catch(() => {});
    this.handle = null;
  }
}

/**
 * Kysely prepares every query anew; this caches prepared statements by SQL text (bounded). On the
 * writer (`wal` given), every statement that is not a plain read is counted (WalSync.wrote) when
 * it runs (so its commit is fsynced) and is reported to `watch` (the read cache learns of changes).
 * Statements are classified by their SQL, not by better-sqlite3's `reader` flag, which is also
 * set for writes with RETURNING.
 */
export function preparedCache(conn: BetterSqlite3.Database, wal?: WalSync, watch?: ReadCache): never {
  const cache = new Map<string, BetterSqlite3.Statement>();
  const mark = (st: BetterSqlite3.Statement, kind: StatementKind): BetterSqlite3.Statement => {
    if (!wal || kind === 'read') return st;
    const ran = () => {
      wal.wrote();
      watch?.ran(kind);
    };
    return new Proxy(st, {
      get(target, prop) {
        const v = Reflect.get(target, prop, target) as unknown;
        if (typeof v !== 'function') return v;
        const f = (v as (...a: unknown[]) => unknown).bind(target);
        if (prop !== 'run' && prop !== 'all' && prop !== 'get' && prop !== 'iterate') return f;
        return (...args: unknown[]) => {
          try {
            return f(...args);
          } finally {
            ran();
          }
        };
      },
    });
  };
  return {
    close: () => conn.close(),
    prepare: (text: string) => {
      let st = cache.get(text);
      if (!st) {
        st = mark(conn.prepare(text), classify(text));
        if (cache.size < 1000) cache.set(text, st);
      }
      return st;
    },
  } as never;
}

/**
 * After a statement outside a transaction (an autocommit write), wait for its fsync. Only on the
 * root Kysely instance: transactions run without plugins (KyselyStore.tx), and their commit is
 * settled once, after it.
 */
export class SettleWrites implements KyselyPlugin {
  constructor(private readonly wal: WalSync) {}
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    return args.node;
  }
  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    await this.wal.settle();
    return args.result;
  }
}
