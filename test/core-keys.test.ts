/**
 * Key management through core, on SQLite and PostgreSQL: status, KEK rotation, rewrap of DEKs onto
 * the newest KEK, offline rekey under a new master key (each audited); the sentinel refusing a wrong
 * master key before anything is written; the missing-key message; the key file (0600) and the
 * passphrase (Argon2id, parameters stored beside the keyring). Secret values decrypt throughout.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { writeKeyFile } from '../src/crypto/master.js';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openCore, rekey } from '../src/core/bootstrap.js';
import type { Core } from '../src/core/core.js';
import { LatchkeyError, StartupError } from '../src/core/errors.js';
import type { OpContext } from '../src/core/principal.js';
import { describeBackends, type TestDatabase } from './helpers/backends.js';
import { openRaw, type RawSql } from './helpers/raw-sql.js';

const KEY_A = randomBytes(32).toString('hex');
const KEY_B = randomBytes(32).toString('base64');
const SENTINEL = 'SENTINEL_KEYS_3b7e19aa_never_logged';
const PASSPHRASE = 'correct horse battery staple 42';

async function fails(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a failure');
}

const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describeBackends('core keys', (ctx) => {
  let core: Core;
  let owner: OpContext;
  let ownerToken: string;
  /** name -> value of every version, oldest first */
  const values = new Map<string, string[]>();

  const asCtx = async (c: Core, token: string): Promise<OpContext> => ({ principal: await c.auth.authenticate(token), ip: '127.0.0.1', requestId: null });
  const open = (db: Pick<TestDatabase, 'home' | 'databaseUrl'>, env: NodeJS.ProcessEnv, allowInit = false) =>
    openCore({ home: db.home, databaseUrl: db.databaseUrl, allowInit, env });

  async function put(c: Core, who: OpContext, name: string, value: string) {
    await c.secrets.put(who, 'default', name, { value });
    values.set(name, [...(values.get(name) ?? []), value]);
  }

  /** Every version of every secret decrypts to what was written. */
  async function expectAllValues(c: Core, who: OpContext) {
    let n = 0;
    for (const [name, vs] of values) {
      for (let i = 0; i < vs.length; i++) {
        expect((await c.secrets.read(who, 'default', name, i + 1)).value, `${name} v${i + 1}`).toBe(vs[i]);
        n++;
      }
    }
    return n;
  }

  async function lastEvent(c: Core, action: string) {
    return (await c.audit.query(c.store, { action, limit: 1 })).items[0];
  }

  async function kekVersions(raw: RawSql): Promise<number[]> {
    return (await raw.all('select kek_version from secret_versions order by secret_id, version')).map((r) => Number(r.kek_version));
  }

  /** Everything in the database, plus (SQLite) the file bytes and the data dir listing. */
  async function state(db: TestDatabase): Promise<unknown> {
    const raw = await openRaw(db);
    const dump = await raw.dump();
    await raw.close();
    if (db.backend !== 'sqlite') return { dump };
    return { dump, bytes: sha(db.sqlitePath!), files: readdirSync(db.home).sort() };
  }

  beforeAll(async () => {
    const opened = await open(ctx, { LATCHKEY_MASTER_KEY: KEY_A }, true);
    core = opened.core;
    ownerToken = opened.initialized!.ownerToken;
    owner = await asCtx(core, ownerToken);
    for (let i = 0; i < 7; i++) await put(core, owner, `KEY_${i}`, `${SENTINEL}-${i}-v1`);
    for (let i = 0; i < 3; i++) await put(core, owner, `KEY_${i}`, `${SENTINEL}-${i}-v2`);
  });

  afterAll(async () => {
    await core?.close().catch(() => {});
  });

  it('status: master key source, KEK versions with what each seals, nothing to rewrap', async () => {
    expect(await core.keys.status(owner)).toEqual({
      master_key_source: 'env', kdf: null, kek_version: 1, keks: [{ version: 1, created_at: expect.any(String), sealed_versions: 10 }], needs_rewrap: 0,
      needs_rewrap_by_kind: { secret_versions: 0, proxy_ca_key: 0, proposals: 0 },
    });
    expect(await expectAllValues(core, owner)).toBe(10);
  });

  it('only the owner manages keys; admins may read the status; refusals are audited', async () => {
    const admin = await asCtx(core, (await core.access.createUser(owner, { email: 'admin@example.test', role: 'admin' })).token);
    const member = await asCtx(core, (await core.access.createUser(owner, { email: 'member@example.test', role: 'member' })).token);
    expect((await core.keys.status(admin)).kek_version).toBe(1);
    for (const op of [() => core.keys.rotate(admin), () => core.keys.rewrap(admin), () => core.keys.rotate(member), () => core.keys.status(member)]) {
      const e = await fails(op());
      expect(e).toBeInstanceOf(LatchkeyError);
      expect((e as LatchkeyError).status).toBe(403);
    }
    const denied = (await core.audit.query(core.store, { outcome: 'denied', limit: 10 })).items;
    expect(denied.filter((e) => e.actor === 'user:admin@example.test').map((e) => e.action)).toEqual(['key.rotate', 'key.rotate']);
    expect(core.keyring.currentKekVersion).toBe(1);
  });

  it('rotate adds a KEK used for new writes; old data still decrypts; audited key.rotate', async () => {
    const raw = await openRaw(ctx);
    try {
      expect(await core.keys.rotate(owner)).toEqual({ kek_version: 2 });
      expect(await lastEvent(core, 'key.rotate')).toMatchObject({ actor: 'user:owner', outcome: 'ok', details: { kek_version: 2 } });
      const keys = await raw.all("select purpose, version from keys where purpose = 'kek' order by version");
      expect(keys.map((k) => Number(k.version))).toEqual([1, 2]);
      const st = await core.keys.status(owner);
      expect(st).toMatchObject({ kek_version: 2, needs_rewrap: 10 });
      expect(st.keks.map((k) => [k.version, k.sealed_versions])).toEqual([[1, 10], [2, 0]]);
      await put(core, owner, 'KEY_0', `${SENTINEL}-0-v3`);
      await put(core, owner, 'NEW_AFTER_ROTATE', `${SENTINEL}-new`);
      const meta = await core.secrets.get(owner, 'default', 'KEY_0');
      expect(meta.versions.map((v) => [v.version, v.kek_version]).sort((a, b) => a[0]! - b[0]!)).toEqual([[1, 1], [2, 1], [3, 2]]);
      expect(await expectAllValues(core, owner)).toBe(12);
      expect((await kekVersions(raw)).filter((v) => v === 1)).toHaveLength(10);
    } finally {
      await raw.close();
    }
  });

  it('another replica picks up a rotated KEK when it meets data sealed under it', async () => {
    const { core: replica } = await open(ctx, { LATCHKEY_MASTER_KEY: KEY_A });
    try {
      const r = await asCtx(replica, ownerToken);
      expect(replica.keyring.currentKekVersion).toBe(2);
      expect(await core.keys.rotate(owner)).toEqual({ kek_version: 3 });
      await put(core, owner, 'SEALED_UNDER_3', `${SENTINEL}-k3`);
      expect((await replica.secrets.read(r, 'default', 'SEALED_UNDER_3')).value).toBe(`${SENTINEL}-k3`);
      expect(replica.keyring.currentKekVersion).toBe(3);
      // a rotation from a replica that has not seen v4 yet makes v5, not a second v4
      const { core: stale } = await open(ctx, { LATCHKEY_MASTER_KEY: KEY_A });
      try {
        await core.keys.rotate(owner);
        expect(await stale.keys.rotate(await asCtx(stale, ownerToken))).toEqual({ kek_version: 5 });
      } finally {
        await stale.close();
      }
      await core.keys.refresh();
      expect(core.keyring.currentKekVersion).toBe(5);
    } finally {
      await replica.close();
    }
  });

  it('rewrap moves every DEK onto the newest KEK in batches, ciphertexts untouched, audited key.rewrap', async () => {
    const raw = await openRaw(ctx);
    try {
      const before = await raw.all('select secret_id, version, kek_version, wrapped_dek, ciphertext from secret_versions order by secret_id, version');
      const old = before.filter((r) => Number(r.kek_version) < 5).length;
      expect(old).toBe(13);
      const rewrapsBefore = (await core.audit.query(core.store, { action: 'key.rewrap', limit: 100 })).items.length;
      const first = await core.keys.rewrap(owner, { limit: 4 });
      expect(first).toEqual({ rewrapped: 4, remaining: old - 4, kek_version: 5, done: false });
      const progress: number[] = [];
      const rest = await core.keys.rewrap(owner, {}, (n) => progress.push(n));
      expect(rest).toEqual({ rewrapped: old - 4, remaining: 0, kek_version: 5, done: true });
      expect(progress.at(-1)).toBe(old - 4);
      expect(await core.keys.rewrap(owner)).toEqual({ rewrapped: 0, remaining: 0, kek_version: 5, done: true });
      const events = (await core.audit.query(core.store, { action: 'key.rewrap', limit: 100 })).items;
      expect(events.length - rewrapsBefore).toBe(2); // an empty rewrap records nothing
      expect(events[0]).toMatchObject({ actor: 'user:owner', details: { rewrapped: old - 4, kek_version: 5 } });
      expect(events[1]).toMatchObject({ details: { rewrapped: 4, kek_version: 5 } });

      const after = await raw.all('select secret_id, version, kek_version, wrapped_dek, ciphertext from secret_versions order by secret_id, version');
      expect(after.length).toBe(before.length);
      for (let i = 0; i < after.length; i++) {
        const a = after[i]!, b = before[i]!;
        expect(Number(a.kek_version)).toBe(5);
        expect(Buffer.from(a.ciphertext as Uint8Array).equals(Buffer.from(b.ciphertext as Uint8Array))).toBe(true);
        expect(Buffer.from(a.wrapped_dek as Uint8Array).equals(Buffer.from(b.wrapped_dek as Uint8Array))).toBe(Number(b.kek_version) === 5);
      }
      expect((await core.keys.status(owner)).needs_rewrap).toBe(0);
      expect(await expectAllValues(core, owner)).toBe(13);
      expect((await core.audit.verify(core.store)).ok).toBe(true);
    } finally {
      await raw.close();
    }
  });

  it('rotating a secret after a KEK rotation re-seals it under a fresh DEK and IV; the value is unchanged', async () => {
    const raw = await openRaw(ctx);
    try {
      await core.keys.rotate(owner);
      const q = "select v.kek_version, v.wrapped_dek, v.ciphertext from secret_versions v join secrets s on s.id = v.secret_id where s.name = 'KEY_3' and v.version = 1";
      const [b] = await raw.all(q);
      await core.secrets.rotate(owner, 'default', 'KEY_3');
      const [a] = await raw.all(q);
      expect(Number(b!.kek_version)).toBe(5);
      expect(Number(a!.kek_version)).toBe(6);
      expect(Buffer.from(a!.ciphertext as Uint8Array).equals(Buffer.from(b!.ciphertext as Uint8Array))).toBe(false);
      expect(Buffer.from(a!.wrapped_dek as Uint8Array).equals(Buffer.from(b!.wrapped_dek as Uint8Array))).toBe(false);
      expect(await expectAllValues(core, owner)).toBe(13);
      expect(await lastEvent(core, 'secret.rotate')).toMatchObject({ target: 'KEY_3', details: { version: 1, kek_version: 6 } });
    } finally {
      await raw.close();
    }
  });

  it('a wrong master key is refused at open with the sentinel message, and NOTHING is written', async () => {
    await core.close();
    const before = await state(ctx);
    const wrong = randomBytes(32).toString('hex');
    for (const [env, allowInit] of [
      [{ LATCHKEY_MASTER_KEY: wrong }, false], [{ LATCHKEY_MASTER_KEY: wrong }, true], [{ LATCHKEY_MASTER_KEY: 'some passphrase that is wrong' }, true],
      [{ LATCHKEY_MASTER_KEY: KEY_B }, true],
    ] as const) {
      const e = await fails(open(ctx, env, allowInit));
      expect(e).toBeInstanceOf(StartupError);
      expect(e.message).toMatch(/does not match the key this data was sealed with/);
      expect(e.message).toMatch(/cannot be recovered/);
      expect(e.message).toContain('LATCHKEY_MASTER_KEY');
      expect(e.message).not.toContain(env.LATCHKEY_MASTER_KEY);
    }
    // a wrong key file, likewise
    writeFileSync(join(ctx.home, 'master.key'), randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
    const before2 = await state(ctx);
    const e = await fails(open(ctx, {}, true));
    expect(e.message).toMatch(/does not match the key this data was sealed with/);
    expect(e.message).toContain(join(ctx.home, 'master.key'));
    expect(await state(ctx)).toEqual(before2);
    rmSync(join(ctx.home, 'master.key'));
    expect(await state(ctx)).toEqual(before);

    // the sentinel row deleted by hand: called damaged, never initialised over (allowInit or not)
    const raw = await openRaw(ctx);
    const [row] = await raw.all("select value from meta where key = 'sentinel'");
    await raw.run("delete from meta where key = 'sentinel'");
    await raw.close();
    const damaged = await state(ctx);
    for (const allowInit of [false, true]) {
      const d = await fails(open(ctx, { LATCHKEY_MASTER_KEY: KEY_B }, allowInit));
      expect(d.message).toMatch(/damaged: its master-key sentinel is missing/);
    }
    expect(await state(ctx)).toEqual(damaged);
    const raw2 = await openRaw(ctx);
    await raw2.run("insert into meta (key, value) values ('sentinel', ?)", [row!.value]);
    await raw2.close();
  });

  it('a missing key names LATCHKEY_MASTER_KEY and <home>/master.key, and writes nothing', async () => {
    const before = await state(ctx);
    for (const allowInit of [false, true]) {
      const e = await fails(open(ctx, {}, allowInit));
      expect(e).toBeInstanceOf(StartupError);
      expect(e.message).toContain('LATCHKEY_MASTER_KEY');
      expect(e.message).toContain(join(ctx.home, 'master.key'));
    }
    expect(existsSync(join(ctx.home, 'master.key'))).toBe(false);
    expect(await state(ctx)).toEqual(before);
  });

  it('rekey re-seals the keyring under a new master key without touching secrets; only the new key opens the data; audited key.rekey', async () => {
    const raw = await openRaw(ctx);
    const versionsBefore = (await raw.dump()).secret_versions;
    const keysBefore = (await raw.dump()).keys;
    await raw.close();
    const r = await rekey({ home: ctx.home, databaseUrl: ctx.databaseUrl, env: { LATCHKEY_MASTER_KEY: KEY_A }, newKey: KEY_B });
    expect(r).toEqual({ newKeyFile: null, newKey: null, keys: 6 + 2 });
    const raw2 = await openRaw(ctx);
    const dumpAfter = await raw2.dump();
    await raw2.close();
    expect(dumpAfter.secret_versions).toEqual(versionsBefore);
    expect(dumpAfter.keys).not.toEqual(keysBefore);
    expect(dumpAfter.keys).toHaveLength(keysBefore!.length);

    const e = await fails(open(ctx, { LATCHKEY_MASTER_KEY: KEY_A }));
    expect(e.message).toMatch(/does not match the key this data was sealed with/);
    core = (await open(ctx, { LATCHKEY_MASTER_KEY: KEY_B })).core;
    owner = await asCtx(core, ownerToken); // the token key survived the rekey
    expect(await expectAllValues(core, owner)).toBe(13);
    expect(await lastEvent(core, 'key.rekey')).toMatchObject({ actor: 'system', outcome: 'ok', details: { keys: 8, source: 'provided' } });
    expect((await core.audit.verify(core.store)).ok).toBe(true); // the audit key survived too
    expect(await core.keys.status(owner)).toMatchObject({ kek_version: 6, needs_rewrap: 12, master_key_source: 'env', kdf: null });
    await put(core, owner, 'AFTER_REKEY', `${SENTINEL}-after-rekey`);
    expect(await expectAllValues(core, owner)).toBe(14);
    const dump = JSON.stringify(dumpAfter);
    expect(dump).not.toContain(SENTINEL);
    expect(dump).not.toContain(KEY_A);
  });

  it('rekey to a generated key with the old key from the environment saves the new key before sealing under it', async () => {
    const db = await ctx.freshDatabase();
    const first = await open(db, { LATCHKEY_MASTER_KEY: KEY_A }, true);
    await first.core.close();
    const r = await rekey({ home: db.home, databaseUrl: db.databaseUrl, env: { LATCHKEY_MASTER_KEY: KEY_A } });
    const saved = join(db.home, 'master.key.new');
    expect(r).toMatchObject({ newKeyFile: saved, newKey: expect.any(String) });
    expect(readFileSync(saved, 'utf8').trim()).toBe(r.newKey);
    expect(statSync(saved).mode & 0o777).toBe(0o600);
    expect((await fails(open(db, { LATCHKEY_MASTER_KEY: KEY_A }))).message).toMatch(/does not match/);
    const again = await open(db, { LATCHKEY_MASTER_KEY: r.newKey! });
    await again.core.close();
  });

  it('a server still running under the old key after a rekey cannot rotate a KEK (it would seal it under the replaced key); rekey keeps creation times', async () => {
    const db = await ctx.freshDatabase();
    const stale = await open(db, { LATCHKEY_MASTER_KEY: KEY_A }, true);
    const sys: OpContext = { principal: { kind: 'system' }, ip: null, requestId: null };
    await stale.core.keys.rotate(sys);
    const created = (await stale.core.store.listKeys()).map((k) => `${k.purpose}:${k.version}:${k.created_at}`);
    await new Promise((r) => setTimeout(r, 5));
    await rekey({ home: db.home, databaseUrl: db.databaseUrl, env: { LATCHKEY_MASTER_KEY: KEY_A }, newKey: KEY_B });
    expect((await stale.core.store.listKeys()).map((k) => `${k.purpose}:${k.version}:${k.created_at}`)).toEqual(created);
    expect(await fails(stale.core.keys.rotate(sys))).toMatchObject({ status: 503, code: 'master_key_changed' });
    await stale.core.close();
    // nothing was sealed under the old key: the new one opens everything
    const fresh = await open(db, { LATCHKEY_MASTER_KEY: KEY_B });
    expect((await fresh.core.keys.rotate(sys)).kek_version).toBe(3);
    await fresh.core.close();
  });

  it('a key file made for a new data dir never replaces one that appeared meanwhile (two processes initialising at once)', () => {
    const dir = join(ctx.home, 'race-keyfile');
    mkdirSync(dir, { recursive: true });
    const path = join(dir, 'master.key');
    writeKeyFile(path, randomBytes(32), { exclusive: true });
    const winner = readFileSync(path, 'utf8');
    expect(() => writeKeyFile(path, randomBytes(32), { exclusive: true })).toThrow(expect.objectContaining({ code: 'EEXIST' }));
    expect(readFileSync(path, 'utf8')).toBe(winner);
    expect(readdirSync(dir)).toEqual(['master.key']);
  });

  it('key file: init writes <home>/master.key 0600, a permissive mode is refused, rekey replaces the file (crash-safe)', async () => {
    const db = await ctx.freshDatabase();
    const opened = await open(db, {}, true);
    const keyFile = join(db.home, 'master.key');
    expect(opened.initialized!.keyFile).toBe(keyFile);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    let c = opened.core;
    let who = await asCtx(c, opened.initialized!.ownerToken);
    await c.secrets.put(who, 'default', 'FILE_KEY', { value: `${SENTINEL}-file` });
    expect((await c.keys.status(who)).master_key_source).toBe('file');
    await c.close();

    const before = await state(db);
    chmodSync(keyFile, 0o644);
    const e = await fails(open(db, {}));
    expect(e).toBeInstanceOf(StartupError);
    expect(e.message).toContain(`chmod 600 ${keyFile}`);
    chmodSync(keyFile, 0o600);
    expect(await state(db)).toEqual(before);

    const oldKey = readFileSync(keyFile, 'utf8');
    const r = await rekey({ home: db.home, databaseUrl: db.databaseUrl, env: {} });
    expect(r).toEqual({ newKeyFile: keyFile, newKey: null, keys: 3 });
    const newKey = readFileSync(keyFile, 'utf8');
    expect(newKey).not.toBe(oldKey);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(existsSync(`${keyFile}.new`)).toBe(false);
    expect((await fails(open(db, { LATCHKEY_MASTER_KEY: oldKey.trim() }))).message).toMatch(/does not match/);
    c = (await open(db, {})).core;
    who = await asCtx(c, opened.initialized!.ownerToken);
    expect((await c.secrets.read(who, 'default', 'FILE_KEY')).value).toBe(`${SENTINEL}-file`);
    expect(await lastEvent(c, 'key.rekey')).toMatchObject({ details: { source: 'file' } });
    await c.close();

    // a crash after the rekey committed but before master.key.new was moved into place: the next open finishes the move
    writeFileSync(keyFile, oldKey, { mode: 0o600 });
    writeFileSync(`${keyFile}.new`, newKey, { mode: 0o600 });
    c = (await open(db, {})).core;
    expect(readFileSync(keyFile, 'utf8')).toBe(newKey);
    expect(existsSync(`${keyFile}.new`)).toBe(false);
    expect((await c.secrets.read(await asCtx(c, opened.initialized!.ownerToken), 'default', 'FILE_KEY')).value).toBe(`${SENTINEL}-file`);
    await c.close();
    // a stale master.key.new that does not fit is not used
    writeFileSync(keyFile, oldKey, { mode: 0o600 });
    writeFileSync(`${keyFile}.new`, randomBytes(32).toString('base64'), { mode: 0o600 });
    expect((await fails(open(db, {}))).message).toMatch(/does not match/);
    writeFileSync(keyFile, newKey, { mode: 0o600 });
    rmSync(`${keyFile}.new`, { force: true });

    // rekey from the key file to a key given by the operator: the old file, which opens nothing
    // now, is moved aside (left in place, the next start would read it and refuse it as wrong)
    const r2 = await rekey({ home: db.home, databaseUrl: db.databaseUrl, env: {}, newKey: KEY_B });
    expect(r2).toMatchObject({ newKeyFile: null, replacedKeyFile: `${keyFile}.replaced` });
    expect(existsSync(keyFile)).toBe(false);
    expect((await fails(open(db, {}))).message).toContain('LATCHKEY_MASTER_KEY'); // says what to provide
    await (await open(db, { LATCHKEY_MASTER_KEY: KEY_B })).core.close();
  });

  it('passphrase: stretched with Argon2id, its salt and parameters stored beside the keyring; rekey to a raw key and back', async () => {
    const db = await ctx.freshDatabase();
    const opened = await open(db, { LATCHKEY_MASTER_KEY: PASSPHRASE }, true);
    expect(opened.initialized!.keyFile).toBeNull();
    expect(existsSync(join(db.home, 'master.key'))).toBe(false);
    let c = opened.core;
    const token = opened.initialized!.ownerToken;
    let who = await asCtx(c, token);
    await c.secrets.put(who, 'default', 'PASS_KEY', { value: `${SENTINEL}-pass` });
    expect(await c.keys.status(who)).toMatchObject({ master_key_source: 'env-passphrase', kdf: 'argon2id' });
    await c.close();

    const raw = await openRaw(db);
    const kdf = JSON.parse(String((await raw.all("select value from meta where key = 'kdf'"))[0]!.value));
    const allMeta = JSON.stringify(await raw.all('select * from meta'));
    await raw.close();
    expect(kdf).toEqual({ alg: 'argon2id', salt: expect.any(String), memoryCost: expect.any(Number), timeCost: expect.any(Number), parallelism: expect.any(Number) });
    expect(Buffer.from(kdf.salt, 'base64').length).toBeGreaterThanOrEqual(16);
    expect(kdf.memoryCost).toBeGreaterThanOrEqual(19456);
    expect(allMeta).not.toContain(PASSPHRASE);

    const before = await state(db);
    for (const env of [{ LATCHKEY_MASTER_KEY: PASSPHRASE + '!' }, { LATCHKEY_MASTER_KEY: KEY_A }]) {
      const e = await fails(open(db, env, true));
      expect(e.message).toMatch(/does not match the key this data was sealed with/);
    }
    expect(await state(db)).toEqual(before);
    // parameters from the database are bounded: an altered row cannot make start-up hang or take gigabytes
    for (const bad of [{ timeCost: 100_000 }, { memoryCost: 4_000_000_000 }, { parallelism: 0 }, { salt: '' }]) {
      const rw = await openRaw(db);
      await rw.run("update meta set value = ? where key = 'kdf'", [JSON.stringify({ ...kdf, ...bad })]);
      await rw.close();
      const t0 = Date.now();
      expect((await fails(open(db, { LATCHKEY_MASTER_KEY: PASSPHRASE }))).message, JSON.stringify(bad)).toMatch(/key-derivation parameter/);
      expect(Date.now() - t0).toBeLessThan(5000);
    }
    const rw = await openRaw(db);
    await rw.run("update meta set value = ? where key = 'kdf'", [JSON.stringify(kdf)]);
    await rw.close();

    // to a raw key: the KDF parameters go
    const r = await rekey({ home: db.home, databaseUrl: db.databaseUrl, env: { LATCHKEY_MASTER_KEY: PASSPHRASE }, newKey: KEY_A });
    expect(r.keys).toBe(3);
    expect((await fails(open(db, { LATCHKEY_MASTER_KEY: PASSPHRASE }))).message).toMatch(/does not match/);
    c = (await open(db, { LATCHKEY_MASTER_KEY: KEY_A })).core;
    who = await asCtx(c, token);
    expect(await c.keys.status(who)).toMatchObject({ master_key_source: 'env', kdf: null });
    expect((await c.secrets.read(who, 'default', 'PASS_KEY')).value).toBe(`${SENTINEL}-pass`);
    await c.close();

    // and back to a (new) passphrase, with fresh parameters
    await rekey({ home: db.home, databaseUrl: db.databaseUrl, env: { LATCHKEY_MASTER_KEY: KEY_A }, newKey: 'another long passphrase' });
    c = (await open(db, { LATCHKEY_MASTER_KEY: 'another long passphrase' })).core;
    who = await asCtx(c, token);
    expect(await c.keys.status(who)).toMatchObject({ master_key_source: 'env-passphrase', kdf: 'argon2id' });
    expect((await c.secrets.read(who, 'default', 'PASS_KEY')).value).toBe(`${SENTINEL}-pass`);
    const rekeys = (await c.audit.query(c.store, { action: 'key.rekey', limit: 10 })).items;
    expect(rekeys).toHaveLength(2);
    expect((await c.audit.verify(c.store)).ok).toBe(true);
    await c.close();
    // a new passphrase that is too short is refused before anything changes
    const before3 = await state(db);
    expect((await fails(rekey({ home: db.home, databaseUrl: db.databaseUrl, env: { LATCHKEY_MASTER_KEY: 'another long passphrase' }, newKey: 'short' }))).message).toMatch(/at least 12/);
    expect(await state(db)).toEqual(before3);
  });

  it('no key material or secret value in any audit row', async () => {
    const raw = await openRaw(ctx);
    try {
      const rows = JSON.stringify(await raw.all('select * from audit_events'));
      for (const needle of [SENTINEL, KEY_A, KEY_B, PASSPHRASE]) expect(rows).not.toContain(needle);
      const actions = new Set((await raw.all('select action from audit_events')).map((r) => r.action));
      for (const a of ['key.rotate', 'key.rewrap', 'key.rekey']) expect(actions.has(a), a).toBe(true);
    } finally {
      await raw.close();
    }
  });

  it('a replica meeting a KEK another one rotated to, inside many concurrent transactions, neither hangs nor fails (the keys are read through each transaction)', async () => {
    const db = await ctx.freshDatabase();
    const first = await open(db, { LATCHKEY_MASTER_KEY: KEY_A }, true);
    // a small pool: a transaction that took a second connection to load the keys would wait forever
    const replica = await openCore({ home: db.home, databaseUrl: db.databaseUrl, env: { LATCHKEY_MASTER_KEY: KEY_A }, poolSize: 3 });
    try {
      const a = await asCtx(first.core, first.initialized!.ownerToken);
      const r = await asCtx(replica.core, first.initialized!.ownerToken);
      await first.core.keys.rotate(a);
      await first.core.secrets.put(a, 'default', 'UNDER_NEW_KEK', { value: `${SENTINEL}-new-kek` });
      const t0 = Date.now();
      const results = await Promise.allSettled(Array.from({ length: 12 }, () => replica.core.secrets.rotate(r, 'default', 'UNDER_NEW_KEK')));
      expect(Date.now() - t0).toBeLessThan(10_000);
      // every one either rotated or lost a race with a clear 409 (never a 500, never a hang)
      for (const x of results) if (x.status === 'rejected') expect(x.reason).toMatchObject({ status: 409 });
      expect(results.some((x) => x.status === 'fulfilled')).toBe(true);
      expect((await replica.core.secrets.read(r, 'default', 'UNDER_NEW_KEK')).value).toBe(`${SENTINEL}-new-kek`);
    } finally {
      await replica.core.close();
      await first.core.close();
    }
  }, 30_000);

  it('a replica seals new writes under a KEK another replica rotated to, without meeting data sealed under it first', async () => {
    const db = await ctx.freshDatabase();
    const first = await open(db, { LATCHKEY_MASTER_KEY: KEY_A }, true);
    const { core: replica } = await open(db, { LATCHKEY_MASTER_KEY: KEY_A });
    try {
      const token = first.initialized!.ownerToken;
      const a = await asCtx(first.core, token);
      const r = await asCtx(replica, token);
      const before = replica.keyring.currentKekVersion;
      const { kek_version } = await first.core.keys.rotate(a);
      expect(kek_version).toBe(before + 1);
      await replica.secrets.put(r, 'default', 'SEALED_BY_REPLICA', { value: `${SENTINEL}-replica` });
      const row = await replica.store.getVaultSecretValueRow('default', 'SEALED_BY_REPLICA');
      expect(row?.version.kek_version).toBe(kek_version);
      expect((await first.core.keys.status(a)).needs_rewrap).toBe(0);
      // so do a rollback and a rotation right after another rotation elsewhere (both make new seals)
      const { kek_version: third } = await first.core.keys.rotate(a);
      await replica.secrets.rollback(r, 'default', 'SEALED_BY_REPLICA', 1);
      expect((await replica.store.getVaultSecretValueRow('default', 'SEALED_BY_REPLICA'))?.version).toMatchObject({ version: 2, kek_version: third });
      const { kek_version: fourth } = await first.core.keys.rotate(a);
      await replica.secrets.rotate(r, 'default', 'SEALED_BY_REPLICA');
      expect((await replica.store.getVaultSecretValueRow('default', 'SEALED_BY_REPLICA'))?.version).toMatchObject({ version: 2, kek_version: fourth });
      expect((await replica.secrets.read(r, 'default', 'SEALED_BY_REPLICA')).value).toBe(`${SENTINEL}-replica`);
    } finally {
      await replica.close();
      await first.core.close();
    }
  });
});
