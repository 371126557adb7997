/**
 * Fast bulk insert of secret rows straight into a Latchkey SQLite file, for the listing benchmark.
 * The rows are generated inside SQLite (a recursive CTE feeding INSERT … SELECT), about 1M rows in
 * ~10 s, while the server is stopped (exclusive access; journal off WAL during the load, WAL restored).
 *
 * Listing reads metadata and never decrypts, so version rows carry well-formed but random sealed
 * bytes with the real layout and sizes (format byte 0x01 | 12-byte IV | ciphertext | 16-byte tag).
 * Columns are discovered with PRAGMA table_info: a NOT NULL column the schema gains later gets a
 * neutral value instead of breaking the bench.
 */
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';

interface Col {
  name: string;
  type: string;
  notnull: number;
  dflt_value: unknown;
}

function neutral(c: Col): string {
  const t = c.type.toLowerCase();
  if (t.includes('int')) return '0';
  if (t.includes('blob')) return "x''";
  return "''";
}

/** INSERT INTO table (cols) SELECT exprs FROM c, for the known columns plus any other NOT NULL one without a default. */
function insertSelect(db: Database.Database, table: string, known: Record<string, string>): string {
  const cols = db.prepare(`PRAGMA table_info(${table})`).all() as Col[];
  const missing = Object.keys(known).filter((k) => !cols.some((c) => c.name === k));
  if (missing.length) throw new Error(`bench bulk insert: ${table} has no column(s) ${missing.join(', ')}; update bench/lib/bulk.ts`);
  const use = cols.filter((c) => c.name in known || (c.notnull && c.dflt_value === null));
  return `INSERT INTO ${table} (${use.map((c) => `"${c.name}"`).join(', ')}) SELECT ${use.map((c) => known[c.name] ?? neutral(c)).join(', ')} FROM c`;
}

/** The name of the i-th bulk secret. */
export function bulkName(prefix: string, i: number): string {
  return `${prefix}${String(i).padStart(7, '0')}`;
}

const quote = (s: string) => `'${s.replace(/'/g, "''")}'`;

/**
 * Inserts `count` secrets named bulkName(prefix, i), i in [from, from + count), into the vault, each
 * with a current version 1. The server must not be running on this file. Returns milliseconds taken.
 */
export function bulkInsertSecrets(dbPath: string, vaultName: string, prefix: string, from: number, count: number): number {
  if (!/^[A-Za-z0-9_:]+$/.test(prefix)) throw new Error('bulk prefix must be a plain secret-name prefix');
  const t0 = performance.now();
  const db = new Database(dbPath);
  let wasWal = false;
  try {
    db.pragma('busy_timeout = 10000');
    wasWal = String(db.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal';
    db.pragma('journal_mode = MEMORY');
    db.pragma('synchronous = OFF');
    db.pragma('cache_size = -262144');
    const vault = db.prepare('SELECT id FROM vaults WHERE name = ?').get(vaultName) as { id: string } | undefined;
    if (!vault) throw new Error(`no vault '${vaultName}' in ${dbPath}`);
    const now = quote(new Date().toISOString());
    // ids ascend with i (so the id index grows by appends); listing walks the (vault_id, name) index and
    // reads rows by rowid, so id order does not change what is measured
    const id = `'b${randomBytes(4).toString('hex')}' || printf('%09d', i)`;
    const cte = 'WITH RECURSIVE c(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM c WHERE i + 1 < ?) ';
    const secrets = db.prepare(cte + insertSelect(db, 'secrets', {
      id, vault_id: quote(vault.id), name: `${quote(prefix)} || printf('%07d', i)`, category: "'api_key'", preset: 'NULL', description: 'NULL',
      tags: "'[]'", current_version: '1', created_at: now, updated_at: now, last_rotated_at: 'NULL',
    }));
    const versions = db.prepare(cte + insertSelect(db, 'secret_versions', {
      secret_id: id, version: '1', kek_version: '1', wrapped_dek: "x'01' || randomblob(12 + 32 + 16)",
      ciphertext: "x'01' || randomblob(12 + 40 + 16)", created_at: now, created_by: "'system'", rotated_at: 'NULL',
    }));
    const CHUNK = 250_000;
    const load = db.transaction((a: number, b: number) => {
      secrets.run(a, b);
      versions.run(a, b);
    });
    for (let a = from; a < from + count; a += CHUNK) load(a, Math.min(from + count, a + CHUNK));
  } finally {
    try {
      if (wasWal) db.pragma('journal_mode = WAL');
    } finally {
      db.close();
    }
  }
  return performance.now() - t0;
}
