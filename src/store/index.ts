/**
 * Opens the configured backend: SQLite (WAL) in the data dir by default, PostgreSQL for a
 * postgres:// URL. Migrations are applied by the caller (core/bootstrap) after the key check,
 * so a wrong master key writes nothing.
 */
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import type { DB } from './schema.js';
import { KyselyStore } from './kysely-store.js';

export type { Store } from './store.js';
export { KyselyStore } from './kysely-store.js';
export { UniqueViolation } from './store.js';

export interface OpenStoreOptions {
  /** postgres:// URL; when absent, SQLite at sqlitePath */
  databaseUrl?: string;
  sqlitePath?: string;
  /** connection pool size for PostgreSQL */
  poolSize?: number;
}

export function sqlitePathFor(home: string): string {
  return join(home, 'latchkey.db');
}

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparseable url)';
  }
}

export async function openStore(opts: OpenStoreOptions): Promise<KyselyStore> {
  const url = opts.databaseUrl;
  if (url) {
    if (!/^postgres(ql)?:\/\//.test(url)) throw new Error('the database URL must start with postgres:// (leave it unset for the embedded SQLite store)');
    const pg = (await import('pg')).default;
    // BIGINT (int8) as a JS number: sequence numbers and counts stay far below 2^53.
    pg.types.setTypeParser(20, (v: string) => Number.parseInt(v, 10));
    const pool = new pg.Pool({ connectionString: url, max: opts.poolSize ?? 10 });
    pool.on('error', () => {}); // an idle client's error surfaces on the next query instead of crashing
    const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
    return new KyselyStore('postgres', redactUrl(url), db, db);
  }
  const path = opts.sqlitePath;
  if (!path) throw new Error('no database: give a PostgreSQL URL or a SQLite path');
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const Database = (await import('better-sqlite3')).default;
  const sqlite = new Database(path);
  sqlite.pragma('journal_mode = WAL');
  // FULL: a commit is on disk before the caller is answered (audit rows are durable). Reads are
  // group-committed by core, so the fsync is shared by every read in a batch.
  sqlite.pragma('synchronous = FULL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  const db = new Kysely<DB>({ dialect: new SqliteDialect({ database: cachingDatabase(sqlite) }) });
  // a second connection for plain reads (WAL readers do not wait for the writer)
  const readConn = new Database(path);
  readConn.pragma('busy_timeout = 5000');
  readConn.pragma('query_only = ON');
  const reader = new Kysely<DB>({ dialect: new SqliteDialect({ database: cachingDatabase(readConn) }) });
  return new KyselyStore('sqlite', path, db, db, false, reader);
}

/** Kysely prepares every query anew; this caches prepared statements by SQL text (bounded). */
function cachingDatabase(conn: import('better-sqlite3').Database): never {
  const cache = new Map<string, ReturnType<typeof conn.prepare>>();
  return {
    close: () => conn.close(),
    prepare: (text: string) => {
      let st = cache.get(text);
      if (!st) {
        st = conn.prepare(text);
        if (cache.size < 1000) cache.set(text, st);
      }
      return st;
    },
  } as never;
}
