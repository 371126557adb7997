/**
 * The Store (KyselyStore) against real SQLite and PostgreSQL databases: every method, with real rows.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { KyselyStore } from '../src/store/index.js';
import { GENESIS_HASH } from '../src/store/schema.js';
import {
  TransactionConflict, UniqueViolation,
  type AuditRow, type KeyRow, type SecretRow, type Store, type TokenRow, type UserRow, type VaultRow, type VersionRow,
} from '../src/store/store.js';
import { describeBackends, type BackendContext } from './helpers/backends.js';

// ---- row factories (all columns, ISO times, JSON text, 0/1 booleans)

const T0 = Date.parse('2025-01-01T00:00:00.000Z');
const iso = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();
const uid = (p: string) => `${p}_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const bytes = (...b: number[]) => Buffer.from(b);

function vaultRow(over: Partial<VaultRow> = {}): VaultRow {
  const id = over.id ?? uid('vlt');
  return {
    id, name: `vault-${id}`, description: 'a vault', fallback: '[]', passthrough: 0,
    created_at: iso(0), updated_at: iso(0), ...over,
  };
}

function secretRow(vaultId: string, name: string, over: Partial<SecretRow> = {}): SecretRow {
  return {
    id: uid('sec'), vault_id: vaultId, name, category: 'api_key', preset: null, description: null, tags: '[]',
    current_version: 1, created_at: iso(1), updated_at: iso(1), last_rotated_at: null, ...over,
  };
}

function versionRow(secretId: string, version: number, over: Partial<VersionRow> = {}): VersionRow {
  return {
    secret_id: secretId, version, kek_version: 1, wrapped_dek: bytes(1, 2, version), ciphertext: bytes(9, 8, version),
    created_at: iso(version), created_by: 'user:admin', rotated_at: null, ...over,
  };
}

function userRow(over: Partial<UserRow> = {}): UserRow {
  const id = over.id ?? uid('usr');
  return {
    id, email: `${id}@example.test`, password_hash: '$argon2id$fake', role: 'member', disabled: 0,
    created_at: iso(0), updated_at: iso(0), ...over,
  };
}

function tokenRow(over: Partial<TokenRow> = {}): TokenRow {
  const id = over.id ?? uid('tok');
  return {
    id, kind: 'session', hash: `hash-${id}`, name: 'a token', user_id: null, agent_id: null, vault_id: null,
    expires_at: null, revoked_at: null, created_at: iso(0), last_used_at: null, ...over,
  };
}

/** A vault with secrets (each with `versions` versions, the last current). */
async function seedVault(store: Store, names: string[], versions = 1, over: Partial<SecretRow> = {}) {
  const vault = vaultRow();
  await store.insertVault(vault);
  const secrets: SecretRow[] = [];
  for (const name of names) {
    const s = secretRow(vault.id, name, { current_version: versions, ...over });
    await store.insertSecret(s);
    for (let v = 1; v <= versions; v++) await store.insertVersion(versionRow(s.id, v));
    secrets.push(s);
  }
  return { vault, secrets };
}

const byCodepoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

async function expectUnique(p: Promise<unknown>) {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(UniqueViolation);
  expect((err as UniqueViolation).constraint).toBeTruthy();
}

describeBackends('KyselyStore', (ctx: BackendContext) => {
  let store: KyselyStore;

  beforeAll(async () => {
    store = await ctx.openStore();
  });

  /** A migrated store on a database of its own, for tests that look at table-wide totals. */
  const isolatedStore = async () => (await ctx.freshDatabase()).openStore();

  // ---- harness and lifecycle

  it('runs on the expected backend and location', () => {
    expect(store.backend).toBe(ctx.backend);
    if (ctx.backend === 'sqlite') {
      expect(ctx.sqlitePath).toMatch(/latchkey\.db$/);
      expect(ctx.sqlitePath!.startsWith(ctx.home)).toBe(true);
      expect(ctx.databaseUrl).toBeUndefined();
      expect(store.location).toBe(ctx.sqlitePath);
    } else {
      expect(ctx.databaseUrl).toMatch(/^postgres(ql)?:\/\/.*\/lk_test_[0-9a-f]+/);
      expect(ctx.sqlitePath).toBeUndefined();
      expect(store.location).not.toMatch(/:[^:@/]+@/); // no password
    }
  });

  it('migrate is idempotent and initialized() reports the schema', async () => {
    const db = await ctx.freshDatabase();
    const raw = await db.openStore({ migrate: false });
    expect(await raw.initialized()).toBe(false);
    await raw.migrate();
    await raw.migrate();
    expect(await raw.initialized()).toBe(true);
    const again = await db.openStore();
    expect(await again.initialized()).toBe(true);
    expect(await again.getAuditHead()).toEqual({ id: 1, seq: 0, hash: GENESIS_HASH, anchor_seq: 0, anchor_hash: GENESIS_HASH });
  });

  it('two stores on the same database see each other’s writes', async () => {
    const other = await ctx.openStore();
    const v = vaultRow();
    await store.insertVault(v);
    expect(await other.getVaultById(v.id)).toEqual(v);
  });

  it.runIf(ctx.backend === 'postgres')('a deadlock between two transactions aborts one with TransactionConflict (nothing written), the other commits (PostgreSQL)', async () => {
    await store.setMeta('dl.a', '0');
    await store.setMeta('dl.b', '0');
    let release!: () => void;
    const both = new Promise<void>((r) => (release = r));
    let ready = 0;
    const meet = async () => {
      if (++ready === 2) release();
      await both;
    };
    const cross = (first: string, second: string, v: string) => store.tx(async (s) => {
      await s.setMeta(first, v);
      await meet();
      await s.setMeta(second, v);
    });
    const res = await Promise.allSettled([cross('dl.a', 'dl.b', 'x'), cross('dl.b', 'dl.a', 'y')]);
    const lost = res.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(lost).toHaveLength(1);
    expect(lost[0]!.reason).toBeInstanceOf(TransactionConflict);
    const won = res[0]!.status === 'fulfilled' ? 'x' : 'y';
    expect([await store.getMeta('dl.a'), await store.getMeta('dl.b')]).toEqual([won, won]);
  }, 20_000);

  it('login failures: concurrent attempts each get their own count (two stores at once), a stale window starts over, lock and release', async () => {
    const other = await ctx.openStore();
    const t0 = '2026-11-30T10:00:00.000Z';
    const from = '2026-11-30T09:45:00.000Z';
    const counts = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? other : store).bumpAuthFailure('account:race@example.test', t0, from)));
    expect(counts.map((c) => c.failures).sort((a, b) => a - b)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(await store.getAuthFailure('account:race@example.test')).toMatchObject({ failures: 12, window_start: t0, locked_until: null });
    await store.lockAuthFailure('account:race@example.test', '2026-11-30T10:15:00.000Z');
    expect((await store.bumpAuthFailure('account:race@example.test', t0, from)).locked_until).toBe('2026-11-30T10:15:00.000Z');
    // a window that began before `from` starts over
    const later = '2026-11-30T10:20:00.000Z';
    expect(await store.bumpAuthFailure('account:race@example.test', later, '2026-11-30T10:05:00.000Z')).toMatchObject({ failures: 1 });
    expect(await store.getAuthFailure('account:race@example.test')).toMatchObject({ failures: 1, window_start: later });
    // release takes one attempt back, never below zero
    await store.bumpAuthFailure('ip:203.0.113.9', t0, from);
    await store.bumpAuthFailure('ip:203.0.113.9', t0, from);
    await store.releaseAuthFailure('ip:203.0.113.9');
    expect(await store.getAuthFailure('ip:203.0.113.9')).toMatchObject({ failures: 1 });
    await store.releaseAuthFailure('ip:203.0.113.9');
    await store.releaseAuthFailure('ip:203.0.113.9');
    expect(await store.getAuthFailure('ip:203.0.113.9')).toMatchObject({ failures: 0 });
    await store.clearAuthFailure('ip:203.0.113.9');
    expect(await store.getAuthFailure('ip:203.0.113.9')).toBeNull();
  });

  // ---- meta and keys

  it('meta: get missing, set, upsert', async () => {
    expect(await store.getMeta('missing')).toBeNull();
    await store.setMeta('schema.note', 'one');
    expect(await store.getMeta('schema.note')).toBe('one');
    await store.setMeta('schema.note', 'two');
    expect(await store.getMeta('schema.note')).toBe('two');
    await store.setMeta('other', '{"a":1}');
    expect(await store.getMeta('schema.note')).toBe('two');
    expect(await store.getMeta('other')).toBe('{"a":1}');
  });

  it('keys: insert, list ordered by (purpose, version), duplicate, replace', async () => {
    const s = await isolatedStore();
    expect(await s.listKeys()).toEqual([]);
    const k = (purpose: string, version: number, wrapped: Buffer): KeyRow => ({ purpose, version, wrapped, created_at: iso(version) });
    await s.insertKey(k('kek', 2, bytes(2)));
    await s.insertKey(k('kek', 1, ALL_BYTES));
    await s.insertKey(k('audit', 1, bytes(0)));
    const keys = await s.listKeys();
    expect(keys.map((r) => [r.purpose, r.version])).toEqual([['audit', 1], ['kek', 1], ['kek', 2]]);
    expect(Buffer.from(keys[1]!.wrapped).equals(ALL_BYTES)).toBe(true);
    expect(keys[1]!.created_at).toBe(iso(1));
    await expectUnique(s.insertKey(k('kek', 1, bytes(7))));

    await s.replaceKeys([k('kek', 3, bytes(3)), k('token', 1, bytes(4, 5))]);
    const replaced = await s.listKeys();
    expect(replaced.map((r) => [r.purpose, r.version])).toEqual([['kek', 3], ['token', 1]]);
    expect(Buffer.from(replaced[1]!.wrapped).equals(bytes(4, 5))).toBe(true);
    await s.replaceKeys([]);
    expect(await s.listKeys()).toEqual([]);
  });

  // ---- vaults

  it('vaults: insert, get by name and id, duplicate name', async () => {
    const v = vaultRow({ fallback: '["shared","base"]', passthrough: 1, description: null });
    await store.insertVault(v);
    expect(await store.getVault(v.name)).toEqual(v);
    expect(await store.getVaultById(v.id)).toEqual(v);
    expect(await store.getVault('no-such-vault')).toBeNull();
    expect(await store.getVaultById('no-such-id')).toBeNull();
    await expectUnique(store.insertVault(vaultRow({ name: v.name })));
    await expectUnique(store.insertVault(vaultRow({ id: v.id })));
  });

  it('vaults: list with secret_count, ordered by name', async () => {
    const s = await isolatedStore();
    expect(await s.listVaults()).toEqual([]);
    const b = vaultRow({ name: 'b-vault' });
    const a = vaultRow({ name: 'a-vault' });
    const c = vaultRow({ name: 'c-vault' });
    for (const v of [b, a, c]) await s.insertVault(v);
    for (const n of ['x', 'y', 'z']) await s.insertSecret(secretRow(b.id, n));
    await s.insertSecret(secretRow(c.id, 'only'));
    const list = await s.listVaults();
    expect(list.map((v) => [v.name, v.secret_count])).toEqual([['a-vault', 0], ['b-vault', 3], ['c-vault', 1]]);
    expect(typeof list[1]!.secret_count).toBe('number');
    expect(list[0]).toEqual({ ...a, secret_count: 0 });
  });

  it('vaults: update applies only the patch', async () => {
    const v = vaultRow();
    await store.insertVault(v);
    await store.updateVault(v.id, { fallback: '["other"]', passthrough: 1, updated_at: iso(50) });
    expect(await store.getVaultById(v.id)).toEqual({ ...v, fallback: '["other"]', passthrough: 1, updated_at: iso(50) });
    await store.updateVault(v.id, { description: null });
    expect((await store.getVaultById(v.id))!.description).toBeNull();
    await store.updateVault('no-such-id', { description: 'x' }); // no error
    // an empty patch (or one with only undefined values) is a no-op, not an SQL syntax error
    const before = await store.getVaultById(v.id);
    await store.updateVault(v.id, {});
    await store.updateVault(v.id, { description: undefined });
    expect(await store.getVaultById(v.id)).toEqual(before);
  });

  it('vaults: delete cascades to secrets and versions and returns the count', async () => {
    const { vault, secrets } = await seedVault(store, ['a', 'b', 'c'], 2);
    const keep = await seedVault(store, ['a'], 2);
    expect(await store.deleteVault(vault.id)).toEqual({ secrets: 3, deleted: true });
    expect(await store.getVaultById(vault.id)).toBeNull();
    expect(await store.deleteVault(vault.id)).toEqual({ secrets: 0, deleted: false });
    for (const s of secrets) {
      expect(await store.getSecret(vault.id, s.name)).toBeNull();
      expect(await store.getVersion(s.id, 1)).toBeNull();
      expect(await store.listVersions(s.id)).toEqual([]);
    }
    expect(await store.countVaultSecrets(vault.id)).toBe(0);
    // the other vault is untouched
    expect(await store.countVaultSecrets(keep.vault.id)).toBe(1);
    expect(await store.listVersions(keep.secrets[0]!.id)).toHaveLength(2);
    // an empty vault, and an unknown one
    const empty = vaultRow();
    await store.insertVault(empty);
    expect(await store.deleteVault(empty.id)).toEqual({ secrets: 0, deleted: true });
    expect(await store.deleteVault('no-such-id')).toEqual({ secrets: 0, deleted: false });
  });

  // ---- secrets

  it('secrets: insert, get, duplicate (vault, name) is a UniqueViolation', async () => {
    const v = vaultRow();
    const w = vaultRow();
    await store.insertVault(v);
    await store.insertVault(w);
    const s = secretRow(v.id, 'DB_PASSWORD', { preset: 'postgres', description: 'main db', tags: '["prod","db"]', last_rotated_at: iso(5) });
    await store.insertSecret(s);
    expect(await store.getSecret(v.id, 'DB_PASSWORD')).toEqual(s);
    expect(await store.getSecret(v.id, 'db_password')).toBeNull();
    expect(await store.getSecret(w.id, 'DB_PASSWORD')).toBeNull();
    await expectUnique(store.insertSecret(secretRow(v.id, 'DB_PASSWORD')));
    // same name in another vault is fine
    await store.insertSecret(secretRow(w.id, 'DB_PASSWORD'));
    expect(await store.countVaultSecrets(v.id)).toBe(1);
    expect(await store.countVaultSecrets(w.id)).toBe(1);
  });

  it('secrets: getSecretValueRow returns the current or a given version in one row', async () => {
    const v = vaultRow();
    await store.insertVault(v);
    const s = secretRow(v.id, 'TOKEN', { current_version: 2, description: 'd', tags: '["t"]' });
    await store.insertSecret(s);
    const v1 = versionRow(s.id, 1, { kek_version: 1, ciphertext: ALL_BYTES, created_by: 'alice' });
    const v2 = versionRow(s.id, 2, { kek_version: 2, wrapped_dek: ALL_BYTES, created_by: 'bob', rotated_at: iso(99) });
    await store.insertVersion(v1);
    await store.insertVersion(v2);

    const cur = await store.getSecretValueRow(v.id, 'TOKEN');
    expect(cur).not.toBeNull();
    expect(cur!.secret).toEqual(s);
    expect({ ...cur!.version, wrapped_dek: Buffer.from(cur!.version.wrapped_dek), ciphertext: Buffer.from(cur!.version.ciphertext) }).toEqual(v2);

    const old = await store.getSecretValueRow(v.id, 'TOKEN', 1);
    expect(old!.secret).toEqual(s);
    expect(old!.version.version).toBe(1);
    expect(old!.version.created_by).toBe('alice');
    expect(old!.version.created_at).toBe(v1.created_at);
    expect(old!.version.rotated_at).toBeNull();
    expect(Buffer.from(old!.version.ciphertext).equals(ALL_BYTES)).toBe(true);

    expect(await store.getSecretValueRow(v.id, 'TOKEN', 3)).toBeNull();
    expect(await store.getSecretValueRow(v.id, 'NOPE')).toBeNull();
    expect(await store.getSecretValueRow('no-vault', 'TOKEN')).toBeNull();
  });

  it('secrets: listSecrets filters by category, prefix and q', async () => {
    const v = vaultRow();
    await store.insertVault(v);
    const rows = [
      secretRow(v.id, 'api/github', { category: 'api_key', description: 'GitHub PAT' }),
      secretRow(v.id, 'api/stripe', { category: 'api_key', description: 'payments' }),
      secretRow(v.id, 'db/main', { category: 'password', description: 'Primary database' }),
      secretRow(v.id, 'db/replica', { category: 'password', description: null }),
      secretRow(v.id, 'ssh/deploy', { category: 'ssh_key', description: 'deploy key for api' }),
      secretRow(v.id, 'apiary', { category: 'note', description: null }),
      secretRow(v.id, 'tagged', { category: 'note', description: null, tags: '["Production","team:payments"]' }),
    ];
    for (const r of rows) await store.insertSecret(r);
    // a different vault with overlapping names must never leak in
    await seedVault(store, ['api/github', 'db/main']);
    const names = async (q: Partial<Parameters<Store['listSecrets']>[0]>) =>
      (await store.listSecrets({ vaultId: v.id, limit: 100, ...q })).map((r) => r.name);

    expect(await names({})).toEqual(['api/github', 'api/stripe', 'apiary', 'db/main', 'db/replica', 'ssh/deploy', 'tagged']);
    expect((await store.listSecrets({ vaultId: v.id, limit: 100 }))[0]).toEqual(rows[0]);
    expect(await names({ category: 'password' })).toEqual(['db/main', 'db/replica']);
    expect(await names({ category: 'nope' })).toEqual([]);
    expect(await names({ prefix: 'api/' })).toEqual(['api/github', 'api/stripe']);
    expect(await names({ prefix: 'api' })).toEqual(['api/github', 'api/stripe', 'apiary']);
    expect(await names({ prefix: 'API' })).toEqual([]); // prefix is case-sensitive
    expect(await names({ prefix: 'db/', category: 'password' })).toEqual(['db/main', 'db/replica']);
    expect(await names({ prefix: 'db/', category: 'api_key' })).toEqual([]);
    // q matches name or description, case-insensitively
    expect(await names({ q: 'api' })).toEqual(['api/github', 'api/stripe', 'apiary', 'ssh/deploy']);
    expect(await names({ q: 'GITHUB' })).toEqual(['api/github']);
    expect(await names({ q: 'database' })).toEqual(['db/main']);
    expect(await names({ q: 'api', category: 'ssh_key' })).toEqual(['ssh/deploy']);
    expect(await names({ q: 'zzz' })).toEqual([]);
    // and its tags, by any part of one; never by the JSON around them
    expect(await names({ q: 'PRODUCTION' })).toEqual(['tagged']);
    expect(await names({ q: 'team:pay' })).toEqual(['tagged']);
    for (const syntax of ['"', ',', '["', '","']) expect(await names({ q: syntax }), syntax).toEqual([]);
    expect(await names({ q: 'payments', namesOnly: true })).toEqual([]);
  });

  it('secrets: listSecrets prefix matches names with any following character', async () => {
    const v = vaultRow();
    await store.insertVault(v);
    const all = ['pfx', 'pfx-a', 'pfx\u00e9', 'pfx\uffee', 'pfx\u{1F600}', 'pfy', 'pf', 'a%b', 'a%bc', 'a_b', 'axb'];
    for (const n of all) await store.insertSecret(secretRow(v.id, n));
    const names = async (prefix: string) => (await store.listSecrets({ vaultId: v.id, prefix, limit: 100 })).map((r) => r.name).sort(byCodepoint);
    expect(await names('pfx')).toEqual(['pfx', 'pfx-a', 'pfx\u00e9', 'pfx\uffee', 'pfx\u{1F600}'].sort(byCodepoint));
    // LIKE metacharacters in a prefix are literal
    expect(await names('a%')).toEqual(['a%b', 'a%bc']);
    expect(await names('a_')).toEqual(['a_b']);
  });

  it.runIf(ctx.backend === 'postgres')('prefix filters do not depend on the database collation (PostgreSQL, punctuation-ignoring collation)', async (t) => {
    const db = await ctx.freshDatabase();
    const s = await db.openStore();
    const client = new pg.Client({ connectionString: db.databaseUrl });
    await client.connect();
    try {
      try {
        await client.query(`CREATE COLLATION lk_shifted (provider = icu, locale = 'en-US-u-ka-shifted')`);
      } catch {
        t.skip(); // no ICU in this server build
      }
      await client.query('ALTER TABLE secrets ALTER COLUMN name TYPE text COLLATE lk_shifted');
      await client.query('ALTER TABLE audit_events ALTER COLUMN action TYPE text COLLATE lk_shifted');
    } finally {
      await client.end();
    }
    const { vault } = await seedVault(s, ['skill:github:token', 'skill:github2:key', 'skill:githubx:key', 'STRIPE_KEY']);
    expect((await s.listSecrets({ vaultId: vault.id, prefix: 'skill:github:', limit: 100 })).map((r) => r.name)).toEqual(['skill:github:token']);
    const ev = (seq: number, action: string): AuditRow => ({
      seq, id: `e${seq}`, ts: iso(seq), actor: 'a', action, vault: null, target: null, outcome: 'ok', ip: null, request_id: null,
      details: '{}', prev_hash: GENESIS_HASH, hash: GENESIS_HASH,
    });
    await s.insertAuditEvents([ev(1, 'secret.read'), ev(2, 'secretary.note'), ev(3, 'secrets.list'), ev(4, 'secret.write')]);
    expect((await s.queryAudit({ action: 'secret.', limit: 10 })).map((e) => e.action)).toEqual(['secret.write', 'secret.read']);
    expect((await s.queryAudit({ action: 'secret.*', limit: 10 })).map((e) => e.action)).toEqual(['secret.write', 'secret.read']);
  });

  it('secrets: q with %, _ and \\ is matched literally', async () => {
    const v = vaultRow();
    await store.insertVault(v);
    for (const [name, description] of [
      ['rate%limit', null], ['ratexlimit', null], ['rate_limit', null], ['rateXlimit', null],
      ['back\\slash', null], ['backslash', null], ['plain', '100% sure'], ['other', '100 percent'],
    ] as const) {
      await store.insertSecret(secretRow(v.id, name, { description }));
    }
    const names = async (q: string) => (await store.listSecrets({ vaultId: v.id, q, limit: 100 })).map((r) => r.name);
    expect(await names('%')).toEqual(['plain', 'rate%limit']);
    expect(await names('e%l')).toEqual(['rate%limit']);
    expect(await names('_')).toEqual(['rate_limit']);
    expect(await names('e_l')).toEqual(['rate_limit']);
    expect(await names('\\')).toEqual(['back\\slash']);
    expect(await names('k\\s')).toEqual(['back\\slash']);
    expect(await names("'")).toEqual([]);
  });

  it('secrets: cursor pagination (after + limit) returns every row once, in a stable order', async () => {
    const v = vaultRow();
    await store.insertVault(v);
    const names = Array.from({ length: 27 }, (_, i) => `key-${String((i * 7) % 27).padStart(2, '0')}`);
    names.push('Zeta', 'alpha', 'Alpha', 'key-1a', 'key_x');
    for (const [i, n] of names.entries()) await store.insertSecret(secretRow(v.id, n, { category: i % 2 ? 'odd' : 'even' }));
    const expected = [...names].sort(byCodepoint);

    const pageAll = async (extra: { category?: string; prefix?: string }) => {
      const seen: string[] = [];
      let after: string | undefined;
      for (let guard = 0; guard < 100; guard++) {
        const page = await store.listSecrets({ vaultId: v.id, limit: 5, after, ...extra });
        expect(page.length).toBeLessThanOrEqual(5);
        seen.push(...page.map((r) => r.name));
        if (page.length < 5) break;
        after = page[page.length - 1]!.name;
      }
      return seen;
    };
    const first = await pageAll({});
    expect(first).toEqual(expected);
    expect(await pageAll({})).toEqual(first);
    expect(await pageAll({ category: 'odd' })).toEqual(names.filter((_, i) => i % 2).sort(byCodepoint));
    expect(await pageAll({ prefix: 'key-' })).toEqual(expected.filter((n) => n.startsWith('key-')));
    // the cursor is exclusive, and a cursor that is not a stored name still works
    expect((await store.listSecrets({ vaultId: v.id, after: 'key-05', limit: 2 })).map((r) => r.name)).toEqual(['key-06', 'key-07']);
    expect((await store.listSecrets({ vaultId: v.id, after: 'key-055', limit: 1 })).map((r) => r.name)).toEqual(['key-06']);
    expect(await store.listSecrets({ vaultId: v.id, after: 'zzz', limit: 5 })).toEqual([]);
  });

  it('secrets: advanceSecret is a check-and-set on current_version', async () => {
    const v = vaultRow();
    await store.insertVault(v);
    const s = secretRow(v.id, 'CAS', { current_version: 1, description: 'before', tags: '["a"]' });
    await store.insertSecret(s);
    expect(await store.advanceSecret(s.id, 1, 2, { description: 'after', tags: '["b"]', updated_at: iso(20) })).toBe(true);
    expect(await store.getSecret(v.id, 'CAS')).toEqual({ ...s, current_version: 2, description: 'after', tags: '["b"]', updated_at: iso(20) });
    // stale expectation: no change
    expect(await store.advanceSecret(s.id, 1, 3, { description: 'lost update', category: 'other' })).toBe(false);
    expect(await store.getSecret(v.id, 'CAS')).toEqual({ ...s, current_version: 2, description: 'after', tags: '["b"]', updated_at: iso(20) });
    expect(await store.advanceSecret(s.id, 2, 3, {})).toBe(true);
    expect((await store.getSecret(v.id, 'CAS'))!.current_version).toBe(3);
    expect(await store.advanceSecret('no-such-id', 1, 2, {})).toBe(false);
  });

  it('secrets: touchSecretRotated sets last_rotated_at', async () => {
    const { vault, secrets } = await seedVault(store, ['R']);
    await store.touchSecretRotated(secrets[0]!.id, iso(77));
    expect((await store.getSecret(vault.id, 'R'))!.last_rotated_at).toBe(iso(77));
  });

  it('secrets: deleteSecret removes the secret and its versions and returns the count', async () => {
    const { vault, secrets } = await seedVault(store, ['GONE', 'STAYS'], 3);
    const [gone, stays] = secrets as [SecretRow, SecretRow];
    expect(await store.deleteSecret(gone.id)).toEqual({ versions: 3 });
    expect(await store.getSecret(vault.id, 'GONE')).toBeNull();
    expect(await store.listVersions(gone.id)).toEqual([]);
    expect(await store.getSecretValueRow(vault.id, 'GONE')).toBeNull();
    expect(await store.listVersions(stays.id)).toHaveLength(3);
    expect(await store.deleteSecret(gone.id)).toEqual({ versions: 0 });
    // the name is free again
    await store.insertSecret(secretRow(vault.id, 'GONE'));
  });

  it('versions: insert, duplicate, get, list (newest first, no key material), update seal', async () => {
    const v = vaultRow();
    await store.insertVault(v);
    const s = secretRow(v.id, 'V', { current_version: 3 });
    await store.insertSecret(s);
    for (const n of [2, 1, 3]) await store.insertVersion(versionRow(s.id, n, { created_by: `u${n}`, rotated_at: n === 1 ? iso(40) : null }));
    await expectUnique(store.insertVersion(versionRow(s.id, 2)));

    const got = await store.getVersion(s.id, 2);
    expect(got).not.toBeNull();
    expect({ ...got!, wrapped_dek: Buffer.from(got!.wrapped_dek), ciphertext: Buffer.from(got!.ciphertext) }).toEqual(versionRow(s.id, 2, { created_by: 'u2' }));
    expect(await store.getVersion(s.id, 9)).toBeNull();

    const list = await store.listVersions(s.id);
    expect(list).toEqual([3, 2, 1].map((n) => ({
      secret_id: s.id, version: n, kek_version: 1, created_at: iso(n), created_by: `u${n}`, rotated_at: n === 1 ? iso(40) : null,
    })));
    for (const row of list) {
      expect(row).not.toHaveProperty('wrapped_dek');
      expect(row).not.toHaveProperty('ciphertext');
    }

    await store.updateVersionSeal(s.id, 2, { kek_version: 5, wrapped_dek: ALL_BYTES, ciphertext: bytes(255, 0), rotated_at: iso(60) });
    const sealed = (await store.getVersion(s.id, 2))!;
    expect(sealed.kek_version).toBe(5);
    expect(sealed.rotated_at).toBe(iso(60));
    expect(Buffer.from(sealed.wrapped_dek).equals(ALL_BYTES)).toBe(true);
    expect(Buffer.from(sealed.ciphertext).equals(bytes(255, 0))).toBe(true);
    // without rotated_at the column is left alone; other versions untouched
    await store.updateVersionSeal(s.id, 2, { kek_version: 6, wrapped_dek: bytes(1), ciphertext: bytes(2) });
    expect((await store.getVersion(s.id, 2))!.rotated_at).toBe(iso(60));
    expect((await store.getVersion(s.id, 2))!.kek_version).toBe(6);
    expect((await store.getVersion(s.id, 1))!.kek_version).toBe(1);
    expect((await store.getVersion(s.id, 3))!.kek_version).toBe(1);
  });

  it('versions: listCurrentVersions returns current versions by name in batches', async () => {
    const v = vaultRow();
    await store.insertVault(v);
    const names = ['e', 'a', 'd', 'b', 'c'];
    for (const [i, n] of names.entries()) {
      const s = secretRow(v.id, n, { current_version: i + 1 });
      await store.insertSecret(s);
      for (let k = 1; k <= i + 1; k++) await store.insertVersion(versionRow(s.id, k, { ciphertext: Buffer.from(`${n}:${k}`) }));
    }
    await seedVault(store, ['a', 'b']); // another vault

    const b1 = await store.listCurrentVersions(v.id, null, 2);
    const b2 = await store.listCurrentVersions(v.id, b1[1]!.secret.name, 2);
    const b3 = await store.listCurrentVersions(v.id, b2[1]!.secret.name, 2);
    const all = [...b1, ...b2, ...b3];
    expect(b3).toHaveLength(1);
    expect(all.map((r) => r.secret.name)).toEqual(['a', 'b', 'c', 'd', 'e']);
    for (const r of all) {
      expect(r.secret.vault_id).toBe(v.id);
      expect(r.version.secret_id).toBe(r.secret.id);
      expect(r.version.version).toBe(r.secret.current_version);
      expect(Buffer.from(r.version.ciphertext).toString()).toBe(`${r.secret.name}:${r.secret.current_version}`);
      expect(r.version.created_at).toBe(iso(r.secret.current_version));
      expect(r.secret.created_at).toBe(iso(1));
    }
    expect(await store.listCurrentVersions(v.id, 'e', 10)).toEqual([]);
  });

  it('versions: listVersionsBelowKek returns older-KEK versions by (secret_id, version) with vault_id', async () => {
    const s = await isolatedStore();
    const v = vaultRow();
    await s.insertVault(v);
    const a = secretRow(v.id, 'a', { id: 'sec_a', current_version: 3 });
    const b = secretRow(v.id, 'b', { id: 'sec_b', current_version: 2 });
    await s.insertSecret(b);
    await s.insertSecret(a);
    await s.insertVersion(versionRow('sec_b', 2, { kek_version: 1, ciphertext: ALL_BYTES }));
    await s.insertVersion(versionRow('sec_a', 3, { kek_version: 3 }));
    await s.insertVersion(versionRow('sec_b', 1, { kek_version: 2 }));
    await s.insertVersion(versionRow('sec_a', 1, { kek_version: 1 }));
    await s.insertVersion(versionRow('sec_a', 2, { kek_version: 2 }));

    const below3 = await s.listVersionsBelowKek(3, 100);
    expect(below3.map((r) => [r.secret_id, r.version, r.kek_version, r.vault_id])).toEqual([
      ['sec_a', 1, 1, v.id], ['sec_a', 2, 2, v.id], ['sec_b', 1, 2, v.id], ['sec_b', 2, 1, v.id],
    ]);
    expect(Buffer.from(below3[3]!.ciphertext).equals(ALL_BYTES)).toBe(true);
    expect(below3[0]!.created_by).toBe('user:admin');
    expect((await s.listVersionsBelowKek(2, 100)).map((r) => [r.secret_id, r.version])).toEqual([['sec_a', 1], ['sec_b', 2]]);
    expect(await s.listVersionsBelowKek(3, 2)).toHaveLength(2);
    expect(await s.listVersionsBelowKek(1, 100)).toEqual([]);
  });

  it('countSecrets and countVaultSecrets', async () => {
    const s = await isolatedStore();
    expect(await s.countSecrets()).toEqual({ total: 0, byCategory: {}, byKek: {}, lastRotatedAt: null });
    const v = vaultRow();
    const w = vaultRow();
    await s.insertVault(v);
    await s.insertVault(w);
    const rows = [
      secretRow(v.id, 'a', { category: 'api_key', last_rotated_at: iso(10) }),
      secretRow(v.id, 'b', { category: 'api_key', last_rotated_at: iso(30) }),
      secretRow(v.id, 'c', { category: 'password' }),
      secretRow(w.id, 'd', { category: 'password', last_rotated_at: iso(20) }),
    ];
    for (const r of rows) await s.insertSecret(r);
    await s.insertVersion(versionRow(rows[0]!.id, 1, { kek_version: 1 }));
    await s.insertVersion(versionRow(rows[1]!.id, 1, { kek_version: 1 }));
    await s.insertVersion(versionRow(rows[2]!.id, 1, { kek_version: 2 }));
    await s.insertVersion(versionRow(rows[3]!.id, 1, { kek_version: 12 }));
    expect(await s.countSecrets()).toEqual({
      total: 4, byCategory: { api_key: 2, password: 2 }, byKek: { '1': 2, '2': 1, '12': 1 }, lastRotatedAt: iso(30),
    });
    expect(await s.countVaultSecrets(v.id)).toBe(3);
    expect(await s.countVaultSecrets(w.id)).toBe(1);
    expect(await s.countVaultSecrets('none')).toBe(0);
  });

  // ---- binary columns

  it('binary columns round-trip every byte value exactly', async () => {
    const { vault } = await seedVault(store, []);
    const s = secretRow(vault.id, 'BIN');
    await store.insertSecret(s);
    const reversed = Buffer.from(ALL_BYTES).reverse();
    const plain = new Uint8Array(ALL_BYTES); // a plain Uint8Array, not a Buffer
    await store.insertVersion(versionRow(s.id, 1, { wrapped_dek: plain, ciphertext: reversed }));
    const check = (r: { wrapped_dek: Uint8Array; ciphertext: Uint8Array }) => {
      expect(r.wrapped_dek).toBeInstanceOf(Uint8Array);
      expect(r.wrapped_dek.length).toBe(256);
      expect(Buffer.from(r.wrapped_dek).equals(ALL_BYTES)).toBe(true);
      expect(Buffer.from(r.ciphertext).equals(reversed)).toBe(true);
    };
    check((await store.getVersion(s.id, 1))!);
    check((await store.getSecretValueRow(vault.id, 'BIN'))!.version);
    check((await store.listCurrentVersions(vault.id, 'BIM', 1))[0]!.version);
    // empty and a large value
    const big = Buffer.alloc(1 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
    await store.updateVersionSeal(s.id, 1, { kek_version: 2, wrapped_dek: Buffer.alloc(0), ciphertext: big });
    const after = (await store.getVersion(s.id, 1))!;
    expect(after.wrapped_dek.length).toBe(0);
    expect(Buffer.from(after.ciphertext).equals(big)).toBe(true);
  });

  // ---- transactions

  it('tx: commits and returns the value', async () => {
    const v = vaultRow();
    const result = await store.tx(async (s) => {
      await s.insertVault(v);
      await s.insertSecret(secretRow(v.id, 'in-tx'));
      return 42;
    });
    expect(result).toBe(42);
    expect(await store.getVaultById(v.id)).toEqual(v);
    expect(await store.countVaultSecrets(v.id)).toBe(1);
  });

  it('tx: an error inside leaves no partial write', async () => {
    const v = vaultRow();
    const sec = secretRow(v.id, 'partial');
    const boom = new Error('boom');
    const headBefore = await store.getAuditHead();
    const err = await store.tx(async (s) => {
      await s.insertVault(v);
      await s.insertSecret(sec);
      await s.insertVersion(versionRow(sec.id, 1));
      await s.setMeta('tx.partial', 'yes');
      await s.setAuditHead(headBefore.seq + 100, 'f'.repeat(64));
      // visible inside the transaction
      expect(await s.getVaultById(v.id)).toEqual(v);
      expect(await s.getSecret(v.id, 'partial')).toEqual(sec);
      throw boom;
    }).then(() => null, (e: unknown) => e);
    expect(err).toBe(boom);
    expect(await store.getVaultById(v.id)).toBeNull();
    expect(await store.getSecret(v.id, 'partial')).toBeNull();
    expect(await store.getVersion(sec.id, 1)).toBeNull();
    expect(await store.getMeta('tx.partial')).toBeNull();
    expect(await store.getAuditHead()).toEqual(headBefore);
  });

  it('tx: a failed statement (unique violation) rolls back earlier writes', async () => {
    const existing = vaultRow();
    await store.insertVault(existing);
    const v = vaultRow();
    const err = await store.tx(async (s) => {
      await s.insertVault(v);
      await s.insertVault(vaultRow({ name: existing.name }));
    }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(UniqueViolation);
    expect(await store.getVaultById(v.id)).toBeNull();
    // the store is still usable afterwards
    await store.tx(async (s) => s.insertVault(v));
    expect(await store.getVaultById(v.id)).toEqual(v);
  });

  it('tx: a nested tx joins the outer transaction', async () => {
    const outerVault = vaultRow();
    const innerVault = vaultRow();
    const err = await store.tx(async (s) => {
      await s.insertVault(outerVault);
      const r = await s.tx(async (inner) => {
        expect(inner).toBe(s);
        await inner.insertVault(innerVault);
        // sees the outer transaction's uncommitted write
        expect(await inner.getVaultById(outerVault.id)).toEqual(outerVault);
        return 'inner';
      });
      expect(r).toBe('inner');
      expect(await s.getVaultById(innerVault.id)).toEqual(innerVault);
      throw new Error('outer fails after the inner tx returned');
    }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    // the inner "transaction" was not committed on its own
    expect(await store.getVaultById(outerVault.id)).toBeNull();
    expect(await store.getVaultById(innerVault.id)).toBeNull();

    // and on success both commit together
    await store.tx(async (s) => {
      await s.insertVault(outerVault);
      await s.tx(async (inner) => inner.tx(async (innermost) => innermost.insertVault(innerVault)));
    });
    expect(await store.getVaultById(outerVault.id)).toEqual(outerVault);
    expect(await store.getVaultById(innerVault.id)).toEqual(innerVault);
  });

  it('tx: close() on a transaction-bound store does not close the database', async () => {
    await store.tx(async (s) => s.close());
    expect(await store.getMeta('missing')).toBeNull();
  });

  // ---- audit

  describe('audit', () => {
    let s: KyselyStore;
    const N = 1234;
    const actions = ['secret.read', 'secret.write', 'vault.create', 'secretary.note', 'secrets.list', 'token.issue', 'secret'];
    const events: AuditRow[] = [];
    for (let seq = 1; seq <= N; seq++) {
      events.push({
        seq,
        id: `evt_${seq}`,
        ts: iso(seq * 60),
        actor: `user:${seq % 3}`,
        action: actions[seq % actions.length]!,
        vault: seq % 5 === 0 ? null : `vault-${seq % 4}`,
        target: seq % 2 ? `secret-${seq % 10}` : null,
        outcome: seq % 7 === 0 ? 'denied' : 'ok',
        ip: seq % 11 === 0 ? '10.0.0.11' : null,
        request_id: `req-${seq}`,
        details: JSON.stringify(seq % 97 === 0 ? { note: 'Needle in 50%_haystack' } : { n: seq }),
        prev_hash: seq === 1 ? GENESIS_HASH : `h${seq - 1}`.padEnd(64, '0'),
        hash: `h${seq}`.padEnd(64, '0'),
      });
    }
    const newestFirst = (pred: (e: AuditRow) => boolean) => events.filter(pred).sort((a, b) => b.seq - a.seq).map((e) => e.seq);

    beforeAll(async () => {
      s = await (await ctx.freshDatabase()).openStore();
    });

    it('head: starts at genesis; lock, get and set', async () => {
      expect(await s.getAuditHead()).toEqual({ id: 1, seq: 0, hash: GENESIS_HASH, anchor_seq: 0, anchor_hash: GENESIS_HASH });
      await s.tx(async (t) => {
        const head = await t.lockAuditHead();
        expect(head).toEqual({ id: 1, seq: 0, hash: GENESIS_HASH, anchor_seq: 0, anchor_hash: GENESIS_HASH });
        await t.setAuditHead(5, 'a'.repeat(64));
        expect(await t.lockAuditHead()).toMatchObject({ seq: 5, hash: 'a'.repeat(64) });
      });
      expect(await s.getAuditHead()).toEqual({ id: 1, seq: 5, hash: 'a'.repeat(64), anchor_seq: 0, anchor_hash: GENESIS_HASH });
      await s.setAuditHead(0, GENESIS_HASH);
    });

    it('insertAuditEvents writes more than 500 rows in one call, in one transaction', async () => {
      await s.tx(async (t) => {
        await t.insertAuditEvents(events);
        const head = await t.lockAuditHead();
        await t.setAuditHead(head.seq + N, events[N - 1]!.hash);
      });
      expect(await s.countAudit()).toBe(N);
      expect(await s.getAuditHead()).toMatchObject({ seq: N, hash: events[N - 1]!.hash });
      await s.insertAuditEvents([]); // no-op
      // a duplicate seq fails and, in a tx, leaves nothing behind
      const dup = await s.tx((t) => t.insertAuditEvents([{ ...events[0]!, seq: N + 1, id: 'x' }, ...events.slice(0, 1)])).then(() => null, (e: unknown) => e);
      expect(dup).toBeInstanceOf(Error);
      expect(await s.countAudit()).toBe(N);
    });

    it('auditRange returns events in chain order after a seq', async () => {
      const first = await s.auditRange(0, 100);
      expect(first.map((e) => e.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
      expect(first[0]).toEqual(events[0]);
      expect(first[96]).toEqual(events[96]); // has the JSON note
      expect(typeof first[0]!.seq).toBe('number');
      expect((await s.auditRange(N - 3, 10)).map((e) => e.seq)).toEqual([N - 2, N - 1, N]);
      expect(await s.auditRange(N, 10)).toEqual([]);
    });

    it('queryAudit: each filter, newest first', async () => {
      const q = async (query: Partial<Parameters<Store['queryAudit']>[0]>) => (await s.queryAudit({ limit: 10_000, ...query })).map((e) => e.seq);
      expect(await q({})).toEqual(newestFirst(() => true));
      expect(await q({ limit: 3 })).toEqual([N, N - 1, N - 2]);
      expect(await q({ vault: 'vault-1' })).toEqual(newestFirst((e) => e.vault === 'vault-1'));
      expect(await q({ actor: 'user:2' })).toEqual(newestFirst((e) => e.actor === 'user:2'));
      expect(await q({ target: 'secret-3' })).toEqual(newestFirst((e) => e.target === 'secret-3'));
      expect(await q({ outcome: 'denied' })).toEqual(newestFirst((e) => e.outcome === 'denied'));
      expect(await q({ since: iso(600 * 60), until: iso(620 * 60) })).toEqual(newestFirst((e) => e.seq >= 600 && e.seq <= 620));
      expect(await q({ since: iso(N * 60 - 60) })).toEqual([N, N - 1]);
      expect(await q({ until: iso(120) })).toEqual([2, 1]);
      expect(await q({ vault: 'vault-2', actor: 'user:1', outcome: 'ok' })).toEqual(
        newestFirst((e) => e.vault === 'vault-2' && e.actor === 'user:1' && e.outcome === 'ok'),
      );
      expect(await q({ vault: 'nope' })).toEqual([]);
    });

    it('queryAudit: action exact, and prefix with a trailing "." or "*"', async () => {
      const q = async (action: string) => (await s.queryAudit({ action, limit: 10_000 })).map((e) => e.seq);
      expect(await q('secret.read')).toEqual(newestFirst((e) => e.action === 'secret.read'));
      expect(await q('secret')).toEqual(newestFirst((e) => e.action === 'secret'));
      const secretDot = newestFirst((e) => e.action.startsWith('secret.'));
      expect(secretDot.length).toBeGreaterThan(0);
      expect(await q('secret.')).toEqual(secretDot);
      expect(await q('secret.*')).toEqual(secretDot);
      // not secretary.*, secrets.*, nor the bare 'secret'
      expect(new Set((await s.queryAudit({ action: 'secret.', limit: 10_000 })).map((e) => e.action))).toEqual(new Set(['secret.read', 'secret.write']));
      expect(await q('secret*')).toEqual(newestFirst((e) => e.action.startsWith('secret')));
      expect(await q('vault.*')).toEqual(newestFirst((e) => e.action.startsWith('vault.')));
      expect(await q('nothing.*')).toEqual([]);
      expect(await q('*')).toEqual(newestFirst(() => true));
    });

    it('queryAudit: q is free text over actor/action/vault/target/details/ip, literal and case-insensitive', async () => {
      const q = async (text: string, extra: Partial<Parameters<Store['queryAudit']>[0]> = {}) =>
        (await s.queryAudit({ q: text, limit: 10_000, ...extra })).map((e) => e.seq);
      const needle = newestFirst((e) => e.details.includes('Needle'));
      expect(needle.length).toBeGreaterThan(5);
      expect(await q('needle')).toEqual(needle);
      expect(await q('NEEDLE IN')).toEqual(needle);
      expect(await q('50%_hay')).toEqual(needle);
      expect(await q('%')).toEqual(needle); // only the details with a literal %
      expect(await q('_')).toEqual(needle); // only the details with a literal _
      expect(await q('10.0.0.11')).toEqual(newestFirst((e) => e.ip === '10.0.0.11'));
      expect(await q('secretary')).toEqual(newestFirst((e) => e.action === 'secretary.note'));
      expect(await q('vault-3')).toEqual(newestFirst((e) => e.vault === 'vault-3'));
      expect(await q('secret-7')).toEqual(newestFirst((e) => e.target === 'secret-7'));
      expect(await q('user:0')).toEqual(newestFirst((e) => e.actor === 'user:0'));
      expect(await q('needle', { outcome: 'denied' })).toEqual(newestFirst((e) => e.details.includes('Needle') && e.outcome === 'denied'));
      expect(await q('no such text anywhere')).toEqual([]);
    });

    it('queryAudit: beforeSeq cursor pages newest first without gaps or repeats', async () => {
      const filter = { action: 'secret.*', limit: 37 } as const;
      const seen: number[] = [];
      let before: number | undefined;
      for (let guard = 0; guard < 1000; guard++) {
        const page = await s.queryAudit({ ...filter, beforeSeq: before });
        seen.push(...page.map((e) => e.seq));
        if (page.length < filter.limit) break;
        before = page[page.length - 1]!.seq;
      }
      expect(seen).toEqual(newestFirst((e) => e.action.startsWith('secret.')));
      expect((await s.queryAudit({ beforeSeq: 10, limit: 3 })).map((e) => e.seq)).toEqual([9, 8, 7]);
      expect(await s.queryAudit({ beforeSeq: 1, limit: 3 })).toEqual([]);
    });

    it('pruneAudit deletes through a seq and records the anchor', async () => {
      const anchor = events[99]!.hash;
      expect(await s.pruneAudit(100, anchor)).toBe(100);
      expect(await s.countAudit()).toBe(N - 100);
      expect((await s.auditRange(0, 2)).map((e) => e.seq)).toEqual([101, 102]);
      expect(await s.getAuditHead()).toEqual({ id: 1, seq: N, hash: events[N - 1]!.hash, anchor_seq: 100, anchor_hash: anchor });
      expect(await s.queryAudit({ beforeSeq: 102, limit: 10 })).toEqual([events[100]]);
      // pruning again through the same seq deletes nothing
      expect(await s.pruneAudit(100, anchor)).toBe(0);
    });
  });

  // ---- users and tokens

  describe('users and tokens', () => {
    let s: KyselyStore;
    beforeAll(async () => {
      s = await (await ctx.freshDatabase()).openStore();
    });

    it('users: count, insert, get, get by email, duplicates, update', async () => {
      expect(await s.countUsers()).toBe(0);
      const alice = userRow({ email: 'alice@example.test', role: 'admin' });
      const bob = userRow({ email: 'bob@example.test' });
      const agentA = userRow({ email: null, password_hash: null });
      const agentB = userRow({ email: null, password_hash: null });
      for (const u of [alice, bob, agentA, agentB]) await s.insertUser(u); // several NULL emails are fine
      expect(await s.countUsers()).toBe(4);
      expect(await s.getUser(alice.id)).toEqual(alice);
      expect(await s.getUser('nobody')).toBeNull();
      expect(await s.getUserByEmail('bob@example.test')).toEqual(bob);
      expect(await s.getUserByEmail('nobody@example.test')).toBeNull();
      await expectUnique(s.insertUser(userRow({ email: 'alice@example.test' })));
      await expectUnique(s.insertUser(userRow({ id: alice.id })));

      await s.updateUser(bob.id, { role: 'admin', disabled: 1, password_hash: null, updated_at: iso(9) });
      expect(await s.getUser(bob.id)).toEqual({ ...bob, role: 'admin', disabled: 1, password_hash: null, updated_at: iso(9) });
      await s.updateUser(bob.id, { email: 'robert@example.test' });
      expect((await s.getUserByEmail('robert@example.test'))!.id).toBe(bob.id);
      expect(await s.getUserByEmail('bob@example.test')).toBeNull();
      await expectUnique(s.updateUser(bob.id, { email: 'alice@example.test' }));
      expect((await s.getUser(bob.id))!.email).toBe('robert@example.test');
      expect(await s.countUsers()).toBe(4);
      await s.updateUser(bob.id, {}); // empty patch: no-op
      expect((await s.getUser(bob.id))!.email).toBe('robert@example.test');
    });

    it('tokens: insert, get by hash, list by filter, duplicates, revoke idempotently', async () => {
      const u1 = userRow();
      const u2 = userRow();
      await s.insertUser(u1);
      await s.insertUser(u2);
      const t1 = tokenRow({ kind: 'session', user_id: u1.id, created_at: iso(3), expires_at: iso(1000) });
      const t2 = tokenRow({ kind: 'api', user_id: u1.id, created_at: iso(1), vault_id: 'vlt_x' });
      const t3 = tokenRow({ kind: 'agent', agent_id: 'agent-7', created_at: iso(2), last_used_at: iso(5) });
      const t4 = tokenRow({ kind: 'session', user_id: u2.id, created_at: iso(4) });
      for (const t of [t1, t2, t3, t4]) await s.insertToken(t);

      expect(await s.getTokenByHash(t3.hash)).toEqual(t3);
      expect(await s.getTokenByHash('nope')).toBeNull();
      await expectUnique(s.insertToken(tokenRow({ hash: t1.hash })));
      await expectUnique(s.insertToken(tokenRow({ id: t1.id })));

      const ids = async (f: Parameters<Store['listTokens']>[0]) => (await s.listTokens(f)).map((t) => t.id);
      expect(await ids({})).toEqual([t2.id, t3.id, t1.id, t4.id]); // by created_at
      expect(await ids({ userId: u1.id })).toEqual([t2.id, t1.id]);
      expect(await ids({ userId: u1.id, kind: 'session' })).toEqual([t1.id]);
      expect(await ids({ kind: 'session' })).toEqual([t1.id, t4.id]);
      expect(await ids({ agentId: 'agent-7' })).toEqual([t3.id]);
      expect(await ids({ agentId: 'agent-0' })).toEqual([]);
      expect((await s.listTokens({ userId: u1.id }))[1]).toEqual(t1);

      expect(await s.revokeToken(t1.id, iso(50))).toBe(true);
      expect((await s.getTokenByHash(t1.hash))!.revoked_at).toBe(iso(50));
      expect(await s.revokeToken(t1.id, iso(60))).toBe(false); // idempotent: first revocation time kept
      expect((await s.getTokenByHash(t1.hash))!.revoked_at).toBe(iso(50));
      expect(await s.revokeToken('no-such-token', iso(60))).toBe(false);
      expect((await s.getTokenByHash(t2.hash))!.revoked_at).toBeNull();
    });
  });
});
