/** Key management: status, KEK rotation, rewrap of DEKs onto the newest KEK (secret versions batched, then the proxy CA key and pending proposals' values). Rekey is offline (bootstrap.ts). */
import { blobKekVersion, type KeyPurpose, type SealedKeyRow } from '../crypto/keyring.js';
import { UniqueViolation, type Store } from '../store/store.js';
import type { Core } from './core.js';
import { conflict, invalid, LatchkeyError } from './errors.js';
import type { OpContext } from './principal.js';

const REWRAP_BATCH = 500;

/** The purposes (AAD) of the keyring's sealed blobs: the forward proxy CA's private key, a proposal's values. */
export const CA_SEAL_PURPOSE = 'proxy-ca';
export const PROPOSAL_SEAL_PURPOSE = 'proposal';

/** A sealed blob under an older KEK, and how to store it re-wrapped. */
interface StaleBlob {
  purpose: string;
  scope: string;
  id: string;
  sealed: Uint8Array;
  /** false when the row changed meanwhile (a proposal decided): nothing was written */
  save(s: Store, sealed: Buffer): Promise<boolean | void>;
}

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
      ...this.needsRewrap(this.versionsBelow(counts.byKek, this.core.keyring.currentKekVersion), await this.blobsBelow(this.core.keyring.currentKekVersion)),
    };
  }

  /** What is sealed under an older KEK: in all, and by kind. */
  private needsRewrap(versions: number, blobs: StaleBlob[]) {
    const of = (purpose: string) => blobs.filter((b) => b.purpose === purpose).length;
    return {
      needs_rewrap: versions + blobs.length,
      needs_rewrap_by_kind: { secret_versions: versions, proxy_ca_key: of(CA_SEAL_PURPOSE), proposals: of(PROPOSAL_SEAL_PURPOSE) },
    };
  }

  private versionsBelow(byKek: Record<string, number>, kek: number): number {
    return Object.entries(byKek).filter(([v]) => Number(v) < kek).reduce((a, [, n]) => a + n, 0);
  }

  /** What else is sealed under a KEK older than `kek`: the proxy CA's private key, pending proposals' values. */
  private async blobsBelow(kek: number, s: Store = this.core.store): Promise<StaleBlob[]> {
    const out: StaleBlob[] = [];
    const ca = await s.getProxyCa();
    if (ca && blobKekVersion(ca.sealed_key) < kek) {
      out.push({ purpose: CA_SEAL_PURPOSE, scope: ca.id, id: ca.id, sealed: ca.sealed_key, save: (st, b) => st.updateProxyCaKey(ca.id, b) });
    }
    for (const p of await s.listProposals({ status: 'pending' })) {
      if (p.sealed_values?.length && blobKekVersion(p.sealed_values) < kek) {
        out.push({ purpose: PROPOSAL_SEAL_PURPOSE, scope: p.vault_id, id: p.id, sealed: p.sealed_values, save: (st, b) => st.updateProposalSeal(p.id, b) });
      }
    }
    return out;
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
    if (rewrapped < max) {
      // then the few other sealed blobs, in one transaction (within what is left of the limit);
      // overdue proposals are expired first, which drops their values instead
      const n = await this.core.write(ctx, async (s, ev) => {
        await this.core.proposals.expireDue(new Date(), s);
        const done: StaleBlob[] = [];
        for (const b of (await this.blobsBelow(kek, s)).slice(0, max - rewrapped)) {
          if ((await b.save(s, this.core.keyring.rewrapBlob(b.purpose, b.scope, b.id, b.sealed))) !== false) done.push(b);
        }
        if (done.length) ev.push({ action: 'key.rewrap', details: { rewrapped: done.length, kek_version: kek, kinds: [...new Set(done.map((b) => b.purpose))] } });
        return done.length;
      });
      if (n) {
        rewrapped += n;
        onBatch?.(rewrapped);
      }
    }
    const remaining = this.versionsBelow((await this.core.store.countSecrets()).byKek, kek) + (await this.blobsBelow(kek)).length;
    return { rewrapped, remaining, kek_version: kek, done: remaining === 0 };
  }
}
