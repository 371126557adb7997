/**
 * Master-key sources, in order: LATCHKEY_MASTER_KEY (32 bytes as hex or base64, otherwise a
 * passphrase stretched once with Argon2id), then <home>/master.key (mode 0600, base64).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { writeFileSync, renameSync, openSync, fsyncSync, closeSync, linkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { KEY_BYTES } from './aead.js';

export interface KdfParams {
  alg: 'argon2id';
  salt: string; // base64
  memoryCost: number; // KiB
  timeCost: number;
  parallelism: number;
}

export type MasterKeySource =
  | { kind: 'raw'; origin: 'env' | 'file'; key: Buffer; path?: string }
  | { kind: 'passphrase'; origin: 'env'; passphrase: string };

export class MasterKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MasterKeyError';
  }
}

export const MASTER_KEY_FILE = 'master.key';
export const MIN_PASSPHRASE = 12;

/** Parses a 32-byte key given as 64 hex digits or base64/base64url; null when it is neither. */
export function parseRawKey(text: string): Buffer | null {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(t)) {
    const b = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (b.length === KEY_BYTES) return b;
  }
  return null;
}

export function masterKeyPath(home: string): string {
  return join(home, MASTER_KEY_FILE);
}

/** Finds the master key source, or null when neither the variable nor the key file is there. */
export function findMasterKeySource(home: string, env: NodeJS.ProcessEnv = process.env): MasterKeySource | null {
  const fromEnv = env.LATCHKEY_MASTER_KEY;
  if (fromEnv !== undefined && fromEnv !== '') {
    const raw = parseRawKey(fromEnv);
    if (raw) return { kind: 'raw', origin: 'env', key: raw };
    if (fromEnv.length < MIN_PASSPHRASE) {
      throw new MasterKeyError(
        `LATCHKEY_MASTER_KEY is neither a 32-byte key (64 hex digits or base64) nor a passphrase of at least ${MIN_PASSPHRASE} characters`,
      );
    }
    return { kind: 'passphrase', origin: 'env', passphrase: fromEnv };
  }
  const path = masterKeyPath(home);
  if (!existsSync(path)) return null;
  const st = statSync(path);
  if ((st.mode & 0o077) !== 0) {
    throw new MasterKeyError(`${path} is readable by other users (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${path}`);
  }
  const raw = parseRawKey(readFileSync(path, 'utf8'));
  if (!raw) throw new MasterKeyError(`${path} does not hold a 32-byte key in base64 or hex`);
  return { kind: 'raw', origin: 'file', key: raw, path };
}

export function missingKeyMessage(home: string): string {
  return (
    'no master key: this data was sealed with a master key that is not available. ' +
    `Set LATCHKEY_MASTER_KEY to the key (or passphrase) it was created with, or restore the key file ${masterKeyPath(home)}`
  );
}

export function wrongKeyMessage(origin: string): string {
  return (
    `the master key from ${origin} does not match the key this data was sealed with; ` +
    'refusing to start (nothing was written). Data sealed with another key cannot be recovered without that key.'
  );
}

export function defaultKdfParams(): KdfParams {
  return { alg: 'argon2id', salt: randomBytes(16).toString('base64'), memoryCost: 65536, timeCost: 3, parallelism: 1 };
}

/**
 * The bounds stored KDF parameters must keep: they come from the database, and whoever can write
 * there must not make start-up hang or take gigabytes (lower values only fail the key check).
 */
const KDF_BOUNDS = { memoryCost: [8 * 1024, 1024 * 1024], timeCost: [1, 64], parallelism: [1, 16] } as const;

/** Stretches a passphrase into a 32-byte key with Argon2id (run once at start-up). */
export async function stretchPassphrase(passphrase: string, p: KdfParams): Promise<Buffer> {
  for (const [k, [lo, hi]] of Object.entries(KDF_BOUNDS)) {
    const v = (p as unknown as Record<string, unknown>)[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
      throw new Error(`the stored key-derivation parameter ${k} (${String(v).slice(0, 20)}) is outside ${lo}..${hi}: the database was altered or is not Latchkey's`);
    }
  }
  if (p.alg !== 'argon2id' || typeof p.salt !== 'string' || Buffer.from(p.salt, 'base64').length < 16) {
    throw new Error('the stored key-derivation parameters are not Argon2id with a 16-byte salt: the database was altered or is not Latchkey\'s');
  }
  const { hashRaw, Algorithm } = await import('@node-rs/argon2');
  const out = await hashRaw(passphrase, {
    algorithm: Algorithm.Argon2id,
    salt: Buffer.from(p.salt, 'base64'),
    memoryCost: p.memoryCost,
    timeCost: p.timeCost,
    parallelism: p.parallelism,
    outputLen: KEY_BYTES,
  });
  return Buffer.from(out);
}

/**
 * Writes a key file atomically with mode 0600 (write to a temp file, fsync, then rename over
 * `path`). `exclusive`: never replace an existing file (a hard link, which fails if `path` exists):
 * two processes initialising one data dir at once must not each put their own key there.
 */
export function writeKeyFile(path: string, key: Uint8Array, opts: { exclusive?: boolean } = {}): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, Buffer.from(key).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
  const fd = openSync(tmp, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  if (!opts.exclusive) return renameSync(tmp, path);
  try {
    linkSync(tmp, path);
  } finally {
    unlinkSync(tmp);
  }
}

export function generateMasterKey(): Buffer {
  return randomBytes(KEY_BYTES);
}
