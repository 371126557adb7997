/**
 * Raw SQL on a test database, from outside Latchkey (an attacker or an operator with database
 * access): its own connection, `?` placeholders on both backends. Also a full dump of every table
 * (to prove an operation wrote nothing).
 */
import pg from 'pg';
import type { Backend } from '../../src/store/schema.js';

export type SqlRow = Record<string, unknown>;

export interface RawSql {
  readonly backend: Backend;
  all(sql: string, params?: unknown[]): Promise<SqlRow[]>;
  run(sql: string, params?: unknown[]): Promise<void>;
  /** Every table's rows, sorted, binary columns as hex: equal dumps mean equal data. */
  dump(): Promise<Record<string, string[]>>;
  close(): Promise<void>;
}

export async function openRaw(db: { backend: Backend; sqlitePath?: string; databaseUrl?: string }): Promise<RawSql> {
  let all: RawSql['all'];
  let run: RawSql['run'];
  let close: RawSql['close'];
  let tables: () => Promise<string[]>;
  if (db.backend === 'sqlite') {
    const Database = (await import('better-sqlite3')).default;
    const conn = new Database(db.sqlitePath!);
    conn.pragma('busy_timeout = 5000');
    all = async (q, p = []) => conn.prepare(q).all(...(p as unknown[])) as SqlRow[];
    run = async (q, p = []) => {
      conn.prepare(q).run(...(p as unknown[]));
    };
    close = async () => {
      conn.close();
    };
    tables = async () => (conn.prepare("select name from sqlite_master where type = 'table' order by name").all() as Array<{ name: string }>).map((r) => r.name);
  } else {
    const client = new pg.Client({ connectionString: db.databaseUrl });
    client.on('error', () => {});
    await client.connect();
    const conv = (q: string) => {
      let i = 0;
      return q.replace(/\?/g, () => `$${++i}`);
    };
    all = async (q, p = []) => (await client.query(conv(q), p as unknown[])).rows as SqlRow[];
    run = async (q, p = []) => {
      await client.query(conv(q), p as unknown[]);
    };
    close = async () => {
      await client.end().catch(() => {});
    };
    tables = async () =>
      ((await client.query("select table_name as name from information_schema.tables where table_schema = 'public' order by table_name")).rows as Array<{ name: string }>).map((r) => r.name);
  }
  const norm = (v: unknown): unknown => (Buffer.isBuffer(v) || v instanceof Uint8Array ? `hex:${Buffer.from(v).toString('hex')}` : typeof v === 'bigint' ? Number(v) : v);
  return {
    backend: db.backend,
    all,
    run,
    close,
    async dump() {
      const out: Record<string, string[]> = {};
      for (const t of await tables()) {
        const rows = await all(`select * from "${t}"`);
        out[t] = rows.map((r) => JSON.stringify(Object.fromEntries(Object.entries(r).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, norm(v)])))).sort();
      }
      return out;
    },
  };
}
