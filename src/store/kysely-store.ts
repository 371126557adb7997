/**
 * Store over Kysely, one implementation for both backends. Differences are confined to
 * openStore() (dialect, pragmas) and the few places that name them explicitly (FOR UPDATE).
 */
import { CompiledQuery, Kysely, Migrator, sql, type Compilable, type SelectQueryBuilder, type Transaction, type MigrationProvider, type Migration } from 'kysely';
import type BetterSqlite3 from 'better-sqlite3';
import type { Backend, DB } from './schema.js';
import { migrations } from './schema.js';
import type {
  AgentRow, AuthFailureRow, GrantRow, MemberRow, ProposalRow, ProxyAuthRow, ProxyCaRow, ServiceRow,
  AuditHead, AuditQuery, AuditRow, KeyRow, SecretListQuery, SecretRow, SecretWithCurrent, Store, TokenRow,
  UserRow, VaultRow, VersionRow,
} from './store.js';
import { AuditHeadMissing, GRANT_PAGE, TAG_RE, TransactionConflict, UniqueViolation } from './store.js';
import { classify, type ReadCache, type StatementKind } from './read-cache.js';

type Exec = Kysely<DB> | Transaction<DB>;

function isUniqueViolation(err: unknown): string | null {
  const e = err as { code?: string; constraint?: string; message?: string };
  if (e?.code === '23505') return e.constraint ?? 'unique';
  if (e?.code === 'SQLITE_CONSTRAINT_UNIQUE' || e?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY') return e.message ?? 'unique';
  return null;
}

async function guardUnique<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    const c = isUniqueViolation(err);
    if (c) throw new UniqueViolation(c);
    throw err;
  }
}

/**
 * `col` starts with `prefix`, exactly (code points, case-sensitive). Not a range on the column
 * (`>= p and < p || U+FFFF`): that depends on the collation (PostgreSQL databases with a
 * linguistic collation such as en_US may ignore punctuation, so 'secretary.x' would fall in
 * the range of 'secret.') and misses names continuing with characters above U+FFFF.
 */
function startsWith(col: 'name' | 'action', prefix: string) {
  return sql<boolean>`substr(${sql.ref(col)}, 1, ${[...prefix].length}) = ${prefix}`;
}

/** No column to set (Kysely drops undefined values from set()). */
function isEmptyPatch(patch: object): boolean {
  return Object.values(patch).every((v) => v === undefined);
}

/**
 * Hot queries are built with Kysely once per backend and their SQL text reused: building and
 * compiling a query costs more than SQLite takes to run it. The first call checks that the
 * parameters the builder produced are exactly the ones passed, in order. On SQLite the compiled
 * text then runs as a cached prepared statement directly on the connection (synchronous, no
 * driver round trip): same SQL, same connection Kysely would have used.
 */
const HOT_SQL = new Map<string, string>();

function hotSql(backend: Backend, key: string, params: readonly unknown[], build: () => Compilable<unknown>): string {
  const k = `${backend}:${key}`;
  let text = HOT_SQL.get(k);
  if (text === undefined) {
    const c = build().compile();
    if (c.parameters.length !== params.length || c.parameters.some((p, i) => p !== params[i])) {
      throw new Error(`hot query ${key}: parameters do not match the compiled query`);
    }
    text = c.sql;
    HOT_SQL.set(k, text);
  }
  return text;
}

/** The raw SQLite connections behind the Kysely instances (the fast lane of hot queries). */
export interface RawSqlite {
  reader: BetterSqlite3.Database;
  writer: BetterSqlite3.Database;
  /** the hot lookups' cache (read-cache.ts) */
  cache: ReadCache;
  /** after a write on the writer: counts it so the caller waits for an fsync after it (sqlite-durable.ts), tells the cache */
  wrote(kind: StatementKind): void;
}

/** Hot lookups answered from the read cache (outside transactions): what every request asks first. */
const CACHED = new Set(['tokenWithUser', 'vaultSecretCurrent', 'vaultSecretVersion', 'memberRole', 'vaultByName', 'proxyAuth', 'proxyAuthService', 'proxyService']);

/** Freezes a value and the plain objects inside it (not Buffers: nobody writes into sealed bytes). */
function freezeTree<T>(v: T): T {
  if (v === null || typeof v !== 'object' || ArrayBuffer.isView(v) || Object.isFrozen(v)) return v;
  for (const x of Object.values(v as object)) freezeTree(x);
  return Object.freeze(v);
}

const KINDS = new Map<string, StatementKind>();
function kindOf(text: string): StatementKind {
  let k = KINDS.get(text);
  if (k === undefined) KINDS.set(text, (k = classify(text)));
  return k;
}

const STATEMENTS = new WeakMap<BetterSqlite3.Database, Map<string, BetterSqlite3.Statement>>();

function statement(conn: BetterSqlite3.Database, text: string): BetterSqlite3.Statement {
  let m = STATEMENTS.get(conn);
  if (!m) STATEMENTS.set(conn, (m = new Map()));
  let st = m.get(text);
  if (!st) m.set(text, (st = conn.prepare(text)));
  return st;
}

/**
 * The approved `use` grant on a service that lasts longest (no expiry first, then the latest
 * expiry): one column of it. Not filtered by the time, so the answer can be cached; the caller
 * checks its expiry per request (`liveGrant`): if the longest-lasting grant has expired, all have.
 */
function useGrant<C extends 'g.id' | 'g.expires_at'>(q: SelectQueryBuilder<DB & { g: DB['grants'] }, 'g', object>, col: C) {
  return q.select(col)
    .where('g.kind', '=', sql.lit('service')).where('g.mode', '=', sql.lit('use')).where('g.status', '=', sql.lit('approved'))
    .orderBy(sql`(g.expires_at is null)`, 'desc').orderBy('g.expires_at', 'desc').orderBy('g.created_at', 'desc').limit(sql.lit(1));
}

function liveGrant(id: string | null | undefined, expiresAt: string | null | undefined, now: string): string | null {
  return id && (!expiresAt || expiresAt > now) ? id : null;
}

const versionMetaColumns = ['secret_id', 'version', 'kek_version', 'created_at', 'created_by', 'rotated_at'] as const;

export class KyselyStore implements Store {
  /**
   * `reader` serves plain reads outside transactions: with SQLite it is a second connection, so
   * reads (WAL snapshots) never queue behind a write transaction's fsync on the writer connection.
   */
  constructor(
    readonly backend: Backend,
    readonly location: string,
    private readonly db: Exec,
    private readonly root: Kysely<DB>,
    private readonly inTx = false,
    private readonly reader: Kysely<DB> = root,
    /** SQLite: resolves once the last commit is on disk (see sqlite-durable.ts) */
    private readonly durable: { settle(): Promise<void>; close(): Promise<void> } | null = null,
    /** SQLite: the raw connections, for hot queries */
    private readonly raw: RawSqlite | null = null,
  ) {}

  /** Where a read goes: the transaction when in one, else the read connection. */
  private get r(): Exec {
    return this.inTx ? this.db : this.reader;
  }

  /**
   * Runs a hot query (see hotSql) on the read side (`r`) or the writer (`w`, in a transaction); first row.
   * On SQLite, the lookups in CACHED are answered from the read cache outside transactions.
   */
  private async hot<R, T = R>(side: 'r' | 'w', key: string, params: readonly unknown[], build: () => Compilable<R>, shape?: (row: R) => T): Promise<T | undefined> {
    const text = hotSql(this.backend, key, params, build);
    const raw = this.raw;
    const out = (row: R | undefined): T | undefined => (row === undefined ? undefined : shape ? shape(row) : (row as unknown as T));
    if (raw) {
      if (side === 'r' && !this.inTx && CACHED.has(key)) {
        // JSON: unambiguous whatever the parameters hold (a name with a separator in it cannot alias another)
        const ck = key + JSON.stringify(params);
        const hit = raw.cache.get(ck);
        if (hit) return hit.value as T | undefined;
        // shaped once (rows from the driver are slow to copy) and frozen: every caller gets this same object
        const value = out(statement(raw.reader, text).get(...(params as unknown[])) as R | undefined);
        raw.cache.set(ck, value === undefined ? value : freezeTree(value));
        return value;
      }
      const conn = side === 'w' || this.inTx ? raw.writer : raw.reader;
      const st = statement(conn, text);
      if (st.reader) return out(st.get(...(params as unknown[])) as R | undefined);
      st.run(...(params as unknown[]));
      raw.wrote(kindOf(text));
      if (!this.inTx) await this.durable?.settle();
      return undefined;
    }
    const r = await (side === 'w' ? this.db : this.r).executeQuery<R>(CompiledQuery.raw(text, params as unknown[]));
    return out(r.rows[0]);
  }

  /** The read cache's counters (SQLite), or null (PostgreSQL has none): for tests and the bench. */
  readCacheStats(): { hits: number; misses: number; clears: number } | null {
    const c = this.raw?.cache;
    return c ? { hits: c.hits, misses: c.misses, clears: c.clears } : null;
  }

  async tx<T>(fn: (s: Store) => Promise<T>): Promise<T> {
    if (this.inTx) return fn(this);
    // without plugins: SettleWrites waits for an fsync after each autocommit write, which inside a
    // transaction would wait on its own uncommitted writes; the commit is settled once, below
    let out: T;
    try {
      out = await this.root.transaction().execute((trx) => fn(new KyselyStore(this.backend, this.location, trx.withoutPlugins(), this.root, true, this.reader, null, this.raw)));
    } catch (err) {
      // PostgreSQL's deadlock and serialization failures: nothing was written, a retry may work
      const code = (err as { code?: string })?.code;
      if (code === '40P01' || code === '40001') throw new TransactionConflict(code);
      throw err;
    }
    if (this.durable) await this.durable.settle();
    return out;
  }

  async close(): Promise<void> {
    if (this.inTx) return;
    if (this.reader !== this.root) await this.reader.destroy();
    await this.durable?.close();
    await this.root.destroy();
  }

  /** Applies pending migrations; safe to call from several replicas at once. */
  async migrate(): Promise<void> {
    const all = migrations(this.backend);
    const provider: MigrationProvider = { getMigrations: async () => all as Record<string, Migration> };
    const { error, results } = await new Migrator({ db: this.root, provider }).migrateToLatest();
    if (error) {
      const failed = results?.find((r) => r.status === 'Error');
      throw new Error(`database migration ${failed?.migrationName ?? ''} failed: ${(error as Error).message ?? error}`);
    }
  }

  /** True when the schema exists (the meta table is there), without creating anything. */
  async initialized(): Promise<boolean> {
    const tables = await this.root.introspection.getTables();
    return tables.some((t) => t.name === 'meta');
  }

  // ---- meta and keys

  async getMeta(key: string): Promise<string | null> {
    const r = await this.r.selectFrom('meta').select('value').where('key', '=', key).executeTakeFirst();
    return r?.value ?? null;
  }

  /**
   * `q` with the rows it selects locked until commit: PostgreSQL `FOR UPDATE`; SQLite's writer is
   * one connection whose transactions never interleave. `what` names a caller that needs a transaction.
   */
  private forUpdate<Q extends { forUpdate(): Q }>(q: Q, what?: string): Q {
    if (what && !this.inTx) throw new Error(`${what} needs a transaction`);
    return this.backend === 'postgres' ? q.forUpdate() : q;
  }

  async lockMeta(key: string): Promise<string | null> {
    return (await this.forUpdate(this.db.selectFrom('meta').select('value').where('key', '=', key), 'lockMeta').executeTakeFirst())?.value ?? null;
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.db.insertInto('meta').values({ key, value })
      .onConflict((oc) => oc.column('key').doUpdateSet({ value }))
      .execute();
  }

  listKeys(): Promise<KeyRow[]> {
    return this.r.selectFrom('keys').selectAll().orderBy('purpose').orderBy('version').execute();
  }

  async insertKey(row: KeyRow): Promise<void> {
    await guardUnique(this.db.insertInto('keys').values(row).execute());
  }

  async replaceKeys(rows: KeyRow[]): Promise<void> {
    await this.db.deleteFrom('keys').execute();
    if (rows.length) await this.db.insertInto('keys').values(rows).execute();
  }

  // ---- vaults

  async getVault(name: string): Promise<VaultRow | null> {
    return (await this.hot('r', 'vaultByName', [name], () => this.r.selectFrom('vaults').selectAll().where('name', '=', name), (v) => ({ ...v }))) ?? null;
  }

  async getVaultById(id: string): Promise<VaultRow | null> {
    return (await this.r.selectFrom('vaults').selectAll().where('id', '=', id).executeTakeFirst()) ?? null;
  }

  async listVaults(): Promise<Array<VaultRow & { secret_count: number }>> {
    const rows = await this.r.selectFrom('vaults')
      .selectAll('vaults')
      .select((eb) => eb.selectFrom('secrets').select(eb.fn.countAll().as('n')).whereRef('secrets.vault_id', '=', 'vaults.id').as('secret_count'))
      .orderBy('name')
      .execute();
    return rows.map((r) => ({ ...r, secret_count: Number(r.secret_count ?? 0) }));
  }

  async insertVault(row: VaultRow): Promise<void> {
    await guardUnique(this.db.insertInto('vaults').values(row).execute());
  }

  async updateVault(id: string, patch: Partial<Pick<VaultRow, 'fallback' | 'description' | 'passthrough' | 'updated_at'>>): Promise<void> {
    if (isEmptyPatch(patch)) return; // `update ... set` with nothing to set is a syntax error
    await this.db.updateTable('vaults').set(patch).where('id', '=', id).execute();
  }

  async deleteVault(id: string): Promise<{ secrets: number; deleted: boolean }> {
    // the vault row locked first: a concurrent delete of the same vault waits here, then finds nothing
    if (!(await this.forUpdate(this.db.selectFrom('vaults').select('id').where('id', '=', id)).executeTakeFirst())) return { secrets: 0, deleted: false };
    const ids = this.db.selectFrom('secrets').select('id').where('vault_id', '=', id);
    await this.db.deleteFrom('secret_versions').where('secret_id', 'in', ids).execute();
    const r = await this.db.deleteFrom('secrets').where('vault_id', '=', id).executeTakeFirst();
    await this.db.deleteFrom('vaults').where('id', '=', id).execute();
    return { secrets: Number(r.numDeletedRows), deleted: true };
  }

  // ---- secrets

  async getSecret(vaultId: string, name: string): Promise<SecretRow | null> {
    return (await this.r.selectFrom('secrets').selectAll().where('vault_id', '=', vaultId).where('name', '=', name).executeTakeFirst()) ?? null;
  }

  async lockSecret(vaultId: string, name: string): Promise<SecretRow | null> {
    return (await this.forUpdate(this.db.selectFrom('secrets').selectAll().where('vault_id', '=', vaultId).where('name', '=', name), 'lockSecret').executeTakeFirst()) ?? null;
  }

  async lockSecretName(name: string): Promise<void> {
    if (this.backend !== 'postgres' || !this.inTx) return;
    await sql`select pg_advisory_xact_lock(hashtext(${`latchkey:secret-name:${name}`}))`.execute(this.db);
  }

  async getSecretValueRow(vaultId: string, name: string, version?: number): Promise<SecretWithCurrent | null> {
    const r = await this.r.selectFrom('secrets as s')
      .innerJoin('secret_versions as v', 'v.secret_id', 's.id')
      .selectAll('s')
      .select(['v.version as v_version', 'v.kek_version', 'v.wrapped_dek', 'v.ciphertext', 'v.created_at as v_created_at', 'v.created_by', 'v.rotated_at'])
      .where('s.vault_id', '=', vaultId)
      .where('s.name', '=', name)
      .where((eb) => (version === undefined ? eb('v.version', '=', eb.ref('s.current_version')) : eb('v.version', '=', version)))
      .executeTakeFirst();
    if (!r) return null;
    const { v_version, kek_version, wrapped_dek, ciphertext, v_created_at, created_by, rotated_at, ...secret } = r;
    return {
      secret,
      version: { secret_id: secret.id, version: v_version, kek_version, wrapped_dek, ciphertext, created_at: v_created_at, created_by, rotated_at },
    };
  }

  async getVaultSecretValueRow(vaultName: string, name: string, version?: number): Promise<(SecretWithCurrent & { vault: VaultRow }) | null> {
    const params = version === undefined ? [vaultName, name] : [vaultName, name, version];
    const r = await this.hot('r', version === undefined ? 'vaultSecretCurrent' : 'vaultSecretVersion', params, () => this.r.selectFrom('vaults as vt')
      .innerJoin('secrets as s', 's.vault_id', 'vt.id')
      .innerJoin('secret_versions as v', 'v.secret_id', 's.id')
      .selectAll('s')
      .select(['v.version as v_version', 'v.kek_version', 'v.wrapped_dek', 'v.ciphertext', 'v.created_at as v_created_at', 'v.created_by', 'v.rotated_at'])
      .select(['vt.name as vt_name', 'vt.description as vt_description', 'vt.fallback as vt_fallback', 'vt.passthrough as vt_passthrough', 'vt.created_at as vt_created_at', 'vt.updated_at as vt_updated_at'])
      .where('vt.name', '=', vaultName)
      .where('s.name', '=', name)
      .where((eb) => (version === undefined ? eb('v.version', '=', eb.ref('s.current_version')) : eb('v.version', '=', version))), (r) => {
      const { v_version, kek_version, wrapped_dek, ciphertext, v_created_at, created_by, rotated_at, vt_name, vt_description, vt_fallback, vt_passthrough, vt_created_at, vt_updated_at, ...secret } = r;
      return {
        vault: { id: secret.vault_id, name: vt_name, description: vt_description, fallback: vt_fallback, passthrough: vt_passthrough, created_at: vt_created_at, updated_at: vt_updated_at },
        secret,
        version: { secret_id: secret.id, version: v_version, kek_version, wrapped_dek, ciphertext, created_at: v_created_at, created_by, rotated_at },
      };
    });
    return r ?? null;
  }

  listSecrets(q: SecretListQuery): Promise<SecretRow[]> {
    let query = this.r.selectFrom('secrets').selectAll().where('vault_id', '=', q.vaultId);
    if (q.category) query = query.where('category', '=', q.category);
    if (q.prefix) query = query.where(startsWith('name', q.prefix));
    if (q.q) {
      const like = `%${q.q.replace(/[\\%_]/g, (c) => '\\' + c)}%`;
      const op = this.backend === 'postgres' ? 'ilike' : 'like';
      // tags are a JSON array of [A-Za-z0-9_.:-] words: searched as text only for a q of those
      // characters, which can never match the array's own quotes and commas
      const inTags = !q.namesOnly && TAG_RE.test(q.q);
      query = query.where((eb) => eb.or([
        eb(sql`name`, op, sql`${like} escape '\\'`),
        ...(q.namesOnly ? [] : [eb(sql`coalesce(description, '')`, op, sql`${like} escape '\\'`)]),
        ...(inTags ? [eb(sql`tags`, op, sql`${like} escape '\\'`)] : []),
      ]));
    }
    if (q.after) query = query.where('name', '>', q.after);
    return query.orderBy('name').limit(q.limit).execute();
  }

  async insertSecret(row: SecretRow): Promise<void> {
    await guardUnique(this.db.insertInto('secrets').values(row).execute());
  }

  async advanceSecret(id: string, expected: number, next: number, patch: Partial<Pick<SecretRow, 'category' | 'description' | 'tags' | 'updated_at'>>): Promise<boolean> {
    const r = await this.db.updateTable('secrets').set({ ...patch, current_version: next })
      .where('id', '=', id).where('current_version', '=', expected).executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async touchSecretRotated(id: string, at: string): Promise<void> {
    await this.db.updateTable('secrets').set({ last_rotated_at: at }).where('id', '=', id).execute();
  }

  async deleteSecret(id: string): Promise<{ versions: number }> {
    const r = await this.db.deleteFrom('secret_versions').where('secret_id', '=', id).executeTakeFirst();
    await this.db.deleteFrom('secrets').where('id', '=', id).execute();
    return { versions: Number(r.numDeletedRows) };
  }

  async insertVersion(row: VersionRow): Promise<void> {
    await guardUnique(this.db.insertInto('secret_versions').values(row).execute());
  }

  async getVersion(secretId: string, version: number): Promise<VersionRow | null> {
    return (await this.r.selectFrom('secret_versions').selectAll().where('secret_id', '=', secretId).where('version', '=', version).executeTakeFirst()) ?? null;
  }

  listVersions(secretId: string) {
    return this.r.selectFrom('secret_versions').select(versionMetaColumns).where('secret_id', '=', secretId).orderBy('version', 'desc').execute();
  }

  async updateVersionSeal(secretId: string, version: number, seal: Pick<VersionRow, 'kek_version' | 'wrapped_dek' | 'ciphertext'> & { rotated_at?: string | null }): Promise<void> {
    await this.db.updateTable('secret_versions').set(seal).where('secret_id', '=', secretId).where('version', '=', version).execute();
  }

  async listCurrentVersions(vaultId: string, after: string | null, limit: number): Promise<SecretWithCurrent[]> {
    let q = this.r.selectFrom('secrets as s')
      .innerJoin('secret_versions as v', (j) => j.onRef('v.secret_id', '=', 's.id').onRef('v.version', '=', 's.current_version'))
      .selectAll('s')
      .select(['v.version as v_version', 'v.kek_version', 'v.wrapped_dek', 'v.ciphertext', 'v.created_at as v_created_at', 'v.created_by', 'v.rotated_at'])
      .where('s.vault_id', '=', vaultId);
    if (after !== null) q = q.where('s.name', '>', after);
    const rows = await q.orderBy('s.name').limit(limit).execute();
    return rows.map(({ v_version, kek_version, wrapped_dek, ciphertext, v_created_at, created_by, rotated_at, ...secret }) => ({
      secret,
      version: { secret_id: secret.id, version: v_version, kek_version, wrapped_dek, ciphertext, created_at: v_created_at, created_by, rotated_at },
    }));
  }

  listVersionsBelowKek(kekVersion: number, limit: number) {
    return this.r.selectFrom('secret_versions as v')
      .innerJoin('secrets as s', 's.id', 'v.secret_id')
      .selectAll('v')
      .select('s.vault_id')
      .where('v.kek_version', '<', kekVersion)
      .orderBy('v.secret_id').orderBy('v.version')
      .limit(limit)
      .execute();
  }

  async countSecrets(vaultIds?: readonly string[]) {
    if (vaultIds && vaultIds.length === 0) return { total: 0, byCategory: {}, byKek: {}, lastRotatedAt: null };
    const secrets = () => {
      const q = this.r.selectFrom('secrets');
      return vaultIds ? q.where('vault_id', 'in', vaultIds) : q;
    };
    const versions = vaultIds
      ? this.r.selectFrom('secret_versions').where('secret_id', 'in', (eb) => eb.selectFrom('secrets').select('id').where('vault_id', 'in', vaultIds))
      : this.r.selectFrom('secret_versions');
    const byCat = await secrets().select(['category', (eb) => eb.fn.countAll().as('n')]).groupBy('category').execute();
    const byKek = await versions.select(['kek_version', (eb) => eb.fn.countAll().as('n')]).groupBy('kek_version').execute();
    const last = await secrets().select((eb) => eb.fn.max('last_rotated_at').as('m')).executeTakeFirst();
    const byCategory: Record<string, number> = {};
    let total = 0;
    for (const r of byCat) {
      byCategory[r.category] = Number(r.n);
      total += Number(r.n);
    }
    const kek: Record<string, number> = {};
    for (const r of byKek) kek[String(r.kek_version)] = Number(r.n);
    return { total, byCategory, byKek: kek, lastRotatedAt: (last?.m as string | null) ?? null };
  }

  async countVaultSecrets(vaultId: string): Promise<number> {
    const r = await this.r.selectFrom('secrets').select((eb) => eb.fn.countAll().as('n')).where('vault_id', '=', vaultId).executeTakeFirstOrThrow();
    return Number(r.n);
  }

  // ---- audit

  async lockAuditHead(): Promise<AuditHead> {
    const head = await this.hot('w', 'lockAuditHead', [1], () => this.forUpdate(this.db.selectFrom('audit_head').selectAll().where('id', '=', 1)));
    if (!head) throw new AuditHeadMissing();
    return head;
  }

  async getAuditHead(): Promise<AuditHead> {
    const head = await this.r.selectFrom('audit_head').selectAll().where('id', '=', 1).executeTakeFirst();
    if (!head) throw new AuditHeadMissing();
    return head;
  }

  async insertAuditEvents(rows: AuditRow[]): Promise<void> {
    if (this.raw && this.inTx && rows.length) return this.insertAuditRaw(this.raw, rows);
    // SQLite limits bound parameters per statement; 13 columns x 500 rows stays well inside it.
    for (let i = 0; i < rows.length; i += 500) {
      await this.db.insertInto('audit_events').values(rows.slice(i, i + 500)).execute();
    }
  }

  /** SQLite, inside an open transaction on the writer: one prepared single-row insert, run per row. */
  private insertAuditRaw(raw: RawSqlite, rows: AuditRow[]): void {
    const first = rows[0]!;
    const cols = Object.keys(first) as Array<keyof AuditRow>;
    const text = hotSql(this.backend, `insertAudit:${cols.join(',')}`, cols.map((c) => first[c]), () => this.db.insertInto('audit_events').values(first));
    const st = statement(raw.writer, text);
    for (const r of rows) st.run(...cols.map((c) => r[c]));
    raw.wrote(kindOf(text));
  }

  async appendAudit(make: (head: AuditHead) => AuditRow[]): Promise<AuditRow[]> {
    const raw = this.raw;
    if (!raw || this.inTx || raw.writer.inTransaction) {
      // PostgreSQL, the caller's transaction, or one open on the writer (Kysely's, across awaits)
      return this.tx(async (s) => {
        const rows = make(await s.lockAuditHead());
        if (rows.length) {
          await s.insertAuditEvents(rows);
          await s.setAuditHead(rows.at(-1)!.seq, rows.at(-1)!.hash);
        }
        return rows;
      });
    }
    // the group commit of reads, vends and proxied requests: one synchronous transaction, no
    // awaits inside, so nothing else can use the connection meanwhile
    const w = raw.writer;
    const sqlOf = (key: string, params: unknown[], build: () => Compilable<unknown>) => statement(w, hotSql(this.backend, key, params, build));
    const rows = w.transaction(() => {
      const head = sqlOf('lockAuditHead', [1], () => this.db.selectFrom('audit_head').selectAll().where('id', '=', 1)).get(1) as AuditHead | undefined;
      if (!head) throw new AuditHeadMissing();
      const out = make(head);
      if (!out.length) return out;
      this.insertAuditRaw(raw, out);
      const { seq, hash } = out.at(-1)!;
      sqlOf('setAuditHead', [seq, hash, 1], () => this.db.updateTable('audit_head').set({ seq, hash }).where('id', '=', 1)).run(seq, hash, 1);
      return out;
    }).immediate();
    await this.durable?.settle();
    return rows;
  }

  async setAuditHead(seq: number, hash: string): Promise<void> {
    await this.hot('w', 'setAuditHead', [seq, hash, 1], () => this.db.updateTable('audit_head').set({ seq, hash }).where('id', '=', 1));
  }

  queryAudit(q: AuditQuery): Promise<AuditRow[]> {
    let query = this.r.selectFrom('audit_events').selectAll();
    if (q.vault) query = query.where('vault', '=', q.vault);
    if (q.actor) query = query.where('actor', '=', q.actor);
    if (q.target) query = query.where('target', '=', q.target);
    // the details are JSON.stringify'd: a quoted name is an exact match. A plain substring test
    // (case-sensitive on both backends, where SQLite's LIKE ignores ASCII case), no pattern to escape
    const inDetails = (text: string) => (this.backend === 'postgres' ? sql<boolean>`strpos(details, ${text}) > 0` : sql<boolean>`instr(details, ${text}) > 0`);
    const secret = q.secret;
    if (secret !== undefined) {
      query = query.where((eb) => eb.or([
        eb('target', '=', secret),
        eb('target', '=', `secret:${secret}`),
        eb.and([eb('action', '=', 'proxy.request'), inDetails(JSON.stringify(secret))]),
      ]));
    }
    const agent = q.agent;
    if (agent !== undefined) {
      query = query.where((eb) => eb.or([
        eb('actor', '=', `agent:${agent}`),
        eb('target', '=', `agent:${agent}`),
        eb.and([startsWith('action', 'grant.'), inDetails(`"agent":${JSON.stringify(agent)}`)]),
      ]));
    }
    if (q.action) {
      if (q.action.endsWith('*') || q.action.endsWith('.')) {
        query = query.where(startsWith('action', q.action.replace(/\*$/, '')));
      } else query = query.where('action', '=', q.action);
    }
    if (q.outcome) query = query.where('outcome', '=', q.outcome);
    if (q.since) query = query.where('ts', '>=', q.since);
    if (q.until) query = query.where('ts', '<=', q.until);
    if (q.q) {
      const like = `%${q.q.replace(/[\\%_]/g, (c) => '\\' + c)}%`;
      const op = this.backend === 'postgres' ? 'ilike' : 'like';
      query = query.where((eb) => eb.or(
        (['actor', 'action', 'vault', 'target', 'details', 'ip'] as const).map((c) => eb(sql`coalesce(${sql.ref(c)}, '')`, op, sql`${like} escape '\\'`)),
      ));
    }
    if (q.beforeSeq !== undefined) query = query.where('seq', '<', q.beforeSeq);
    return query.orderBy('seq', 'desc').limit(q.limit).execute();
  }

  auditRange(after: number, limit: number): Promise<AuditRow[]> {
    return this.r.selectFrom('audit_events').selectAll().where('seq', '>', after).orderBy('seq').limit(limit).execute();
  }

  async countAudit(): Promise<number> {
    const r = await this.r.selectFrom('audit_events').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow();
    return Number(r.n);
  }

  async lastAuditBefore(before: string): Promise<AuditRow | null> {
    return (await this.r.selectFrom('audit_events').selectAll().where('ts', '<', before).orderBy('seq', 'desc').limit(1).executeTakeFirst()) ?? null;
  }

  async pruneAudit(throughSeq: number, anchorHash: string): Promise<number> {
    const r = await this.db.deleteFrom('audit_events').where('seq', '<=', throughSeq).executeTakeFirst();
    await this.db.updateTable('audit_head').set({ anchor_seq: throughSeq, anchor_hash: anchorHash }).where('id', '=', 1).execute();
    return Number(r.numDeletedRows);
  }

  // ---- people and tokens

  async countUsers(): Promise<number> {
    const r = await this.r.selectFrom('users').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow();
    return Number(r.n);
  }

  async getUser(id: string): Promise<UserRow | null> {
    return (await this.r.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst()) ?? null;
  }

  async getUserByEmail(email: string): Promise<UserRow | null> {
    return (await this.r.selectFrom('users').selectAll().where('email', '=', email).executeTakeFirst()) ?? null;
  }

  async insertUser(row: UserRow): Promise<void> {
    await guardUnique(this.db.insertInto('users').values(row).execute());
  }

  async updateUser(id: string, patch: Partial<Pick<UserRow, 'email' | 'password_hash' | 'role' | 'disabled' | 'updated_at'>>): Promise<void> {
    if (isEmptyPatch(patch)) return;
    await guardUnique(this.db.updateTable('users').set(patch).where('id', '=', id).execute());
  }

  async insertToken(row: TokenRow): Promise<void> {
    await guardUnique(this.db.insertInto('tokens').values(row).execute());
  }

  async getTokenWithUser(hash: string): Promise<{ token: TokenRow; user: UserRow | null } | null> {
    const r = await this.hot('r', 'tokenWithUser', [hash], () => this.r.selectFrom('tokens as t')
      .leftJoin('users as u', 'u.id', 't.user_id')
      .selectAll('t')
      .select(['u.email as u_email', 'u.password_hash as u_password_hash', 'u.role as u_role', 'u.disabled as u_disabled', 'u.created_at as u_created_at', 'u.updated_at as u_updated_at', 'u.id as u_id'])
      .where('t.hash', '=', hash), (r) => {
      const { u_email, u_password_hash, u_role, u_disabled, u_created_at, u_updated_at, u_id, ...token } = r;
      const user: UserRow | null = u_id
        ? { id: u_id, email: u_email ?? null, password_hash: u_password_hash ?? null, role: u_role!, disabled: u_disabled!, created_at: u_created_at!, updated_at: u_updated_at! }
        : null;
      return { token: token as TokenRow, user };
    });
    return r ?? null;
  }

  async getTokenByHash(hash: string): Promise<TokenRow | null> {
    return (await this.r.selectFrom('tokens').selectAll().where('hash', '=', hash).executeTakeFirst()) ?? null;
  }

  listTokens(filter: { userId?: string; agentId?: string; kind?: string }): Promise<TokenRow[]> {
    let q = this.r.selectFrom('tokens').selectAll();
    if (filter.userId) q = q.where('user_id', '=', filter.userId);
    if (filter.agentId) q = q.where('agent_id', '=', filter.agentId);
    if (filter.kind) q = q.where('kind', '=', filter.kind);
    return q.orderBy('created_at').execute();
  }

  async revokeToken(id: string, at: string): Promise<boolean> {
    const r = await this.db.updateTable('tokens').set({ revoked_at: at }).where('id', '=', id).where('revoked_at', 'is', null).executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async revokeTokensOf(filter: { agentId?: string; userId?: string; kind?: string }, at: string): Promise<number> {
    let q = this.db.updateTable('tokens').set({ revoked_at: at }).where('revoked_at', 'is', null);
    if (filter.agentId) q = q.where('agent_id', '=', filter.agentId);
    if (filter.userId) q = q.where('user_id', '=', filter.userId);
    if (filter.kind) q = q.where('kind', '=', filter.kind);
    if (!filter.agentId && !filter.userId) throw new Error('revokeTokensOf needs an agent or a user');
    const r = await q.executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  listUsers(): Promise<UserRow[]> {
    return this.r.selectFrom('users').selectAll().orderBy('created_at').execute();
  }

  async countActiveOwners(): Promise<number> {
    const r = await this.r.selectFrom('users').select((eb) => eb.fn.countAll().as('n')).where('role', '=', 'owner').where('disabled', '=', 0).executeTakeFirstOrThrow();
    return Number(r.n);
  }

  // ---- agents and membership

  async insertAgent(row: AgentRow): Promise<void> {
    await guardUnique(this.db.insertInto('agents').values(row).execute());
  }

  async getAgent(id: string): Promise<AgentRow | null> {
    return (await this.r.selectFrom('agents').selectAll().where('id', '=', id).executeTakeFirst()) ?? null;
  }

  async getAgentByName(name: string): Promise<AgentRow | null> {
    return (await this.r.selectFrom('agents').selectAll().where('name', '=', name).executeTakeFirst()) ?? null;
  }

  listAgents(): Promise<AgentRow[]> {
    return this.r.selectFrom('agents').selectAll().orderBy('name').execute();
  }

  async updateAgent(id: string, patch: Partial<Pick<AgentRow, 'status' | 'revoked_at' | 'description'>>): Promise<void> {
    if (isEmptyPatch(patch)) return;
    await this.db.updateTable('agents').set(patch).where('id', '=', id).execute();
  }

  async upsertMember(row: MemberRow): Promise<void> {
    await this.db.insertInto('vault_members').values(row)
      .onConflict((oc) => oc.columns(['vault_id', 'kind', 'member_id']).doUpdateSet({ role: row.role }))
      .execute();
  }

  async deleteMember(vaultId: string, kind: string, memberId: string): Promise<boolean> {
    const r = await this.db.deleteFrom('vault_members').where('vault_id', '=', vaultId).where('kind', '=', kind).where('member_id', '=', memberId).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }

  async getMemberRole(vaultId: string, kind: string, memberId: string): Promise<string | null> {
    const r = await this.hot('r', 'memberRole', [vaultId, kind, memberId], () => this.r.selectFrom('vault_members').select('role')
      .where('vault_id', '=', vaultId).where('kind', '=', kind).where('member_id', '=', memberId), (x) => x.role);
    return r ?? null;
  }

  async lockMember(vaultId: string, kind: string, memberId: string): Promise<string | null> {
    return (await this.forUpdate(this.db.selectFrom('vault_members').select('role').where('vault_id', '=', vaultId).where('kind', '=', kind).where('member_id', '=', memberId), 'lockMember').executeTakeFirst())?.role ?? null;
  }

  listMembers(vaultId: string): Promise<MemberRow[]> {
    return this.r.selectFrom('vault_members').selectAll().where('vault_id', '=', vaultId).orderBy('kind').orderBy('created_at').execute();
  }

  listMemberships(kind: string, memberId: string): Promise<MemberRow[]> {
    return this.r.selectFrom('vault_members').selectAll().where('kind', '=', kind).where('member_id', '=', memberId).execute();
  }

  // ---- grants

  async insertGrant(row: GrantRow): Promise<void> {
    await guardUnique(this.db.insertInto('grants').values(row).execute());
  }

  async getGrant(id: string): Promise<GrantRow | null> {
    return (await this.r.selectFrom('grants').selectAll().where('id', '=', id).executeTakeFirst()) ?? null;
  }

  listGrants(filter: { vaultId?: string; agentId?: string; status?: string; kind?: string; target?: string }): Promise<GrantRow[]> {
    let q = this.r.selectFrom('grants').selectAll();
    if (filter.vaultId) q = q.where('vault_id', '=', filter.vaultId);
    if (filter.agentId) q = q.where('agent_id', '=', filter.agentId);
    if (filter.status) q = q.where('status', '=', filter.status);
    if (filter.kind) q = q.where('kind', '=', filter.kind);
    if (filter.target) q = q.where('target', '=', filter.target);
    return q.orderBy('created_at', 'desc').limit(GRANT_PAGE).execute();
  }

  async transitionGrant(id: string, from: string[], patch: Partial<GrantRow>): Promise<boolean> {
    const r = await this.db.updateTable('grants').set(patch).where('id', '=', id).where('status', 'in', from).executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async findActiveGrant(vaultId: string, agentId: string, kind: string, target: string, modes: string[], now: string): Promise<GrantRow | null> {
    return (await this.r.selectFrom('grants').selectAll()
      .where('vault_id', '=', vaultId).where('agent_id', '=', agentId).where('kind', '=', kind).where('target', '=', target)
      .where('mode', 'in', modes).where('status', '=', 'approved')
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
      .orderBy('created_at', 'desc').limit(1).executeTakeFirst()) ?? null;
  }

  // ---- services

  async insertService(row: ServiceRow): Promise<void> {
    await guardUnique(this.db.insertInto('services').values(row).execute());
  }

  async getService(vaultId: string, name: string): Promise<ServiceRow | null> {
    return (await this.r.selectFrom('services').selectAll().where('vault_id', '=', vaultId).where('name', '=', name).executeTakeFirst()) ?? null;
  }

  listServices(vaultId: string): Promise<ServiceRow[]> {
    return this.r.selectFrom('services').selectAll().where('vault_id', '=', vaultId).orderBy('name').execute();
  }

  async updateService(id: string, patch: Partial<ServiceRow>): Promise<void> {
    if (isEmptyPatch(patch)) return;
    await guardUnique(this.db.updateTable('services').set(patch).where('id', '=', id).execute());
  }

  async deleteService(id: string): Promise<void> {
    await this.db.deleteFrom('services').where('id', '=', id).execute();
  }

  // ---- proposals

  async insertProposal(row: ProposalRow): Promise<void> {
    await guardUnique(this.db.insertInto('proposals').values(row).execute());
  }

  async getProposal(id: string): Promise<ProposalRow | null> {
    return (await this.r.selectFrom('proposals').selectAll().where('id', '=', id).executeTakeFirst()) ?? null;
  }

  async getProposalByApprovalHash(hash: string): Promise<ProposalRow | null> {
    return (await this.r.selectFrom('proposals').selectAll().where('approval_hash', '=', hash).executeTakeFirst()) ?? null;
  }

  listProposals(filter: { vaultId?: string; agentId?: string; status?: string }): Promise<ProposalRow[]> {
    let q = this.r.selectFrom('proposals').selectAll();
    if (filter.vaultId) q = q.where('vault_id', '=', filter.vaultId);
    if (filter.agentId) q = q.where('agent_id', '=', filter.agentId);
    if (filter.status) q = q.where('status', '=', filter.status);
    return q.orderBy('created_at', 'desc').limit(1000).execute();
  }

  async transitionProposal(id: string, patch: Partial<ProposalRow> & { status: string }): Promise<boolean> {
    // a decided proposal keeps no agent-supplied value: approved ones were copied into secrets
    const r = await this.db.updateTable('proposals').set(patch.status === 'pending' ? patch : { ...patch, sealed_values: null }).where('id', '=', id).where('status', '=', 'pending').executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async sweepProposals(now: string): Promise<number> {
    const r = await this.db.updateTable('proposals').set({ status: 'expired', sealed_values: null }).where('status', '=', 'pending').where('expires_at', '<=', now).executeTakeFirst();
    await this.db.updateTable('proposals').set({ sealed_values: null }).where('status', '<>', 'pending').where('sealed_values', 'is not', null).execute();
    return Number(r.numUpdatedRows);
  }

  async updateProposalSeal(id: string, sealed: Uint8Array): Promise<boolean> {
    const r = await this.db.updateTable('proposals').set({ sealed_values: sealed }).where('id', '=', id).where('status', '=', 'pending').executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  // ---- login throttling

  // ---- the injection proxy

  async getProxyAuth(tokenHash: string, vaultName: string, service: string | null = null, now = new Date().toISOString()): Promise<ProxyAuthRow | null> {
    const withService = service !== null;
    const build = () => {
      let q = this.r.selectFrom('tokens as t')
        .leftJoin('agents as a', 'a.id', 't.agent_id')
        .leftJoin('vaults as vt', (j) => j.on('vt.name', '=', vaultName))
        .leftJoin('vault_members as m', (j) => j.onRef('m.vault_id', '=', 'vt.id').on('m.kind', '=', sql.lit('agent')).onRef('m.member_id', '=', 't.agent_id'))
        .selectAll('t')
        .select(['a.id as a_id', 'a.name as a_name', 'a.status as a_status', 'a.description as a_description', 'a.created_by as a_created_by', 'a.created_at as a_created_at', 'a.revoked_at as a_revoked_at'])
        .select(['vt.id as vt_id', 'vt.name as vt_name', 'vt.description as vt_description', 'vt.fallback as vt_fallback', 'vt.passthrough as vt_passthrough', 'vt.created_at as vt_created_at', 'vt.updated_at as vt_updated_at'])
        .select(['m.role as m_role']);
      if (withService) {
        q = q.leftJoin('services as s', (j) => j.onRef('s.vault_id', '=', 'vt.id').on('s.name', '=', service))
          .select(['s.id as s_id', 's.name as s_name', 's.host as s_host', 's.path_prefix as s_path_prefix', 's.port as s_port', 's.auth as s_auth', 's.methods as s_methods', 's.path_prefixes as s_path_prefixes',
            's.quota_per_minute as s_quota_per_minute', 's.enabled as s_enabled', 's.description as s_description', 's.created_at as s_created_at', 's.updated_at as s_updated_at'])
          .select((eb) => useGrant(eb.selectFrom('grants as g').whereRef('g.vault_id', '=', 'vt.id').whereRef('g.agent_id', '=', 't.agent_id').whereRef('g.target', '=', 's.name'), 'g.id').as('grant_id'))
          .select((eb) => useGrant(eb.selectFrom('grants as g').whereRef('g.vault_id', '=', 'vt.id').whereRef('g.agent_id', '=', 't.agent_id').whereRef('g.target', '=', 's.name'), 'g.expires_at').as('grant_expires_at'));
      }
      return q.where('t.hash', '=', tokenHash);
    };
    const params = withService ? [vaultName, service, tokenHash] : [vaultName, tokenHash];
    const r = await this.hot('r', withService ? 'proxyAuthService' : 'proxyAuth', params, build as () => Compilable<Record<string, any>>, (r) => ({
      token: {
        id: r.id, kind: r.kind, hash: r.hash, name: r.name, user_id: r.user_id, agent_id: r.agent_id, vault_id: r.vault_id, expires_at: r.expires_at,
        revoked_at: r.revoked_at, created_at: r.created_at, last_used_at: r.last_used_at,
      } as TokenRow,
      agent: r.a_id ? { id: r.a_id, name: r.a_name, status: r.a_status, description: r.a_description ?? null, created_by: r.a_created_by, created_at: r.a_created_at, revoked_at: r.a_revoked_at ?? null } as AgentRow : null,
      vault: r.vt_id ? { id: r.vt_id, name: r.vt_name, description: r.vt_description ?? null, fallback: r.vt_fallback, passthrough: Number(r.vt_passthrough), created_at: r.vt_created_at, updated_at: r.vt_updated_at } as VaultRow : null,
      role: (r.m_role ?? null) as string | null,
      service: r.s_id
        ? {
          id: r.s_id, vault_id: r.vt_id, name: r.s_name, host: r.s_host, path_prefix: r.s_path_prefix ?? null, port: r.s_port === null ? null : Number(r.s_port), auth: r.s_auth,
          methods: r.s_methods, path_prefixes: r.s_path_prefixes, quota_per_minute: r.s_quota_per_minute === null ? null : Number(r.s_quota_per_minute), enabled: Number(r.s_enabled),
          description: r.s_description ?? null, created_at: r.s_created_at, updated_at: r.s_updated_at,
        } as ServiceRow
        : null,
      grant: { id: (r.grant_id ?? null) as string | null, expiresAt: (r.grant_expires_at ?? null) as string | null },
    }));
    return r ? { token: r.token, agent: r.agent, vault: r.vault, role: r.role, service: r.service, grantId: liveGrant(r.grant.id, r.grant.expiresAt, now) } : null;
  }

  async getProxyService(vaultId: string, agentId: string, service: string, now: string): Promise<{ service: ServiceRow; grantId: string | null } | null> {
    const r = await this.hot('r', 'proxyService', [agentId, agentId, vaultId, service], () => this.r.selectFrom('services as s')
      .selectAll('s')
      .select((eb) => useGrant(eb.selectFrom('grants as g').whereRef('g.vault_id', '=', 's.vault_id').where('g.agent_id', '=', agentId).whereRef('g.target', '=', 's.name'), 'g.id').as('grant_id'))
      .select((eb) => useGrant(eb.selectFrom('grants as g').whereRef('g.vault_id', '=', 's.vault_id').where('g.agent_id', '=', agentId).whereRef('g.target', '=', 's.name'), 'g.expires_at').as('grant_expires_at'))
      .where('s.vault_id', '=', vaultId).where('s.name', '=', service), (r) => {
      const { grant_id, grant_expires_at, ...row } = r as ServiceRow & { grant_id: string | null; grant_expires_at: string | null };
      return { service: row as ServiceRow, grant: { id: grant_id ?? null, expiresAt: grant_expires_at ?? null } };
    });
    return r ? { service: r.service, grantId: liveGrant(r.grant.id, r.grant.expiresAt, now) } : null;
  }

  async bumpProxyQuota(vaultId: string, service: string, agentId: string, win: number): Promise<number> {
    const r = await this.db.insertInto('proxy_quota').values({ vault_id: vaultId, service, agent_id: agentId, win, count: 1 })
      .onConflict((oc) => oc.columns(['vault_id', 'service', 'agent_id', 'win']).doUpdateSet({ count: sql<number>`proxy_quota.count + 1` }))
      .returning('count').executeTakeFirstOrThrow();
    return Number(r.count);
  }

  async pruneProxyQuota(beforeWin: number): Promise<number> {
    const r = await this.db.deleteFrom('proxy_quota').where('win', '<', beforeWin).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  async getAuthFailure(key: string): Promise<AuthFailureRow | null> {
    return (await this.r.selectFrom('auth_failures').selectAll().where('key', '=', key).executeTakeFirst()) ?? null;
  }

  async bumpAuthFailure(key: string, now: string, windowFrom: string): Promise<{ failures: number; locked_until: string | null }> {
    // one statement: concurrent attempts each get their own count (SET sees the row before it)
    const r = await this.db.insertInto('auth_failures').values({ key, failures: 1, window_start: now, locked_until: null })
      .onConflict((oc) => oc.column('key').doUpdateSet({
        failures: sql<number>`case when auth_failures.window_start < ${windowFrom} then 1 else auth_failures.failures + 1 end`,
        window_start: sql<string>`case when auth_failures.window_start < ${windowFrom} then ${now} else auth_failures.window_start end`,
      }))
      .returning(['failures', 'locked_until']).executeTakeFirstOrThrow();
    return { failures: Number(r.failures), locked_until: (r.locked_until as string | null) ?? null };
  }

  async lockAuthFailure(key: string, until: string): Promise<void> {
    await this.db.updateTable('auth_failures').set({ locked_until: until }).where('key', '=', key).execute();
  }

  async releaseAuthFailure(key: string): Promise<void> {
    await this.db.updateTable('auth_failures').set({ failures: sql<number>`case when failures > 0 then failures - 1 else 0 end` }).where('key', '=', key).execute();
  }

  async clearAuthFailure(key: string): Promise<void> {
    await this.db.deleteFrom('auth_failures').where('key', '=', key).execute();
  }

  // ---- the forward proxy's CA

  async getProxyCa(): Promise<ProxyCaRow | null> {
    return (await this.r.selectFrom('proxy_ca').selectAll().orderBy('created_at').executeTakeFirst()) ?? null;
  }

  async insertProxyCa(row: ProxyCaRow): Promise<void> {
    await guardUnique(this.db.insertInto('proxy_ca').values(row).execute());
  }

  async updateProxyCaKey(id: string, sealed: Uint8Array): Promise<void> {
    await this.db.updateTable('proxy_ca').set({ sealed_key: sealed }).where('id', '=', id).execute();
  }
}
