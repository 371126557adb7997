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
 * The wrapped connection marks itself dirty whenever a statement that writes runs (including
 * COMMIT); `settle()` is called after a transaction and after every statement outside one.
 */
import { open, type FileHandle } from 'node:fs/promises';
import type BetterSqlite3 from 'better-sqlite3';
import { classify, type ReadCache, type StatementKind } from './read-cache.js';
import type { KyselyPlugin, PluginTransformQueryArgs, PluginTransformResultArgs, QueryResult, RootOperationNode, UnknownRow } from 'kysely';

export class WalSync {
  private handle: FileHandle | null = null;
  private inflight: Promise<void> | null = null;
  private next: Promise<void> | null = null;
  /** a write ran since the last fsync started */
  dirty = false;
  /** fsyncs done (for tests and the bench) */
  syncs = 0;
  private closed = false;

  constructor(private readonly walPath: string, private readonly conn: BetterSqlite3.Database) {}

  /** Resolves once every commit made before the call is on disk. */
  settle(): Promise<void> {
    if (!this.dirty || this.conn.inTransaction) return Promise.resolve();
    if (!this.inflight) return this.start();
    // an fsync is running but may have started before this commit: share the one after it
    this.next ??= this.inflight.then(() => {
      this.next = null;
      return this.start();
    });
    return this.next;
  }

  private start(): Promise<void> {
    this.dirty = false;
    const p = this.fsync().finally(() => {
      if (this.inflight === p) this.inflight = null;
    });
    this.inflight = p;
    return p;
  }

  private async fsync(): Promise<void> {
    if (this.closed) return;
    if (!this.handle) this.handle = await open(this.walPath, 'r');
    await this.handle.datasync();
    this.syncs++;
  }

  async close(): Promise<void> {
    await this.inflight?.catch(() => {});
    await this.next?.catch(() => {});
    this.closed = true;
    await this.handle?.close().catch(() => {});
    this.handle = null;
  }
}

/**
 * Kysely prepares every query anew; this caches prepared statements by SQL text (bounded). On the
 * writer (`wal` given), every statement that is not a plain read marks the connection dirty when
 * it runs (so its commit is fsynced) and is reported to `watch` (the read cache learns of changes).
 * Statements are classified by their SQL, not by better-sqlite3's `reader` flag, which is also
 * set for writes with RETURNING.
 */
export function preparedCache(conn: BetterSqlite3.Database, wal?: WalSync, watch?: ReadCache): never {
  const cache = new Map<string, BetterSqlite3.Statement>();
  const mark = (st: BetterSqlite3.Statement, kind: StatementKind): BetterSqlite3.Statement => {
    if (!wal || kind === 'read') return st;
    const ran = () => {
      wal.dirty = true;
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

/** After a statement outside a transaction (an autocommit write), wait for its fsync. */
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
