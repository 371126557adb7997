/**
 * Test harness: run a block of tests once per storage backend (SQLite and PostgreSQL), each block
 * on its own brand-new database, cleaned up afterwards.
 *
 *   import { describeBackends } from './helpers/backends.js';
 *
 *   describeBackends('vault service', (ctx) => {
 *     it('works', async () => {
 *       const store = await ctx.openStore(); // migrated, closed in afterAll
 *       ...
 *     });
 *   });
 *
 * - SQLite: a fresh temp dir per block (ctx.home), database file ctx.sqlitePath = <home>/latchkey.db.
 * - PostgreSQL: a fresh database `lk_test_<hex>` per block on the server at LATCHKEY_TEST_DATABASE_URL
 *   (default postgres://postgres@127.0.0.1:5432/test), reachable at ctx.databaseUrl, dropped
 *   WITH (FORCE) in afterAll. ctx.home is a temp dir there too (usable as LATCHKEY_HOME).
 * - PostgreSQL unreachable: the postgres block is skipped with one loud stderr line per process,
 *   or fails when LATCHKEY_REQUIRE_PG=1.
 *
 * ctx properties are available inside hooks and tests (not while the describe callback itself runs).
 * ctx.freshDatabase() gives another empty database on the same backend (e.g. for a whole server),
 * cleaned up with the block.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { openStore as openStoreImpl, redactUrl, sqlitePathFor, type KyselyStore, type OpenStoreOptions } from '../../src/store/index.js';
import type { Backend } from '../../src/store/schema.js';

export type { Backend } from '../../src/store/schema.js';

/** Every backend a describeBackends block runs on, in order. */
export const BACKENDS: readonly Backend[] = ['sqlite', 'postgres'];

/** One empty database (plus a temp home dir) for one backend. */
export interface TestDatabase {
  readonly backend: Backend;
  /** A temp directory, usable as LATCHKEY_HOME; for SQLite it holds the database file. */
  readonly home: string;
  /** SQLite only: <home>/latchkey.db. */
  readonly sqlitePath: string | undefined;
  /** PostgreSQL only: URL of this test's own database. */
  readonly databaseUrl: string | undefined;
  /** What to pass to openStore() to reach this database. */
  readonly storeOptions: OpenStoreOptions;
  /** Opens a store on this database, migrated unless { migrate: false }; closed when the database is disposed. */
  openStore(options?: { migrate?: boolean }): Promise<KyselyStore>;
}

/** A database you created yourself with freshDatabase(); call dispose() when done. */
export interface DisposableTestDatabase extends TestDatabase {
  /** Closes the stores opened through it, drops the database / removes the temp dir. Idempotent. */
  dispose(): Promise<void>;
}

/** What a describeBackends callback receives: the block's database, plus more on demand. */
export interface BackendContext extends TestDatabase {
  /** Another empty database on the same backend, disposed in this block's afterAll. */
  freshDatabase(): Promise<TestDatabase>;
}

// ---- PostgreSQL availability (probed once per process)

const ADMIN_URL = process.env.LATCHKEY_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const REQUIRE_PG = process.env.LATCHKEY_REQUIRE_PG === '1';

export interface PostgresStatus {
  /** Admin URL with any password redacted. */
  readonly url: string;
  readonly reachable: boolean;
  /** Why it is unreachable (when it is). */
  readonly reason?: string;
  /** server_version_num, when reachable */
  readonly serverVersion?: number;
}

async function probePostgres(): Promise<PostgresStatus> {
  const url = redactUrl(ADMIN_URL);
  const timeoutMs = 2000;
  const client = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: timeoutMs, query_timeout: 5000 });
  client.on('error', () => {});
  const started = Date.now();
  try {
    await client.connect();
    const r = await client.query<{ v: string }>("select current_setting('server_version_num') as v");
    return { url, reachable: true, serverVersion: Number(r.rows[0]!.v) };
  } catch (err) {
    const e = err as Error & { code?: string };
    const detail = `${e.code ? e.code + ' ' : ''}${e.message || String(err)}`.trim();
    const reason = Date.now() - started >= timeoutMs - 50 ? `no answer within ${timeoutMs / 1000} s (${detail})` : detail;
    return { url, reachable: false, reason };
  } finally {
    await client.end().catch(() => {});
  }
}

const PROBE_KEY = Symbol.for('latchkey.test.postgresProbe');
type ProbeHolder = { [PROBE_KEY]?: Promise<PostgresStatus> };
const holder = globalThis as ProbeHolder;
if (!holder[PROBE_KEY]) {
  holder[PROBE_KEY] = probePostgres().then((s) => {
    if (!s.reachable && !REQUIRE_PG) {
      process.stderr.write(`\n*** PostgreSQL tests SKIPPED: unreachable at ${s.url}: ${s.reason} (set LATCHKEY_REQUIRE_PG=1 to make this fail) ***\n`);
    }
    return s;
  });
}

/** Whether the PostgreSQL server for tests answered (probed once per process, ~2 s timeout). */
export const postgresStatus: PostgresStatus = await holder[PROBE_KEY]!;

// ---- creating and disposing databases

function hex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 5000 });
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

function urlForDatabase(name: string): string {
  const u = new URL(ADMIN_URL);
  u.pathname = '/' + name;
  return u.toString();
}

/**
 * Creates an empty database for `backend` (a temp dir for SQLite, a new `lk_test_<hex>` database
 * for PostgreSQL). The caller owns it and must call dispose(); inside describeBackends prefer
 * ctx.freshDatabase(), which does that for you.
 */
export async function freshDatabase(backend: Backend): Promise<DisposableTestDatabase> {
  if (backend === 'postgres' && !postgresStatus.reachable) {
    throw new Error(`PostgreSQL is required for this test but unreachable at ${postgresStatus.url}: ${postgresStatus.reason}`);
  }
  const home = await mkdtemp(join(tmpdir(), `latchkey-test-${backend}-`));
  let dbName: string | undefined;
  let databaseUrl: string | undefined;
  let sqlitePath: string | undefined;
  try {
    if (backend === 'postgres') {
      dbName = `lk_test_${hex(8)}`;
      await withAdmin((c) => c.query(`CREATE DATABASE "${dbName}"`));
      databaseUrl = urlForDatabase(dbName);
    } else {
      sqlitePath = sqlitePathFor(home);
    }
  } catch (err) {
    await rm(home, { recursive: true, force: true });
    throw err;
  }
  const storeOptions: OpenStoreOptions = databaseUrl ? { databaseUrl, poolSize: 5 } : { sqlitePath };
  const stores: KyselyStore[] = [];
  let disposed: Promise<void> | undefined;

  async function dispose(): Promise<void> {
    const errors: unknown[] = [];
    for (const r of await Promise.allSettled(stores.splice(0).map((s) => s.close()))) {
      if (r.status === 'rejected') errors.push(r.reason);
    }
    if (dbName) {
      const force = (postgresStatus.serverVersion ?? 0) >= 130000 ? ' WITH (FORCE)' : '';
      await withAdmin((c) => c.query(`DROP DATABASE IF EXISTS "${dbName}"${force}`)).catch((e) => errors.push(e));
    }
    await rm(home, { recursive: true, force: true }).catch((e) => errors.push(e));
    if (errors.length) throw errors[0];
  }

  return {
    backend,
    home,
    sqlitePath,
    databaseUrl,
    storeOptions,
    async openStore(options?: { migrate?: boolean }) {
      if (disposed) throw new Error('this test database was already disposed');
      const store = await openStoreImpl(storeOptions);
      stores.push(store);
      if (options?.migrate !== false) await store.migrate();
      return store;
    },
    dispose() {
      disposed ??= dispose();
      return disposed;
    },
  };
}

// ---- describeBackends

function makeContext(backend: Backend): BackendContext {
  let main: DisposableTestDatabase | undefined;
  const extra: DisposableTestDatabase[] = [];

  const current = (): DisposableTestDatabase => {
    if (!main) {
      throw new Error(`the ${backend} test database is not ready: use ctx inside beforeAll/beforeEach/it, not in the describe callback`);
    }
    return main;
  };

  beforeAll(async () => {
    main = await freshDatabase(backend);
  });

  afterAll(async () => {
    const all = [...extra.splice(0), ...(main ? [main] : [])];
    const results = await Promise.allSettled(all.map((d) => d.dispose()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  });

  return {
    backend,
    get home() { return current().home; },
    get sqlitePath() { return current().sqlitePath; },
    get databaseUrl() { return current().databaseUrl; },
    get storeOptions() { return current().storeOptions; },
    openStore: (options?: { migrate?: boolean }) => current().openStore(options),
    async freshDatabase() {
      const d = await freshDatabase(backend);
      extra.push(d);
      return d;
    },
  };
}

/**
 * Registers `describe('<title> [sqlite]')` and `describe('<title> [postgres]')`, each calling fn
 * with a context bound to a new, empty database of that backend.
 */
export function describeBackends(title: string, fn: (ctx: BackendContext) => void): void {
  for (const backend of BACKENDS) {
    const name = `${title} [${backend}]`;
    if (backend === 'postgres' && !postgresStatus.reachable) {
      if (REQUIRE_PG) {
        describe(name, () => {
          it('PostgreSQL is reachable', () => {
            throw new Error(`PostgreSQL is required (LATCHKEY_REQUIRE_PG=1) but unreachable at ${postgresStatus.url}: ${postgresStatus.reason}`);
          });
        });
      } else {
        // Registered but skipped, so the report shows which tests did not run.
        describe.skip(name, () => fn(makeContext(backend)));
      }
      continue;
    }
    describe(name, () => fn(makeContext(backend)));
  }
}
