/**
 * The keyring: versioned key-encryption keys (KEKs) plus the audit-chain key and the token-hash key,
 * each stored as its own row sealed under the master key. Secrets never touch the master key:
 *
 *   value  --seal(DEK, aad(value, vault, secret, version))-->  ciphertext
 *   DEK    --seal(KEK_v, aad(dek, vault, secret, version, v))--> wrapped_dek
 *   KEK_v  --seal(master, aad(key, kek, v))-->                   keys row
 *
 * Rekeying re-seals only the key rows; rewrapping re-seals only DEKs; rotating a secret makes a new DEK.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { aad, CryptoError, KEY_BYTES, open, seal } from './aead.js';

export type KeyPurpose = 'kek' | 'audit' | 'token';

export interface SealedKeyRow {
  purpose: KeyPurpose;
  version: number;
  wrapped: Uint8Array;
  created_at: string;
}

const SENTINEL_PLAINTEXT = Buffer.from('latchkey master key sentinel v1', 'utf8');
const SENTINEL_AAD = aad('latchkey', 'sentinel');

function keyAad(purpose: KeyPurpose, version: number): Buffer {
  return aad('latchkey', 'key', purpose, version);
}

export function sealKeyRow(master: Uint8Array, purpose: KeyPurpose, version: number, key: Uint8Array, createdAt = new Date().toISOString()): SealedKeyRow {
  return { purpose, version, wrapped: seal(master, key, keyAad(purpose, version)), created_at: createdAt };
}

export function makeSentinel(master: Uint8Array): Buffer {
  return seal(master, SENTINEL_PLAINTEXT, SENTINEL_AAD);
}

/** True when `master` is the key the sentinel was sealed with. */
export function checkSentinel(master: Uint8Array, sentinel: Uint8Array): boolean {
  try {
    return open(master, sentinel, SENTINEL_AAD).equals(SENTINEL_PLAINTEXT);
  } catch {
    return false;
  }
}

/** The rows a brand-new keyring consists of (KEK v1, audit key, token key). */
export function newKeyringRows(master: Uint8Array): SealedKeyRow[] {
  return (['kek', 'audit', 'token'] as const).map((p) => sealKeyRow(master, p, 1, randomBytes(KEY_BYTES)));
}

export function dekAad(vaultId: string, secretId: string, version: number, kekVersion: number): Buffer {
  return aad('latchkey', 'dek', vaultId, secretId, version, kekVersion);
}

export function valueAad(vaultId: string, secretId: string, version: number): Buffer {
  return aad('latchkey', 'value', vaultId, secretId, version);
}

/** A sealBlob blob's parts (layout: u32 kek_version | u16 wrapped-DEK length | wrapped DEK | ciphertext). */
function parseBlob(sealed: Uint8Array): { kekVersion: number; wrapped: Buffer; ciphertext: Buffer } {
  const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.length);
  if (buf.length < 6) throw new CryptoError('sealed data is malformed');
  const n = buf.readUInt16BE(4);
  if (buf.length < 6 + n) throw new CryptoError('sealed data is malformed');
  return { kekVersion: buf.readUInt32BE(0), wrapped: buf.subarray(6, 6 + n), ciphertext: buf.subarray(6 + n) };
}

/** The KEK version a sealBlob() result was sealed under (to load newer keys before opening). */
export function blobKekVersion(sealed: Uint8Array): number {
  return sealed.length >= 4 ? Buffer.from(sealed.buffer, sealed.byteOffset, sealed.length).readUInt32BE(0) : 0;
}

export interface SealedValue {
  kek_version: number;
  wrapped_dek: Buffer;
  ciphertext: Buffer;
}

const DEK_CACHE_MAX = 10_000;

export class Keyring {
  private readonly keks = new Map<number, Buffer>();
  private current = 0;
  private auditKey: Buffer | null = null;
  private tokenKey: Buffer | null = null;
  /**
   * Unwrapped data keys, keyed by the wrapped bytes AND everything their AAD binds (KEK version,
   * vault, secret, version): a hit is exactly an unwrap that already authenticated. It saves one of
   * the two AES-GCM opens of a read; the value itself is decrypted every time. Bounded and zeroed
   * when dropped. (Whoever can read this memory can read the KEKs too: it adds no exposure.)
   */
  private readonly deks = new Map<string, Buffer>();

  constructor(private readonly master: Buffer) {}

  /** Opens sealed key rows; throws CryptoError if any row does not open under this master key. */
  load(rows: SealedKeyRow[]): void {
    this.forgetDeks();
    for (const r of rows) {
      const key = open(this.master, r.wrapped, keyAad(r.purpose, r.version));
      if (r.purpose === 'kek') {
        this.keks.set(r.version, key);
        if (r.version > this.current) this.current = r.version;
      } else if (r.purpose === 'audit') this.auditKey = key;
      else if (r.purpose === 'token') this.tokenKey = key;
    }
  }

  get currentKekVersion(): number {
    return this.current;
  }

  get kekVersions(): number[] {
    return [...this.keks.keys()].sort((a, b) => a - b);
  }

  hasKek(version: number): boolean {
    return this.keks.has(version);
  }

  /** A fresh KEK sealed for storage; the caller persists it, then calls load() with it. */
  nextKekRow(): SealedKeyRow {
    return sealKeyRow(this.master, 'kek', this.current + 1, randomBytes(KEY_BYTES));
  }

  private kek(version: number): Buffer {
    const k = this.keks.get(version);
    if (!k) throw new CryptoError(`key-encryption key version ${version} is not loaded`);
    return k;
  }

  /** Seals a value under a new random DEK wrapped by the current KEK. */
  sealValue(vaultId: string, secretId: string, version: number, plaintext: Uint8Array): SealedValue {
    const dek = randomBytes(KEY_BYTES);
    try {
      const kekVersion = this.current;
      return {
        kek_version: kekVersion,
        wrapped_dek: seal(this.kek(kekVersion), dek, dekAad(vaultId, secretId, version, kekVersion)),
        ciphertext: seal(dek, plaintext, valueAad(vaultId, secretId, version)),
      };
    } finally {
      dek.fill(0);
    }
  }

  openValue(vaultId: string, secretId: string, version: number, sealed: { kek_version: number; wrapped_dek: Uint8Array; ciphertext: Uint8Array }): Buffer {
    const w = sealed.wrapped_dek;
    const id = `${sealed.kek_version}|${vaultId}|${secretId}|${version}|${Buffer.from(w.buffer, w.byteOffset, w.length).toString('base64')}`;
    let dek = this.deks.get(id);
    if (!dek) {
      dek = open(this.kek(sealed.kek_version), w, dekAad(vaultId, secretId, version, sealed.kek_version));
      if (this.deks.size >= DEK_CACHE_MAX) this.forgetDeks();
      this.deks.set(id, dek);
    }
    return open(dek, sealed.ciphertext, valueAad(vaultId, secretId, version));
  }

  /** Zeroes and drops the cached data keys. */
  forgetDeks(): void {
    for (const d of this.deks.values()) d.fill(0);
    this.deks.clear();
  }

  /**
   * Seals a value that belongs to no secret row (a proposal's agent-supplied values): a fresh DEK
   * wrapped by the current KEK, both bound by AAD to (purpose, scope, id), so the blob opens only
   * for the row it was sealed for. Layout: u32 kek_version | u16 wrapped-DEK length | wrapped DEK | ciphertext.
   */
  sealBlob(purpose: string, scope: string, id: string, plaintext: Uint8Array): Buffer {
    const dek = randomBytes(KEY_BYTES);
    try {
      return Buffer.concat([this.blobHead(purpose, scope, id, dek), seal(dek, plaintext, aad('latchkey', 'blob', purpose, scope, id))]);
    } finally {
      dek.fill(0);
    }
  }

  openBlob(purpose: string, scope: string, id: string, sealed: Uint8Array): Buffer {
    const b = parseBlob(sealed);
    const dek = this.blobDek(purpose, scope, id, b);
    try {
      return open(dek, b.ciphertext, aad('latchkey', 'blob', purpose, scope, id));
    } finally {
      dek.fill(0);
    }
  }

  /** A sealBlob blob with its DEK re-wrapped onto the current KEK; the ciphertext is untouched. */
  rewrapBlob(purpose: string, scope: string, id: string, sealed: Uint8Array): Buffer {
    const b = parseBlob(sealed);
    const dek = this.blobDek(purpose, scope, id, b);
    try {
      return Buffer.concat([this.blobHead(purpose, scope, id, dek), b.ciphertext]);
    } finally {
      dek.fill(0);
    }
  }

  /** A blob's head: the current KEK's version and the DEK wrapped by it. */
  private blobHead(purpose: string, scope: string, id: string, dek: Buffer): Buffer {
    const v = this.current;
    const wrapped = seal(this.kek(v), dek, aad('latchkey', 'blob-dek', purpose, scope, id, v));
    const head = Buffer.alloc(6);
    head.writeUInt32BE(v, 0);
    head.writeUInt16BE(wrapped.length, 4);
    return Buffer.concat([head, wrapped]);
  }

  private blobDek(purpose: string, scope: string, id: string, b: ReturnType<typeof parseBlob>): Buffer {
    return open(this.kek(b.kekVersion), b.wrapped, aad('latchkey', 'blob-dek', purpose, scope, id, b.kekVersion));
  }

  /** Re-wraps an existing DEK onto the current KEK; the value's ciphertext is untouched. */
  rewrapDek(vaultId: string, secretId: string, version: number, sealed: { kek_version: number; wrapped_dek: Uint8Array }): { kek_version: number; wrapped_dek: Buffer } {
    const dek = open(this.kek(sealed.kek_version), sealed.wrapped_dek, dekAad(vaultId, secretId, version, sealed.kek_version));
    try {
      const v = this.current;
      return { kek_version: v, wrapped_dek: seal(this.kek(v), dek, dekAad(vaultId, secretId, version, v)) };
    } finally {
      dek.fill(0);
    }
  }

  /**
   * Every loaded key re-sealed under a new master key (rekey); the keys themselves do not change,
   * nor their creation times (`createdAt`: purpose:version -> the stored row's).
   */
  resealAll(newMaster: Uint8Array, createdAt: ReadonlyMap<string, string> = new Map()): SealedKeyRow[] {
    const row = (purpose: KeyPurpose, v: number, k: Buffer) => sealKeyRow(newMaster, purpose, v, k, createdAt.get(`${purpose}:${v}`));
    const rows: SealedKeyRow[] = [];
    for (const [v, k] of this.keks) rows.push(row('kek', v, k));
    if (this.auditKey) rows.push(row('audit', 1, this.auditKey));
    if (this.tokenKey) rows.push(row('token', 1, this.tokenKey));
    return rows;
  }

  /** Whether the stored sentinel was sealed with this keyring's master key (not replaced by a rekey since). */
  sealedWithThisMaster(sentinel: Uint8Array): boolean {
    return checkSentinel(this.master, sentinel);
  }

  /** HMAC-SHA256 under the audit key: the audit hash chain. */
  auditMac(data: string): string {
    if (!this.auditKey) throw new CryptoError('audit key is not loaded');
    return createHmac('sha256', this.auditKey).update(data, 'utf8').digest('hex');
  }

  /** HMAC-SHA256 under the token key: how tokens are stored and looked up. */
  tokenHash(token: string): string {
    if (!this.tokenKey) throw new CryptoError('token key is not loaded');
    return createHmac('sha256', this.tokenKey).update(token, 'utf8').digest('hex');
  }
}
