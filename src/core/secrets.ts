/**
 * Secrets and their versions: create (single or preset), update with check-and-set, read through
 * the fallback chain, list, delete, rotate, rotate-all (batched, each batch one transaction, so a
 * kill at any moment leaves every secret readable), history and rollback.
 */
import { newId } from '../crypto/tokens.js';
import type { SecretRow, SecretWithCurrent, Store, VaultRow, VersionRow } from '../store/store.js';
import { GRANT_PAGE, TAG_RE, UniqueViolation } from '../store/store.js';
import type { AuditInput } from './audit.js';
import type { Core } from './core.js';
import { conflict, invalid, LatchkeyError, notFound } from './errors.js';
import { CATEGORIES, checkCategory, checkSecretName, checkValue, LIMITS, type Category } from './names.js';
import { CryptoError } from '../crypto/aead.js';
import { checkPresetValue, expandPreset, getPreset } from './presets.js';
import type { OpContext } from './principal.js';
import { actorOf } from './principal.js';
import { parseFallback } from './vaults.js';

export interface SecretMeta {
  name: string;
  vault: string;
  category: string;
  preset: string | null;
  description: string | null;
  tags: string[];
  version: number;
  created_at: string;
  updated_at: string;
  last_rotated_at: string | null;
}

export interface VersionMeta {
  version: number;
  current: boolean;
  created_at: string;
  created_by: string;
  kek_version: number;
  rotated_at: string | null;
}

export interface CreateInput {
  name?: unknown;
  value?: unknown;
  fields?: unknown;
  category?: unknown;
  preset?: unknown;
  description?: unknown;
  tags?: unknown;
}

export interface PutInput {
  value?: unknown;
  cas?: unknown;
  category?: unknown;
  description?: unknown;
  tags?: unknown;
}

export interface ListInput {
  category?: string;
  prefix?: string;
  q?: string;
  cursor?: string;
  limit?: number;
}

export interface RotateAllResult {
  vault: string;
  rotated: number;
  failed: number;
  failed_names: string[];
  total: number;
  next_cursor: string | null;
  done: boolean;
}

const ROTATE_BATCH = 500;
/** Versions are 32-bit integers in the database (PostgreSQL refuses a larger number outright). */
export const MAX_VERSION = 2_147_483_647;

function checkVersion(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_VERSION) throw invalid('version', `must be a whole number from 1 to ${MAX_VERSION}`);
  return v;
}

function parseTags(t: string): string[] {
  try {
    const a = JSON.parse(t);
    return Array.isArray(a) ? a : [];
  } catch {
    return [];
  }
}

export function secretMeta(vault: string, s: SecretRow): SecretMeta {
  return {
    name: s.name, vault, category: s.category, preset: s.preset, description: s.description, tags: parseTags(s.tags),
    version: s.current_version, created_at: s.created_at, updated_at: s.updated_at, last_rotated_at: s.last_rotated_at,
  };
}

function checkTags(t: unknown): string[] {
  if (t === undefined || t === null) return [];
  if (!Array.isArray(t)) throw invalid('tags', 'must be an array of strings');
  if (t.length > LIMITS.tags) throw invalid('tags', `may hold at most ${LIMITS.tags} tags`);
  t.forEach((x, i) => {
    if (typeof x !== 'string' || !x.length || x.length > LIMITS.tagLength || !TAG_RE.test(x)) {
      throw invalid(`tags[${i}]`, `must be 1-${LIMITS.tagLength} characters of letters, digits and _ . : -`);
    }
  });
  return t as string[];
}

function checkDescription(d: unknown): string | null {
  if (d === undefined || d === null) return null;
  if (typeof d !== 'string') throw invalid('description', 'must be a string');
  if (d.length > LIMITS.description) throw invalid('description', `is longer than ${LIMITS.description} characters`);
  return d;
}

export function encodeCursor(name: string): string {
  return Buffer.from(name, 'utf8').toString('base64url');
}

function decodeCursor(c: string, field = 'cursor'): string {
  const s = Buffer.from(c, 'base64url').toString('utf8');
  if (!s || s.length > LIMITS.secretName) throw invalid(field, 'is not a cursor this server returned');
  return s;
}

/** How putIn writes: PUT's check-and-set and metadata, a proposal's audit details and value field. */
export interface PutOptions {
  /** the expected current version (0 = must not exist) */
  cas?: number;
  /** a new secret's metadata; a new version takes it only with `patch` */
  category?: Category;
  description?: string | null;
  /** JSON array text */
  tags?: string;
  patch?: boolean;
  /** added to the audit event's details */
  details?: Record<string, unknown>;
  /** the request field holding the value, for errors */
  field?: string;
}

export class Secrets {
  constructor(private readonly core: Core) {}

  /**
   * Opens a sealed version; loads newer keys first if another replica rotated the KEK. Inside a
   * transaction pass its store `s`: the keys are then read through it, never on a second pooled
   * connection (concurrent transactions each waiting for one exhausted the PostgreSQL pool).
   */
  async open(vaultId: string, v: Pick<VersionRow, 'secret_id' | 'version' | 'kek_version' | 'wrapped_dek' | 'ciphertext'>, s?: Store): Promise<Buffer> {
    if (!this.core.keyring.hasKek(v.kek_version)) await this.core.keys.refresh(s);
    return this.core.keyring.openValue(vaultId, v.secret_id, v.version, v);
  }

  /** Seals a new version's value under the newest KEK, also one another replica just made. */
  private async sealFor(s: Store, vault: VaultRow, secretId: string, version: number, value: string | Buffer) {
    await this.core.keys.ensureNewest(s);
    return this.core.keyring.sealValue(vault.id, secretId, version, typeof value === 'string' ? Buffer.from(value, 'utf8') : value);
  }

  /** Creates one secret, or every field of a preset, in one transaction; 409 if any exists. */
  async create(ctx: OpContext, vaultName: string, input: CreateInput): Promise<SecretMeta[]> {
    const vault = await this.core.vaults.require(vaultName);
    let items: Array<{ name: string; value: string }>;
    let category: Category;
    let preset: string | null = null;
    if (input.preset !== undefined && input.preset !== null) {
      const p = getPreset(input.preset);
      preset = p.id;
      if (input.value !== undefined || input.name !== undefined) throw invalid(input.name !== undefined ? 'name' : 'value', 'a preset names its secrets itself; give the values in `fields`');
      items = expandPreset(p.id, input.fields);
      category = input.category === undefined ? p.category : checkCategory(input.category);
    } else {
      if (input.fields !== undefined) throw invalid('fields', 'only a preset takes fields; give `name` and `value` instead');
      items = [{ name: checkSecretName(input.name), value: checkValue(input.value) }];
      category = input.category === undefined ? 'custom' : checkCategory(input.category);
    }
    const description = checkDescription(input.description);
    const tags = JSON.stringify(checkTags(input.tags));
    await this.core.authorize(ctx, 'secret.write', vault, items[0]!.name);
    const now = new Date().toISOString();
    const by = actorOf(ctx.principal);
    try {
      return await this.core.write(ctx, async (s, ev) => {
        const out: SecretMeta[] = [];
        for (const it of items) {
          if (await s.getSecret(vault.id, it.name)) throw conflict(`secret '${it.name}' already exists in vault '${vault.name}'; use PUT to add a version`, 'secret_exists', 'name');
          const row: SecretRow = {
            id: newId(), vault_id: vault.id, name: it.name, category, preset, description, tags, current_version: 1,
            created_at: now, updated_at: now, last_rotated_at: null,
          };
          await s.insertSecret(row);
          await s.insertVersion({ secret_id: row.id, version: 1, ...(await this.sealFor(s, vault, row.id, 1, it.value)), created_at: now, created_by: by, rotated_at: null });
          ev.push({ action: 'secret.create', vault: vault.name, target: it.name, details: { version: 1, category, ...(preset ? { preset } : {}) } });
          out.push(secretMeta(vault.name, row));
        }
        return out;
      });
    } catch (err) {
      if (err instanceof UniqueViolation) throw conflict(`a secret of that name already exists in vault '${vault.name}'`, 'secret_exists', 'name');
      throw err;
    }
  }

  /** Adds a version (or creates the secret). `cas` is the expected current version (0 = must not exist). */
  async put(ctx: OpContext, vaultName: string, name: string, input: PutInput): Promise<{ secret: SecretMeta; created: boolean }> {
    const vault = await this.core.vaults.require(vaultName);
    checkSecretName(name, 'name');
    const value = checkValue(input.value);
    const cas = input.cas;
    if (cas !== undefined && (typeof cas !== 'number' || !Number.isInteger(cas) || cas < 0)) throw invalid('cas', 'must be a whole number (the expected current version; 0 = must not exist)');
    const category = input.category === undefined ? undefined : checkCategory(input.category);
    const description = input.description === undefined ? undefined : checkDescription(input.description);
    const tags = input.tags === undefined ? undefined : JSON.stringify(checkTags(input.tags));
    await this.core.authorize(ctx, 'secret.write', vault, name);
    // without `cas`, a PUT that lost a race to create the secret adds a version instead (twice at most)
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.core.write(ctx, (s, ev) => this.putIn(s, ctx, vault, name, value, ev, { cas, category, description, tags, patch: true }));
      } catch (err) {
        if (!(err instanceof UniqueViolation)) throw err;
        if (cas !== undefined || attempt >= 2) throw conflict(`'${name}' was changed concurrently; retry`, 'concurrent_update');
      }
    }
  }

  /**
   * Inside a caller's transaction `s` (PUT, proposal approval): creates the secret or adds a
   * version, and pushes `secret.create` / `secret.update`. The row is locked first, so concurrent
   * changes queue. A new version of a preset's secret is format-checked; `patch` (PUT) also applies
   * the metadata given, which otherwise only a new secret takes. The caller has authorized.
   */
  async putIn(s: Store, ctx: OpContext, vault: VaultRow, name: string, value: string, ev: AuditInput[], opts: PutOptions = {}): Promise<{ secret: SecretMeta; created: boolean }> {
    const details = opts.details ?? {};
    checkSecretName(name, 'name');
    checkValue(value);
    const { cas } = opts;
    const now = new Date().toISOString();
    const by = actorOf(ctx.principal);
    const cur = await s.lockSecret(vault.id, name);
    if (!cur) {
      if (cas !== undefined && cas !== 0) throw conflict(`check-and-set failed: '${name}' does not exist (expected version ${cas})`, 'cas_mismatch', 'cas');
      const row: SecretRow = {
        id: newId(), vault_id: vault.id, name, category: opts.category ?? 'custom', preset: null, description: opts.description ? checkDescription(opts.description) : null,
        tags: opts.tags ?? '[]', current_version: 1, created_at: now, updated_at: now, last_rotated_at: null,
      };
      await s.insertSecret(row);
      await s.insertVersion({ secret_id: row.id, version: 1, ...(await this.sealFor(s, vault, row.id, 1, value)), created_at: now, created_by: by, rotated_at: null });
      ev.push({ action: 'secret.create', vault: vault.name, target: name, details: { version: 1, category: row.category, ...details } });
      return { secret: secretMeta(vault.name, row), created: true };
    }
    if (cas !== undefined && cas !== cur.current_version) {
      throw conflict(`check-and-set failed: '${name}' is at version ${cur.current_version}, not ${cas}`, 'cas_mismatch', 'cas');
    }
    checkPresetValue(cur.preset, name, value, opts.field);
    const next = cur.current_version + 1;
    await s.insertVersion({ secret_id: cur.id, version: next, ...(await this.sealFor(s, vault, cur.id, next, value)), created_at: now, created_by: by, rotated_at: null });
    const { category, description, tags } = opts.patch ? opts : {};
    const patch = { updated_at: now, ...(category ? { category } : {}), ...(description !== undefined ? { description } : {}), ...(tags !== undefined ? { tags } : {}) };
    if (!(await s.advanceSecret(cur.id, cur.current_version, next, patch))) throw conflict(`'${name}' was changed concurrently; retry`, 'concurrent_update');
    ev.push({ action: 'secret.update', vault: vault.name, target: name, details: { version: next, ...details } });
    return { secret: secretMeta(vault.name, { ...cur, ...patch, current_version: next }), created: false };
  }

  /**
   * After a secret left `vault` (deleted, migrated), inside the transaction: revokes the grants to
   * it there and in every vault that reached it through its fallback chain, except where the name
   * still resolves (a user's own key deleted so that the platform's serves: the grants go on to the
   * one that serves now).
   */
  private async revokeGrantsIfGone(s: Store, ctx: OpContext, vault: VaultRow, name: string, reason: string, ev: AuditInput[]): Promise<number> {
    // two such removals at once (the name in two vaults of one chain) would each still see the
    // other's copy and revoke nothing: they take turns, each seeing what the other committed
    await s.lockSecretName(name);
    const reaching = (await s.listVaults()).filter((o) => o.id !== vault.id && parseFallback(o).includes(vault.name));
    let revoked = 0;
    for (const v of [vault, ...reaching]) revoked += await this.revokeIfUnresolved(s, ctx, v, name, reason, ev);
    return revoked;
  }

  /** The vault's grants on `name` revoked unless the name resolves there (itself or its fallback chain). */
  private async revokeIfUnresolved(s: Store, ctx: OpContext, vault: VaultRow, name: string, reason: string, ev: AuditInput[]): Promise<number> {
    if (await this.resolve(vault, name, undefined, s)) return 0;
    return this.core.grants.revokeIn(s, ctx, vault, { kind: 'secret', target: name }, reason, ev);
  }

  /**
   * Inside a transaction, after the vault's fallback chain changed: revokes its secret grants whose
   * name no longer resolves (the vault that served it left the chain), so a secret made later under
   * the name is not vended under an old grant. Grant lists are pages: it lists again while a full
   * page still brings names it has not checked.
   */
  async revokeUnresolved(s: Store, ctx: OpContext, vault: VaultRow, reason: string, ev: AuditInput[]): Promise<number> {
    const checked = new Set<string>();
    let revoked = 0;
    for (;;) {
      let full = false;
      let fresh = false;
      for (const status of ['approved', 'pending']) {
        const rows = await s.listGrants({ vaultId: vault.id, kind: 'secret', status });
        if (rows.length >= GRANT_PAGE) full = true;
        for (const g of rows) {
          if (checked.has(g.target)) continue;
          checked.add(g.target);
          fresh = true;
          revoked += await this.revokeIfUnresolved(s, ctx, vault, g.target, reason, ev);
        }
      }
      if (!full || !fresh) return revoked;
    }
  }

  /**
   * Inside a caller's transaction: deletes the secret (all versions) if it exists, pushing
   * `secret.delete`, and revokes the grants it leaves behind (a secret made later under the name
   * starts with none). Null when there was no such secret.
   */
  async deleteIn(s: Store, ctx: OpContext, vault: VaultRow, name: string, ev: AuditInput[], details: Record<string, unknown> = {}): Promise<{ versions: number; revoked: number } | null> {
    const cur = await s.lockSecret(vault.id, name);
    if (!cur) return null;
    const { versions } = await s.deleteSecret(cur.id);
    ev.push({ action: 'secret.delete', vault: vault.name, target: name, details: { versions, ...details } });
    return { versions, revoked: await this.revokeGrantsIfGone(s, ctx, vault, name, 'secret deleted', ev) };
  }

  async get(ctx: OpContext, vaultName: string, name: string): Promise<SecretMeta & { versions: VersionMeta[] }> {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'secret.meta', vault, name);
    const s = await this.core.store.getSecret(vault.id, name);
    if (!s) throw notFound('secret', name);
    const versions = await this.core.store.listVersions(s.id);
    return {
      ...secretMeta(vault.name, s),
      versions: versions.map((v) => ({ version: v.version, current: v.version === s.current_version, created_at: v.created_at, created_by: v.created_by, kek_version: v.kek_version, rotated_at: v.rotated_at })),
    };
  }

  /** Finds the secret in the vault, then along its fallback chain (only when no version is pinned). */
  async resolve(vault: VaultRow, name: string, version?: number, s: Store = this.core.store): Promise<{ vault: VaultRow; row: SecretWithCurrent } | null> {
    const row = await s.getSecretValueRow(vault.id, name, version);
    if (row) return { vault, row };
    if (version !== undefined) return null;
    for (const fb of parseFallback(vault)) {
      const v = await s.getVault(fb);
      if (!v) continue;
      const r = await s.getSecretValueRow(v.id, name);
      if (r) return { vault: v, row: r };
    }
    return null;
  }

  /** Decrypts a value (audited `secret.read`, naming the vault that served it). */
  async read(ctx: OpContext, vaultName: string, name: string, version?: number): Promise<{ name: string; vault: string; version: number; value: string }> {
    if (version !== undefined) checkVersion(version);
    // hot path: vault, secret and version in one query; authorization is still decided before anything is decrypted
    const direct = await this.core.store.getVaultSecretValueRow(vaultName, name, version);
    const vault = direct?.vault ?? (await this.core.vaults.require(vaultName));
    await this.core.authorize(ctx, 'secret.read', vault, name);
    const found = direct ? { vault: direct.vault, row: direct } : await this.resolve(vault, name, version);
    if (!found) throw version === undefined ? notFound('secret', name) : new LatchkeyError(404, 'version_not_found', `secret '${name}' has no version ${version}`, 'version');
    const plain = await this.open(found.vault.id, found.row.version);
    await this.core.record(ctx, {
      action: 'secret.read', vault: found.vault.name, target: name,
      details: { version: found.row.version.version, ...(found.vault.id !== vault.id ? { requested_vault: vault.name } : {}) },
    });
    return { name, vault: found.vault.name, version: found.row.version.version, value: plain.toString('utf8') };
  }

  /** Metadata, filtered and paged. An agent sees credential names only (SPEC §3: names, nothing more). */
  async list(ctx: OpContext, vaultName: string, q: ListInput): Promise<{ items: Array<SecretMeta | { name: string; vault: string }>; next_cursor: string | null }> {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'secret.list', vault);
    const agent = ctx.principal.kind === 'agent';
    // an agent sees names only: it may not filter (or probe) by category or description either
    if (agent && q.category !== undefined) throw invalid('category', 'agents list credential names only; filter by prefix or name');
    if (q.category !== undefined && !(CATEGORIES as readonly string[]).includes(q.category)) checkCategory(q.category);
    const limit = q.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > LIMITS.listPage) throw invalid('limit', `must be between 1 and ${LIMITS.listPage}`);
    const rows = await this.core.store.listSecrets({ vaultId: vault.id, category: q.category, prefix: q.prefix, q: q.q, namesOnly: agent, after: q.cursor ? decodeCursor(q.cursor) : undefined, limit });
    const last = rows.at(-1);
    return { items: rows.map((r) => (agent ? { name: r.name, vault: vault.name } : secretMeta(vault.name, r))), next_cursor: rows.length === limit && last ? encodeCursor(last.name) : null };
  }

  async delete(ctx: OpContext, vaultName: string, name: string): Promise<{ deleted: string; vault: string; versions: number; revoked_grants: number }> {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'secret.delete', vault, name);
    return this.core.write(ctx, async (s, ev) => {
      const r = await this.deleteIn(s, ctx, vault, name, ev);
      if (!r) throw notFound('secret', name);
      return { deleted: name, vault: vault.name, versions: r.versions, revoked_grants: r.revoked };
    });
  }

  /** Re-encrypts the current value under a fresh DEK and IV with the newest KEK; the value is unchanged. */
  private async reseal(s: Store, vault: VaultRow, row: SecretWithCurrent, now: string, keyCheckMs = 0): Promise<number> {
    const plain = await this.open(vault.id, row.version, s);
    try {
      await this.core.keys.ensureNewest(s, keyCheckMs);
      const sealed = this.core.keyring.sealValue(vault.id, row.secret.id, row.version.version, plain);
      // the secret's row before its version's, as every change to a secret takes them (lockSecret):
      // the other order deadlocked against a rotation or delete of the same secret on PostgreSQL
      await s.touchSecretRotated(row.secret.id, now);
      await s.updateVersionSeal(row.secret.id, row.version.version, { ...sealed, rotated_at: now });
      return sealed.kek_version;
    } finally {
      plain.fill(0);
    }
  }

  async rotate(ctx: OpContext, vaultName: string, name: string): Promise<SecretMeta> {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'secret.rotate', vault, name);
    const now = new Date().toISOString();
    return this.core.write(ctx, async (s, ev) => {
      const row = (await s.lockSecret(vault.id, name)) && (await s.getSecretValueRow(vault.id, name));
      if (!row) throw notFound('secret', name);
      const kek = await this.reseal(s, vault, row, now);
      ev.push({ action: 'secret.rotate', vault: vault.name, target: name, details: { version: row.version.version, kek_version: kek } });
      return secretMeta(vault.name, { ...row.secret, last_rotated_at: now });
    });
  }

  /**
   * Rotates every secret of a vault in batches of 500, each batch its own transaction (with one
   * `vault.rotate_all` event). `after`/`limit` let a caller drive it batch by batch for progress.
   */
  async rotateAll(ctx: OpContext, vaultName: string, opts: { after?: string; limit?: number } = {}, onBatch?: (r: RotateAllResult) => void): Promise<RotateAllResult> {
    const vault = await this.core.vaults.require(vaultName);
    await this.core.authorize(ctx, 'vault.rotate_all', vault);
    const max = opts.limit ?? Number.POSITIVE_INFINITY;
    if (opts.limit !== undefined && (!Number.isInteger(opts.limit) || opts.limit < 1)) throw invalid('limit', 'must be a positive whole number');
    const total = await this.core.store.countVaultSecrets(vault.id);
    const res: RotateAllResult = { vault: vault.name, rotated: 0, failed: 0, failed_names: [], total, next_cursor: null, done: false };
    let cursor: string | null = opts.after ? decodeCursor(opts.after, 'after') : null;
    for (;;) {
      const want = Math.min(ROTATE_BATCH, max - res.rotated - res.failed);
      if (want <= 0) break;
      const now = new Date().toISOString();
      const batch = await this.core.write(ctx, async (s, ev) => {
        const rows = await s.listCurrentVersions(vault.id, cursor, want);
        let ok = 0;
        const failed: string[] = [];
        for (const row of rows) {
          try {
            // a batch checks for a newer KEK at most once a second; one rotation checks every time
            await this.reseal(s, vault, row, now, 1000);
            ok++;
          } catch (err) {
            // a value that does not open (damaged, or sealed under a key this instance lacks) is
            // counted and skipped; a database error ends the batch (the transaction is gone)
            if (!(err instanceof CryptoError)) throw err;
            failed.push(row.secret.name);
          }
        }
        if (rows.length) {
          ev.push({
            action: 'vault.rotate_all', vault: vault.name, target: vault.name,
            outcome: failed.length ? 'error' : 'ok',
            details: { rotated: ok, failed: failed.length, failed_names: failed.slice(0, 50), first: rows[0]!.secret.name, last: rows.at(-1)!.secret.name, kek_version: this.core.keyring.currentKekVersion },
          });
        }
        return { n: rows.length, ok, failed, last: rows.at(-1)?.secret.name ?? null };
      });
      res.rotated += batch.ok;
      res.failed += batch.failed.length;
      res.failed_names.push(...batch.failed.slice(0, Math.max(0, 50 - res.failed_names.length)));
      if (batch.last !== null) cursor = batch.last;
      if (batch.n < want) {
        res.done = true;
        break;
      }
      onBatch?.({ ...res, next_cursor: cursor === null ? null : encodeCursor(cursor) });
    }
    res.next_cursor = res.done || cursor === null ? null : encodeCursor(cursor);
    return res;
  }

  /**
   * Moves a secret, every version of it, to another vault (SPEC §4 `secret.migrate`): each version
   * is re-sealed there under a fresh data key, since the associated data binds a ciphertext to its
   * vault. One transaction; the secret keeps its name, metadata and version numbers. Grants to it
   * in the vault it leaves are revoked (as on delete); a secret of that name in the target is a 409.
   */
  async migrate(ctx: OpContext, vaultName: string, name: string, input: { to?: unknown }): Promise<SecretMeta & { from: string; versions: number; revoked_grants: number }> {
    const from = await this.core.vaults.require(vaultName);
    checkSecretName(name, 'name');
    if (typeof input.to !== 'string' || !input.to) throw invalid('to', 'is required: the vault to move the secret to');
    const to = await this.core.vaults.require(input.to, 'to');
    if (to.id === from.id) throw invalid('to', `the secret is in vault '${from.name}' already`);
    // leaving one vault is a delete there, arriving is a write in the other
    await this.core.authorize(ctx, 'secret.delete', from, name);
    await this.core.authorize(ctx, 'secret.write', to, name);
    const now = new Date().toISOString();
    const exists = () => conflict(`secret '${name}' already exists in vault '${to.name}'`, 'secret_exists', 'to');
    try {
      return await this.core.write(ctx, async (s, ev) => {
        const cur = await s.lockSecret(from.id, name);
        if (!cur) throw notFound('secret', name);
        if (await s.lockSecret(to.id, name)) throw exists();
        const row: SecretRow = { ...cur, id: newId(), vault_id: to.id, updated_at: now };
        await s.insertSecret(row);
        const versions = await s.listVersions(cur.id);
        for (const meta of versions) {
          const v = await s.getVersion(cur.id, meta.version);
          if (!v) continue;
          const plain = await this.open(from.id, v, s);
          try {
            const sealed = await this.sealFor(s, to, row.id, v.version, plain);
            await s.insertVersion({ secret_id: row.id, version: v.version, ...sealed, created_at: v.created_at, created_by: v.created_by, rotated_at: v.rotated_at });
          } finally {
            plain.fill(0);
          }
        }
        await s.deleteSecret(cur.id);
        // one event in each vault's log: its admins read their own vault's events only
        for (const [vault, side] of [[from.name, 'out'], [to.name, 'in']] as const) {
          ev.push({ action: 'secret.migrate', vault, target: name, details: { from: from.name, to: to.name, side, versions: versions.length, version: cur.current_version } });
        }
        const revoked = await this.revokeGrantsIfGone(s, ctx, from, name, 'secret migrated', ev);
        return { ...secretMeta(to.name, row), from: from.name, versions: versions.length, revoked_grants: revoked };
      });
    } catch (err) {
      // created in the target meanwhile (no row to lock there before)
      if (err instanceof UniqueViolation) throw exists();
      throw err;
    }
  }

  /** Makes a new version holding the value of an old one. */
  async rollback(ctx: OpContext, vaultName: string, name: string, to: unknown): Promise<SecretMeta> {
    const vault = await this.core.vaults.require(vaultName);
    const version = checkVersion(to);
    await this.core.authorize(ctx, 'secret.write', vault, name);
    const now = new Date().toISOString();
    const by = actorOf(ctx.principal);
    try {
      return await this.core.write(ctx, async (s, ev) => {
        if (!(await s.lockSecret(vault.id, name))) throw notFound('secret', name);
        const old = await s.getSecretValueRow(vault.id, name, version);
        if (!old) {
          throw new LatchkeyError(404, 'version_not_found', `secret '${name}' has no version ${version}`, 'version');
        }
        const cur = old.secret;
        const plain = await this.open(vault.id, old.version, s);
        const next = cur.current_version + 1;
        try {
          await s.insertVersion({ secret_id: cur.id, version: next, ...(await this.sealFor(s, vault, cur.id, next, plain)), created_at: now, created_by: by, rotated_at: null });
        } finally {
          plain.fill(0);
        }
        if (!(await s.advanceSecret(cur.id, cur.current_version, next, { updated_at: now }))) throw conflict(`'${name}' was changed concurrently; retry`, 'concurrent_update');
        ev.push({ action: 'secret.rollback', vault: vault.name, target: name, details: { from_version: version, version: next } });
        return secretMeta(vault.name, { ...cur, current_version: next, updated_at: now });
      });
    } catch (err) {
      if (err instanceof UniqueViolation) throw conflict(`'${name}' was changed concurrently; retry`, 'concurrent_update');
      throw err;
    }
  }
}
