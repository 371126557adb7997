/** Key management: status, KEK rotation, rewrap of DEKs onto the newest KEK (batched). Rekey is offline (bootstrap.ts). */
import type { KeyPurpose, SealedKeyRow } from '../crypto/keyring.js';
import { UniqueViolation, type Store } from '../store/store.js';
import type { Core } from './core.js';
import { conflict, invalid, LatchkeyError } from './errors.js';
import type { OpContext } from './principal.js';

const REWRAP_BATCH = 500;

export class Keys {
  constructor(private readonly core: Core) {}

  /** Loads key rows this process has not seen (another replica rotated). */
  async refresh(store: Store = this.core.store): Promise<void> {
    const rows = await store.listKeys();
    const fresh = rows.filter((r) => r.purpose === 'kek' && !this.core.keyring.hasKek(r.version));
    if (!fresh.length) return;
    try {
      this.core.keyring.load(fresh.map((r) => ({ ...r, purpose: r.purpose as KeyPurpose })));
    } catch (err) {
      await this.checkMaster(store, false);
      throw err;
    }
  }

  /**
   * Refuses to go on when the keyring was re-sealed under another master key (an offline
   * `latchkey key rekey`) after this process opened it: a key sealed now under the old master
   * would open under neither. With `lock`, inside a transaction, the sentinel row stays locked
   * until commit, so a rekey and a KEK rotation never interleave.
   */
  async checkMaster(s: Store, lock = true): Promise<void> {
    const sentinel = lock ? await s.lockMeta('sentinel') : await s.getMeta('sentinel');
    if (sentinel && this.core.keyring.sealedWithThisMaster(Buffer.from(sentinel, 'base64'))) return;
    throw new LatchkeyError(503, 'master_key_changed', 'the keyring was re-sealed under another master key (latchkey key rekey) since this server started; restart it with the new key');
  }

  private checkedAt = 0;

  /**
   * Before sealing: make sure this process seals under the newest KEK even when another replica
   * rotated it (the keyring in memory is only a cache of the keys table). `maxAgeMs` lets bulk
   * operations check once per interval instead of once per value.
   */
  async ensureNewest(s: Store, maxAgeMs = 0): Promise<void> {
    const now = Date.now();
    if (maxAgeMs > 0 && now - this.checkedAt < maxAgeMs) return;
    this.checkedAt = now;
    // through the caller's transaction: a second pooled connection per write could exhaust the pool
    await this.refresh(s);
  }

  async status(ctx: OpContext) {
    await this.core.authorize(ctx, 'key.read');
    await this.refresh();
    const rows = await this.core.store.listKeys();
    const counts = await this.core.store.countSecrets();
    const kdf = await this.core.store.getMeta('kdf');
    return {
      master_key_source: this.core.info.masterSource,
      kdf: kdf ? JSON.parse(kdf).alg : null,
      kek_version: this.core.keyring.currentKekVersion,
      keks: rows.filter((r) => r.purpose === 'kek').map((r) => ({ version: r.version, created_at: r.created_at, sealed_versions: counts.byKek[String(r.version)] ?? 0 })),
      needs_rewrap: Object.entries(counts.byKek).filter(([v]) => Number(v) < this.core.keyring.currentKekVersion).reduce((a, [, n]) => a + n, 0),
    };
  }

  async rotate(ctx: OpContext): Promise<{ kek_version: number }> {
    await this.core.authorize(ctx, 'key.manage');
    await this.refresh();
    const row: SealedKeyRow = this.core.keyring.nextKekRow();
    try {
      await this.core.write(ctx, async (s, ev) => {
        await this.checkMaster(s);
        await s.insertKey({ ...row, wrapped: row.wrapped });
        ev.push({ action: 'key.rotate', details: { kek_version: row.version } });
      });
    } catch (err) {
      if (err instanceof UniqueViolation) throw conflict('the key was rotated concurrently; retry', 'concurrent_update');
      throw err;
    }
    this.core.keyring.load([row]);
    return { kek_version: row.version };
  }

  /** Re-wraps DEKs sealed under older KEKs onto the newest one; ciphertexts are untouched. */
  async rewrap(ctx: OpContext, opts: { limit?: number } = {}, onBatch?: (done: number) => void): Promise<{ rewrapped: number; remaining: number; kek_version: number; done: boolean }> {
    await this.core.authorize(ctx, 'key.manage');
    if (opts.limit !== undefined && (!Number.isInteger(opts.limit) || opts.limit < 1)) throw invalid('limit', 'must be a positive whole number');
    await this.refresh();
    const kek = this.core.keyring.currentKekVersion;
    const max = opts.limit ?? Number.POSITIVE_INFINITY;
    let rewrapped = 0;
    for (;;) {
      const want = Math.min(REWRAP_BATCH, max - rewrapped);
      if (want <= 0) break;
      const n = await this.core.write(ctx, async (s, ev) => {
        const rows = await s.listVersionsBelowKek(kek, want);
        for (const r of rows) {
          const w = this.core.keyring.rewrapDek(r.vault_id, r.secret_id, r.version, r);
          await s.updateVersionSeal(r.secret_id, r.version, { ...w, ciphertext: r.ciphertext });
        }
        if (rows.length) ev.push({ action: 'key.rewrap', details: { rewrapped: rows.length, kek_version: kek } });
        return rows.length;
      });
      rewrapped += n;
      onBatch?.(rewrapped);
      if (n < want) break;
    }
    const counts = await this.core.store.countSecrets();
    const remaining = Object.entries(counts.byKek).filter(([v]) => Number(v) < kek).reduce((a, [, c]) => a + c, 0);
    return { rewrapped, remaining, kek_version: kek, done: remaining === 0 };
  }
}
