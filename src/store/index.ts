/**
 * Opens the configured backend: SQLite (WAL) in the data dir by default, PostgreSQL for a
 * postgres:// URL. Migrations are applied by the caller (core/bootstrap) after the key check,
 * so a wrong master key writes nothing.
 */
import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import type { DB } from './schema.js';
import { KyselyStore } from './kysely-store.js';
import { ReadCache } from './read-cache.js';
import { preparedCache, SettleWrites, WalSync } from './sqlite-durable.js';

export type { Store } from './store.js';
export { KyselyStore } from './kysely-store.js';
export { TransactionConflict, UniqueViolation } from './store.js';

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
    // a request waits at most 15 s for a connection: an exhausted pool is an error, never a hang
    const pool = new pg.Pool({ connectionString: url, max: opts.poolSize ?? 10, connectionTimeoutMillis: 15_000 });
    pool.on('error', () => {}); // an idle client's error surfaces on the next query instead of crashing
    const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
    return new KyselyStore('postgres', redactUrl(url), db, db);
  }
  const path = opts.sqlitePath;
  if (!path) throw new Error('no database: give a PostgreSQL URL or a SQLite path');
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const Database = (await import('better-sqlite3')).default;
  // the database holds sealed values and hashes only, but it is nobody else's business: 0600
  // (SQLite gives the -wal and -shm files the database file's mode)
  closeSync(openSync(path, 'a', 0o600));
  chmodSync(path, 0o600);
  const sqlite = new Database(path);
  sqlite.pragma('journal_mode = WAL');
  // NORMAL + an fdatasync of the WAL off the event loop before any caller goes on: as durable as
  // FULL (nobody is answered before their commit is on disk) without stalling the server per commit
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  const wal = new WalSync(`${path}-wal`);
  // the hot lookups' cache; `data_version` on the writer changes when another process commits
  const dataVersion = sqlite.prepare('PRAGMA data_version').pluck();
  const cache = new ReadCache(() => dataVersion.get() as number);
  const db = new Kysely<DB>({ dialect: new SqliteDialect({ database: preparedCache(sqlite, wal, cache) }), plugins: [new SettleWrites(wal)] });
  // a second connection for plain reads (WAL readers do not wait for the writer)
  const readConn = new Database(path);
  readConn.pragma('busy_timeout = 5000');
  readConn.pragma('query_only = ON');
  const reader = new Kysely<DB>({ dialect: new SqliteDialect({ database: preparedCache(readConn) }) });
  return new KyselyStore('sqlite', path, db, db, false, reader, wal, {
    reader: readConn, writer: sqlite, cache,
    wrote: (kind) => {
      wal.wrote();
      cache.ran(kind);
    },
  });
}
