/**
 * AES-256-GCM with associated data. The one primitive every sealed byte in Latchkey goes through.
 *
 * Sealed layout: version byte (0x01) | 12-byte random IV | ciphertext | 16-byte tag.
 * The associated data is never stored: callers rebuild it from the row the ciphertext belongs to,
 * so a ciphertext moved to another row (other vault, secret, version or key version) fails to open.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

export const KEY_BYTES = 32;
export const IV_BYTES = 12;
export const TAG_BYTES = 16;
const FORMAT = 0x01;

export class CryptoError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CryptoError';
  }
}

function checkKey(key: Uint8Array): void {
  if (key.length !== KEY_BYTES) throw new CryptoError(`AES-256-GCM needs a ${KEY_BYTES}-byte key`);
}

/** Raw AES-256-GCM with a caller-chosen IV: used by the known-answer tests and by seal(). */
export function gcmEncrypt(key: Uint8Array, iv: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): { ciphertext: Buffer; tag: Buffer } {
  checkKey(key);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { ciphertext, tag: cipher.getAuthTag() };
}

/** Raw AES-256-GCM decrypt; throws CryptoError (never the plaintext or key) when authentication fails. */
export function gcmDecrypt(key: Uint8Array, iv: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array, aad: Uint8Array): Buffer {
  checkKey(key);
  if (tag.length !== TAG_BYTES) throw new CryptoError('authentication tag has the wrong length');
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    throw new CryptoError('decryption failed: wrong key, or the data or its context was altered');
  }
}

export function seal(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  const iv = randomBytes(IV_BYTES);
  const { ciphertext, tag } = gcmEncrypt(key, iv, plaintext, aad);
  return Buffer.concat([Buffer.of(FORMAT), iv, ciphertext, tag]);
}

export function open(key: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Buffer {
  if (sealed.length < 1 + IV_BYTES + TAG_BYTES || sealed[0] !== FORMAT) {
    throw new CryptoError('sealed data is malformed');
  }
  const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.length);
  const iv = buf.subarray(1, 1 + IV_BYTES);
  const tag = buf.subarray(buf.length - TAG_BYTES);
  const ciphertext = buf.subarray(1 + IV_BYTES, buf.length - TAG_BYTES);
  return gcmDecrypt(key, iv, ciphertext, tag, aad);
}

/**
 * Canonical associated data: length-prefixed fields, so ("ab","c") and ("a","bc") never collide.
 */
export function aad(...parts: Array<string | number>): Buffer {
  const strs = parts.map(String);
  let n = 0;
  for (const p of strs) n += 4 + Buffer.byteLength(p, 'utf8');
  const out = Buffer.allocUnsafe(n);
  let at = 0;
  for (const p of strs) {
    const len = out.write(p, at + 4, 'utf8');
    out.writeUInt32BE(len, at);
    at += 4 + len;
  }
  return out;
}
