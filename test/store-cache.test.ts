/**
 * The embedded store's read cache (src/store/read-cache.ts) must never answer with something the
 * database no longer holds. Every test runs on both backends: PostgreSQL has no cache, so there the
 * same tests pin down the behaviour the cache must not change.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { classify } from '../src/store/read-cache.js';
import type { KyselyStore } from '../src/store/index.js';
import type { AuditRow, TokenRow, UserRow, VaultRow } from '../src/store/store.js';
import { GENESIS_HASH } from '../src/store/schema.js';
import { describeBackends } from './helpers/backends.js';
import { openRaw } from './helpers/raw-sql.js';

const now = () => new Date().toISOString();
const uid = (p: string) => `${p}_${randomUUID().replace(/-/g, '').slice(0, 16)}`;

async function person(s: KyselyStore): Promise<{ user: UserRow; token: TokenRow }> {
  const user: UserRow = { id: uid('usr'), email: `${uid('e')}@example.test`, password_hash: null, role: 'member', disabled: 0, created_at: now(), updated_at: now() };
  const token: TokenRow = {
    id: uid('tok'), kind: 'pat', hash: uid('hash'), name: 't', user_id: user.id, agent_id: null, vault_id: null,
    expires_at: null, revoked_at: null, created_at: now(), last_used_at: null,
  };
  await s.insertUser(user);
  await s.insertToken(token);
  return { user, token };
}

async function vaultWithSecret(s: KyselyStore, name: string): Promise<VaultRow> {
  const vault: VaultRow = { id: uid('vlt'), name: uid('v').toLowerCase(), description: null, fallback: '[]', passthrough: 0, created_at: now(), updated_at: now() };
  await s.insertVault(vault);
  const secretId = uid('sec');
  await s.tx(async (t) => {
    await t.insertSecret({ id: secretId, vault_id: vault.id, name, category: 'api_key', preset: null, description: null, tags: '[]', current_version: 1, created_at: now(), updated_at: now(), last_rotated_at: null });
    await t.insertVersion({ secret_id: secretId, version: 1, kek_version: 1, wrapped_dek: Buffer.from([1]), ciphertext: Buffer.from([2]), created_at: now(), created_by: 'user:x', rotated_at: null });
  });
  return vault;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('statement classification (what clears the cache)', () => {
  it('reads, transaction control, audit/quota appends and changes are told apart', () => {
    expect(classify('select * from "tokens" where "hash" = ?')).toBe('read');
    expect(classify('  SELECT 1')).toBe('read');
    expect(classify('begin')).toBe('begin');
    expect(classify('commit')).toBe('end');
    expect(classify('rollback')).toBe('end');
    expect(classify('insert into "audit_events" ("seq") values (?)')).toBe('log');
    expect(classify('update "audit_head" set "seq" = ?')).toBe('log');
    expect(classify('insert into "proxy_quota" ("vault_id") values (?) on conflict do update set "count" = proxy_quota.count + 1 returning "count"')).toBe('log');
    expect(classify('update "tokens" set "revoked_at" = ? where "id" = ?')).toBe('change');
    expect(classify('delete from "secrets" where "id" = ?')).toBe('change');
    expect(classify('insert into "audit_events_archive" ("seq") values (?)')).toBe('change');
    expect(classify('update "audit_head_x" set "seq" = ?')).toBe('change');
    expect(classify('create table "x" ("a" text)')).toBe('change');
    expect(classify('with x as (select 1) delete from "tokens"')).toBe('change');
  });
});

describeBackends('read cache', (ctx) => {
  it('a token revoked in a transaction is refused by the next lookup, though a lookup during the transaction saw it live', async () => {
    const s = await ctx.openStore();
    const { token } = await person(s);
    expect((await s.getTokenWithUser(token.hash))?.token.revoked_at).toBeNull();
    await s.tx(async (t) => {
      await t.revokeToken(token.id, now());
      // outside the transaction: the committed row (not yet revoked); on SQLite this refills the cache
      expect((await s.getTokenWithUser(token.hash))?.token.revoked_at).toBeNull();
    });
    expect((await s.getTokenWithUser(token.hash))?.token.revoked_at).not.toBeNull();
  });

  it('a rolled-back change leaves the lookups as they were', async () => {
    const s = await ctx.openStore();
    const { token } = await person(s);
    await s.getTokenWithUser(token.hash);
    await expect(s.tx(async (t) => {
      await t.revokeToken(token.id, now());
      throw new Error('abort');
    })).rejects.toThrow('abort');
    expect((await s.getTokenWithUser(token.hash))?.token.revoked_at).toBeNull();
  });

  it('deleting a secret, and moving its current version, show at once', async () => {
    const s = await ctx.openStore();
    const vault = await vaultWithSecret(s, 'CACHE_ME');
    const before = await s.getVaultSecretValueRow(vault.name, 'CACHE_ME');
    expect(before?.version.version).toBe(1);
    await s.tx(async (t) => {
      await t.insertVersion({ secret_id: before!.secret.id, version: 2, kek_version: 1, wrapped_dek: Buffer.from([3]), ciphertext: Buffer.from([4]), created_at: now(), created_by: 'user:x', rotated_at: null });
      expect(await t.advanceSecret(before!.secret.id, 1, 2, { updated_at: now() })).toBe(true);
    });
    expect((await s.getVaultSecretValueRow(vault.name, 'CACHE_ME'))?.version.version).toBe(2);
    await s.tx((t) => t.deleteSecret(before!.secret.id));
    expect(await s.getVaultSecretValueRow(vault.name, 'CACHE_ME')).toBeNull();
  });

  it('a change made by another process (its own connection) is seen within a few milliseconds', async () => {
    const s = await ctx.openStore();
    const { token, user } = await person(s);
    const vault = await vaultWithSecret(s, 'FOREIGN');
    await s.getTokenWithUser(token.hash);
    await s.getVaultSecretValueRow(vault.name, 'FOREIGN');
    expect(await s.getMemberRole(vault.id, 'user', user.id)).toBeNull();
    const raw = await openRaw(ctx);
    try {
      await raw.run('update tokens set revoked_at = ? where id = ?', [now(), token.id]);
      await raw.run('insert into vault_members (vault_id, kind, member_id, role, created_at) values (?, ?, ?, ?, ?)', [vault.id, 'user', user.id, 'admin', now()]);
      await raw.run('delete from secret_versions where secret_id in (select id from secrets where name = ?)', ['FOREIGN']);
      await raw.run('delete from secrets where name = ?', ['FOREIGN']);
    } finally {
      await raw.close();
    }
    await sleep(5);
    expect((await s.getTokenWithUser(token.hash))?.token.revoked_at).not.toBeNull();
    expect(await s.getMemberRole(vault.id, 'user', user.id)).toBe('admin');
    expect(await s.getVaultSecretValueRow(vault.name, 'FOREIGN')).toBeNull();
  });

  it('lookups whose parameters would run together stay apart (no aliasing through a separator)', async () => {
    const s = await ctx.openStore();
    const vault = await vaultWithSecret(s, 'Y\u0001Z');
    // first a lookup that would share a key with the next one if parameters were joined with \u0001
    expect(await s.getVaultSecretValueRow(`${vault.name}\u0001Y`, 'Z')).toBeNull();
    expect((await s.getVaultSecretValueRow(vault.name, 'Y\u0001Z'))?.secret.name).toBe('Y\u0001Z');
  });

  it('what one caller gets cannot be changed for the next', async () => {
    const s = await ctx.openStore();
    const vault = await vaultWithSecret(s, 'SHARED');
    const a = await s.getVault(vault.name);
    try {
      (a as { name: string }).name = 'tampered';
    } catch { /* frozen (SQLite cache): the assignment throws in strict mode */ }
    expect((await s.getVault(vault.name))?.name).toBe(vault.name);
  });

  it('audit appends keep the cache (SQLite): lookups between group commits are answered from memory', async () => {
    const s = await ctx.openStore();
    const { token } = await person(s);
    const stats = s.readCacheStats();
    if (ctx.backend === 'postgres') {
      expect(stats).toBeNull();
      return;
    }
    await s.getTokenWithUser(token.hash);
    const before = s.readCacheStats()!;
    for (let i = 0; i < 5; i++) {
      await s.appendAudit((head) => {
        const seq = head.seq + 1;
        const row: AuditRow = {
          seq, id: uid('ev'), ts: now(), actor: 'user:x', action: 'secret.read', vault: null, target: null, outcome: 'ok', ip: null, request_id: null,
          details: '{}', prev_hash: head.hash || GENESIS_HASH, hash: `${'0'.repeat(63)}${i}`,
        };
        return [row];
      });
      expect((await s.getTokenWithUser(token.hash))?.token.id).toBe(token.id);
    }
    const after = s.readCacheStats()!;
    expect(after.hits - before.hits).toBe(5);
    expect(after.clears).toBe(before.clears);
    expect((await s.getAuditHead()).seq).toBe(5);
  });
});
