/**
 * The crypto foundation, pure (no database): AES-256-GCM known answers and must-fail cases, the
 * envelope (DEK per version, KEK rotation and rewrap, row-bound associated data), tokens and their
 * keyed hashes, constant-time comparison, and the master-key sources (hex, base64, passphrase with
 * Argon2id, a 0600 key file).
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { aad, CryptoError, gcmDecrypt, gcmEncrypt, IV_BYTES, open, seal, TAG_BYTES } from '../src/crypto/aead.js';
import { checkSentinel, dekAad, Keyring, makeSentinel, newKeyringRows, valueAad, type SealedKeyRow } from '../src/crypto/keyring.js';
import {
  defaultKdfParams, findMasterKeySource, masterKeyPath, MasterKeyError, missingKeyMessage, parseRawKey, stretchPassphrase, wrongKeyMessage,
  writeKeyFile, type KdfParams,
} from '../src/crypto/master.js';
import { mintToken, newId, safeEqual, TOKEN_KINDS, tokenKind, uuidV7 } from '../src/crypto/tokens.js';

const hex = (s: string) => Buffer.from(s, 'hex');

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an exception');
}
const SENTINEL = 'sk_live_SENTINEL_crypto_5f0c1d2e';

// ---- AES-256-GCM known answers

/**
 * McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", Appendix B, Test Cases 13-16: the
 * 256-bit-key cases with a 96-bit IV (17 and 18 use 64- and 480-bit IVs, which Latchkey never does).
 * The same vectors appear in NIST's GCM validation material and in GNU Nettle's test suite.
 */
const K15 = 'feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308';
const IV15 = 'cafebabefacedbaddecaf888';
const P15 = 'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72' + '1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255';
const C15 = '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa' + '8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad';
const GCM_VECTORS = [
  { name: 'Test Case 13 (empty plaintext, no AAD)', key: '00'.repeat(32), iv: '00'.repeat(12), p: '', a: '', c: '', t: '530f8afbc74536b9a963b4f1c4cb738b' },
  { name: 'Test Case 14 (one zero block, no AAD)', key: '00'.repeat(32), iv: '00'.repeat(12), p: '00'.repeat(16), a: '', c: 'cea7403d4d606b6e074ec5d3baf39d18', t: 'd0d1c8a799996bf0265b98b5d48ab919' },
  { name: 'Test Case 15 (four blocks, no AAD)', key: K15, iv: IV15, p: P15, a: '', c: C15, t: 'b094dac5d93471bdec1a502270e3cc6c' },
  {
    name: 'Test Case 16 (partial last block, 20-byte AAD)', key: K15, iv: IV15, p: P15.slice(0, 120), a: 'feedfacedeadbeeffeedfacedeadbeefabaddad2',
    c: C15.slice(0, 120), t: '76fc6ece0f4e1768cddf8853bb2d551b',
  },
];

describe('AES-256-GCM known answers (GCM spec Test Cases 13-16)', () => {
  for (const v of GCM_VECTORS) {
    it(`${v.name}: encrypts to the published ciphertext and tag, and decrypts back`, () => {
      const out = gcmEncrypt(hex(v.key), hex(v.iv), hex(v.p), hex(v.a));
      expect(out.ciphertext.toString('hex')).toBe(v.c);
      expect(out.tag.toString('hex')).toBe(v.t);
      expect(gcmDecrypt(hex(v.key), hex(v.iv), hex(v.c), hex(v.t), hex(v.a)).toString('hex')).toBe(v.p);
    });
  }

  const v = GCM_VECTORS[3]!; // with AAD and a partial block
  const k = hex(v.key), iv = hex(v.iv), c = hex(v.c), t = hex(v.t), a = hex(v.a);
  const flip = (b: Buffer, i: number, bit = 1) => {
    const x = Buffer.from(b);
    x[i]! ^= bit;
    return x;
  };
  const refuses = (fn: () => unknown) => {
    const err = thrown(fn);
    expect(err).toBeInstanceOf(CryptoError);
    // the error never carries key, plaintext or ciphertext bytes
    const m = err.message;
    for (const secret of [v.key, v.p, v.c]) expect(m.toLowerCase()).not.toContain(secret.slice(0, 16));
  };

  it('refuses a flipped tag bit (first and last bit)', () => {
    refuses(() => gcmDecrypt(k, iv, c, flip(t, 0, 0x80), a));
    refuses(() => gcmDecrypt(k, iv, c, flip(t, TAG_BYTES - 1, 0x01), a));
  });

  it('refuses a flipped AAD byte, missing AAD and extra AAD', () => {
    refuses(() => gcmDecrypt(k, iv, c, t, flip(a, 0)));
    refuses(() => gcmDecrypt(k, iv, c, t, flip(a, a.length - 1, 0x80)));
    refuses(() => gcmDecrypt(k, iv, c, t, Buffer.alloc(0)));
    refuses(() => gcmDecrypt(k, iv, c, t, Buffer.concat([a, Buffer.of(0)])));
  });

  it('refuses a flipped ciphertext byte, a truncated or extended ciphertext', () => {
    for (const i of [0, 17, c.length - 1]) refuses(() => gcmDecrypt(k, iv, flip(c, i), t, a));
    refuses(() => gcmDecrypt(k, iv, c.subarray(0, c.length - 1), t, a));
    refuses(() => gcmDecrypt(k, iv, Buffer.concat([c, Buffer.of(0)]), t, a));
  });

  it('refuses a truncated tag (even a prefix of the right one) and an empty tag', () => {
    for (const n of [15, 12, 8, 4, 1, 0]) refuses(() => gcmDecrypt(k, iv, c, t.subarray(0, n), a));
  });

  it('refuses a wrong key, a wrong IV and a key of the wrong size', () => {
    refuses(() => gcmDecrypt(flip(k, 31), iv, c, t, a));
    refuses(() => gcmDecrypt(randomBytes(32), iv, c, t, a));
    refuses(() => gcmDecrypt(k, flip(iv, 11), c, t, a));
    refuses(() => gcmDecrypt(k.subarray(0, 16), iv, c, t, a));
    refuses(() => gcmEncrypt(k.subarray(0, 16), iv, Buffer.from('x'), a));
  });
});

// ---- seal / open (the stored format)

describe('seal and open', () => {
  const key = randomBytes(32);
  const ad = aad('latchkey', 'test', 'row-1');

  it('uses a fresh random 96-bit IV per encryption and round-trips', () => {
    const a = seal(key, Buffer.from(SENTINEL), ad);
    const b = seal(key, Buffer.from(SENTINEL), ad);
    expect(a.length).toBe(1 + IV_BYTES + SENTINEL.length + TAG_BYTES);
    expect(a[0]).toBe(0x01);
    expect(a.subarray(1, 1 + IV_BYTES).equals(b.subarray(1, 1 + IV_BYTES))).toBe(false);
    expect(a.equals(b)).toBe(false);
    expect(a.includes(Buffer.from(SENTINEL))).toBe(false);
    expect(open(key, a, ad).toString()).toBe(SENTINEL);
    expect(open(key, b, ad).toString()).toBe(SENTINEL);
    // 200 IVs, no repeats
    const ivs = new Set(Array.from({ length: 200 }, () => seal(key, Buffer.of(1), ad).subarray(1, 1 + IV_BYTES).toString('hex')));
    expect(ivs.size).toBe(200);
  });

  it('the stored IV, ciphertext and tag are plain AES-256-GCM under the key and AAD', () => {
    const s = seal(key, Buffer.from(SENTINEL), ad);
    const iv = s.subarray(1, 1 + IV_BYTES);
    const again = gcmEncrypt(key, iv, Buffer.from(SENTINEL), ad);
    expect(Buffer.concat([Buffer.of(1), iv, again.ciphertext, again.tag]).equals(s)).toBe(true);
  });

  it('refuses every single-bit change anywhere in the sealed bytes, a wrong key, other AAD, truncation and a bad format byte', () => {
    const s = seal(key, Buffer.from(SENTINEL), ad);
    for (let i = 0; i < s.length; i++) {
      const x = Buffer.from(s);
      x[i]! ^= 1 << (i % 8);
      expect(() => open(key, x, ad), `byte ${i}`).toThrow(CryptoError);
    }
    expect(() => open(randomBytes(32), s, ad)).toThrow(CryptoError);
    expect(() => open(key, s, aad('latchkey', 'test', 'row-2'))).toThrow(CryptoError);
    expect(() => open(key, s.subarray(0, s.length - 1), ad)).toThrow(CryptoError);
    expect(() => open(key, s.subarray(0, 1 + IV_BYTES + TAG_BYTES - 1), ad)).toThrow(/malformed/);
    expect(() => open(key, Buffer.alloc(0), ad)).toThrow(/malformed/);
  });

  it('associated data is length-prefixed: field boundaries cannot be shifted', () => {
    expect(aad('ab', 'c').equals(aad('a', 'bc'))).toBe(false);
    expect(aad('a', '').equals(aad('a'))).toBe(false);
    expect(aad(1, 2).equals(aad('1', '2'))).toBe(true);
    const s = seal(key, Buffer.from('v'), aad('vault1', 'secret'));
    expect(() => open(key, s, aad('vault', '1secret'))).toThrow(CryptoError);
  });
});

// ---- the keyring and the envelope

function freshKeyring(master = randomBytes(32)): { kr: Keyring; rows: SealedKeyRow[]; master: Buffer } {
  const rows = newKeyringRows(master);
  const kr = new Keyring(master);
  kr.load(rows);
  return { kr, rows, master };
}

describe('keyring and envelope encryption', () => {
  it('each secret version gets its own random DEK; the value opens only with its own wrapped DEK', () => {
    const { kr } = freshKeyring();
    const a = kr.sealValue('vault-a', 'sec-1', 1, Buffer.from(SENTINEL));
    const b = kr.sealValue('vault-a', 'sec-1', 1, Buffer.from(SENTINEL));
    expect(a.kek_version).toBe(1);
    expect(a.wrapped_dek.equals(b.wrapped_dek)).toBe(false);
    expect(a.ciphertext.equals(b.ciphertext)).toBe(false);
    expect(a.ciphertext.includes(Buffer.from(SENTINEL))).toBe(false);
    expect(kr.openValue('vault-a', 'sec-1', 1, a).toString()).toBe(SENTINEL);
    expect(kr.openValue('vault-a', 'sec-1', 1, b).toString()).toBe(SENTINEL);
    // a's ciphertext with b's DEK: another key
    expect(() => kr.openValue('vault-a', 'sec-1', 1, { ...a, wrapped_dek: b.wrapped_dek })).toThrow(CryptoError);
  });

  it('a data key unwrapped once is reused only for the very same wrapped bytes and row; altered bytes still fail', () => {
    const { kr } = freshKeyring();
    const sealed = kr.sealValue('vault-a', 'sec-1', 1, Buffer.from(SENTINEL));
    for (let i = 0; i < 3; i++) expect(kr.openValue('vault-a', 'sec-1', 1, sealed).toString()).toBe(SENTINEL);
    const flip = (b: Buffer, at: number) => {
      const c = Buffer.from(b);
      c[at]! ^= 0x01;
      return c;
    };
    expect(() => kr.openValue('vault-a', 'sec-1', 1, { ...sealed, wrapped_dek: flip(sealed.wrapped_dek, 20) })).toThrow(CryptoError);
    expect(() => kr.openValue('vault-a', 'sec-1', 1, { ...sealed, ciphertext: flip(sealed.ciphertext, 20) })).toThrow(CryptoError);
    kr.forgetDeks();
    expect(kr.openValue('vault-a', 'sec-1', 1, sealed).toString()).toBe(SENTINEL);
  });

  it('a ciphertext moved to another row (vault, secret or version) fails to open', () => {
    const { kr } = freshKeyring();
    const sealed = kr.sealValue('vault-a', 'sec-1', 3, Buffer.from(SENTINEL));
    expect(kr.openValue('vault-a', 'sec-1', 3, sealed).toString()).toBe(SENTINEL);
    for (const [v, s, n] of [['vault-b', 'sec-1', 3], ['vault-a', 'sec-2', 3], ['vault-a', 'sec-1', 2], ['vault-a', 'sec-1', 4]] as const) {
      expect(() => kr.openValue(v, s, n, sealed), `${v}/${s}/${n}`).toThrow(CryptoError);
    }
    // also at the value layer alone: a value sealed with valueAad of one row, opened with another's
    const dek = randomBytes(32);
    const value = seal(dek, Buffer.from(SENTINEL), valueAad('vault-a', 'sec-1', 3));
    expect(open(dek, value, valueAad('vault-a', 'sec-1', 3)).toString()).toBe(SENTINEL);
    expect(() => open(dek, value, valueAad('vault-b', 'sec-1', 3))).toThrow(CryptoError);
    expect(() => open(dek, value, valueAad('vault-a', 'sec-9', 3))).toThrow(CryptoError);
    expect(() => open(dek, value, valueAad('vault-a', 'sec-1', 1))).toThrow(CryptoError);
    // and two rows swapping their sealed columns both fail
    const other = kr.sealValue('vault-a', 'sec-2', 1, Buffer.from('other'));
    expect(() => kr.openValue('vault-a', 'sec-2', 1, sealed)).toThrow(CryptoError);
    expect(() => kr.openValue('vault-a', 'sec-1', 3, other)).toThrow(CryptoError);
    // the DEK is bound to the KEK version too: relabelling kek_version fails
    expect(() => kr.openValue('vault-a', 'sec-1', 3, { ...sealed, kek_version: 2 })).toThrow(CryptoError);
  });

  it('a DEK wrapped under KEK v1 still opens after a rotation; rewrap moves it to the newest KEK, ciphertext untouched', () => {
    const { kr, master } = freshKeyring();
    const v1 = kr.sealValue('va', 'sid', 1, Buffer.from(SENTINEL));
    expect(v1.kek_version).toBe(1);
    const row2 = kr.nextKekRow();
    expect(row2).toMatchObject({ purpose: 'kek', version: 2 });
    kr.load([row2]);
    expect(kr.currentKekVersion).toBe(2);
    expect(kr.kekVersions).toEqual([1, 2]);
    // old data still opens
    expect(kr.openValue('va', 'sid', 1, v1).toString()).toBe(SENTINEL);
    // new writes use v2
    const v2 = kr.sealValue('va', 'sid', 2, Buffer.from('new'));
    expect(v2.kek_version).toBe(2);
    // rewrap
    const re = kr.rewrapDek('va', 'sid', 1, v1);
    expect(re.kek_version).toBe(2);
    expect(re.wrapped_dek.equals(v1.wrapped_dek)).toBe(false);
    expect(kr.openValue('va', 'sid', 1, { ...re, ciphertext: v1.ciphertext }).toString()).toBe(SENTINEL);
    // the rewrapped DEK is really under KEK v2: a keyring holding only v1 cannot open it
    const onlyV1 = new Keyring(master);
    onlyV1.load(kr.resealAll(master).filter((r) => r.purpose !== 'kek' || r.version === 1));
    expect(() => onlyV1.openValue('va', 'sid', 1, { ...re, ciphertext: v1.ciphertext })).toThrow(/version 2 is not loaded/);
    expect(onlyV1.openValue('va', 'sid', 1, v1).toString()).toBe(SENTINEL);
    // rewrap is bound to the row as well
    expect(() => kr.rewrapDek('vb', 'sid', 1, v1)).toThrow(CryptoError);
    // the DEK AAD names the KEK version
    expect(dekAad('va', 'sid', 1, 1).equals(dekAad('va', 'sid', 1, 2))).toBe(false);
  });

  it('key rows open only under the master key they were sealed with, and only as their own purpose/version', () => {
    const { rows, master } = freshKeyring();
    expect(rows.map((r) => `${r.purpose}:${r.version}`).sort()).toEqual(['audit:1', 'kek:1', 'token:1']);
    expect(() => new Keyring(randomBytes(32)).load(rows)).toThrow(CryptoError);
    const kek = rows.find((r) => r.purpose === 'kek')!;
    expect(() => new Keyring(master).load([{ ...kek, version: 2 }])).toThrow(CryptoError);
    expect(() => new Keyring(master).load([{ ...kek, purpose: 'token' }])).toThrow(CryptoError);
  });

  it('resealAll (rekey) re-seals the same keys under a new master: old data still opens, the old master no longer opens the rows', () => {
    const { kr, master } = freshKeyring();
    kr.load([kr.nextKekRow()]);
    const sealed = kr.sealValue('va', 'sid', 1, Buffer.from(SENTINEL));
    const mac = kr.auditMac('chain');
    const th = kr.tokenHash('lk_pat_x');
    const newMaster = randomBytes(32);
    const rows = kr.resealAll(newMaster);
    expect(rows.map((r) => `${r.purpose}:${r.version}`).sort()).toEqual(['audit:1', 'kek:1', 'kek:2', 'token:1']);
    const kr2 = new Keyring(newMaster);
    kr2.load(rows);
    expect(kr2.openValue('va', 'sid', 1, sealed).toString()).toBe(SENTINEL);
    expect(kr2.auditMac('chain')).toBe(mac);
    expect(kr2.tokenHash('lk_pat_x')).toBe(th);
    expect(() => new Keyring(master).load(rows)).toThrow(CryptoError);
  });

  it('the sentinel recognises the master key it was made with and nothing else', () => {
    const m = randomBytes(32);
    const s = makeSentinel(m);
    expect(checkSentinel(m, s)).toBe(true);
    expect(checkSentinel(randomBytes(32), s)).toBe(false);
    const x = Buffer.from(s);
    x[x.length - 1]! ^= 1;
    expect(checkSentinel(m, x)).toBe(false);
    expect(checkSentinel(m, Buffer.alloc(3))).toBe(false);
  });

  it('sealBlob binds a blob to its purpose, scope and id', () => {
    const { kr } = freshKeyring();
    const b = kr.sealBlob('proposal', 'vault-a', 'p1', Buffer.from(SENTINEL));
    expect(kr.openBlob('proposal', 'vault-a', 'p1', b).toString()).toBe(SENTINEL);
    expect(() => kr.openBlob('proposal', 'vault-a', 'p2', b)).toThrow(CryptoError);
    expect(() => kr.openBlob('proposal', 'vault-b', 'p1', b)).toThrow(CryptoError);
    expect(() => kr.openBlob('other', 'vault-a', 'p1', b)).toThrow(CryptoError);
    expect(() => kr.openBlob('proposal', 'vault-a', 'p1', b.subarray(0, 5))).toThrow(/malformed/);
  });
});

// ---- tokens

describe('tokens', () => {
  it('are random, at least 256 bits, prefixed by kind', () => {
    const prefixes = { pat: 'lk_pat_', agent: 'lk_agent_', sess: 'lk_sess_', appr: 'lk_appr_' } as const;
    for (const kind of TOKEN_KINDS) {
      const seen = new Set<string>();
      for (let i = 0; i < 50; i++) {
        const t = mintToken(kind);
        expect(t.startsWith(prefixes[kind])).toBe(true);
        const body = t.slice(prefixes[kind].length);
        expect(Buffer.from(body, 'base64url').length * 8).toBeGreaterThanOrEqual(256);
        expect(Buffer.from(body, 'base64url').toString('base64url')).toBe(body);
        expect(tokenKind(t)).toBe(kind);
        seen.add(t);
      }
      expect(seen.size).toBe(50);
    }
    expect(Object.keys(prefixes).sort()).toEqual([...TOKEN_KINDS].sort());
  });

  it('tokenKind recognises well-formed tokens only', () => {
    const t = mintToken('agent');
    for (const bad of ['', 'lk_agent_', t.slice(0, -1), t + 'A', t.replace('lk_agent_', 'lk_root_'), t.replace('lk_', 'LK_'), ` ${t}`, t.slice(0, -1) + '!', 'Bearer ' + t]) {
      expect(tokenKind(bad), bad).toBeNull();
    }
  });

  it('tokenHash is keyed: deterministic within a keyring, different under another keyring, not a plain hash', () => {
    const a = freshKeyring();
    const b = freshKeyring();
    const t = mintToken('pat');
    const h = a.kr.tokenHash(t);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(a.kr.tokenHash(t)).toBe(h);
    expect(b.kr.tokenHash(t)).not.toBe(h);
    expect(h).not.toBe(createHash('sha256').update(t).digest('hex'));
    expect(h).not.toContain(t.slice(7, 20));
    expect(a.kr.tokenHash(mintToken('pat'))).not.toBe(h);
    // the same keyring reloaded from its sealed rows gives the same hash (tokens survive restarts)
    const again = new Keyring(a.master);
    again.load(a.rows);
    expect(again.tokenHash(t)).toBe(h);
    // the audit MAC uses another key than the token hash
    expect(a.kr.auditMac(t)).not.toBe(h);
    expect(() => new Keyring(randomBytes(32)).tokenHash(t)).toThrow(/not loaded/);
  });

  it('safeEqual compares exactly, on any lengths, without throwing', () => {
    const x = 'a'.repeat(64);
    expect(safeEqual(x, x)).toBe(true);
    expect(safeEqual(x, 'a'.repeat(63) + 'b')).toBe(false);
    expect(safeEqual(x, 'b' + 'a'.repeat(63))).toBe(false);
    expect(safeEqual(x, x.slice(1))).toBe(false);
    expect(safeEqual(x, x + 'a')).toBe(false);
    expect(safeEqual('', '')).toBe(true);
    expect(safeEqual('', 'a')).toBe(false);
    expect(safeEqual('é', 'é')).toBe(true);
    expect(safeEqual('é', 'e')).toBe(false);
    // same UTF-16 length, different byte lengths
    expect(safeEqual('éa', 'ab')).toBe(false);
  });

  it('newId is random, URL-safe and never starts with a dash (CLI arguments)', () => {
    const ids = new Set(Array.from({ length: 2000 }, () => newId()));
    expect(ids.size).toBe(2000);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{24}$/);
  });
});

// ---- master key sources

describe('audit event ids (UUID v7)', () => {
  it('carry version 7 and the RFC 9562 variant, the time in their first 48 bits, and sort by time', () => {
    const t = Date.parse('2026-11-30T04:00:00.000Z');
    const id = uuidV7(t);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16)).toBe(t);
    const ids = [uuidV7(t), uuidV7(t + 1), uuidV7(t + 1000), uuidV7(t + 86_400_000)];
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(Array.from({ length: 10_000 }, () => uuidV7(t))).size).toBe(10_000);
  });
});

describe('master key', () => {
  const dirs: string[] = [];
  const tmp = () => {
    const d = mkdtempSync(join(tmpdir(), 'latchkey-master-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const key = randomBytes(32);

  it('parses 32 bytes as hex, base64 (padded or not) and base64url; anything else is not a raw key', () => {
    expect(parseRawKey(key.toString('hex'))!.equals(key)).toBe(true);
    expect(parseRawKey(key.toString('hex').toUpperCase())!.equals(key)).toBe(true);
    expect(parseRawKey(key.toString('base64'))!.equals(key)).toBe(true);
    expect(parseRawKey(key.toString('base64').replace(/=$/, ''))!.equals(key)).toBe(true);
    expect(parseRawKey(key.toString('base64url'))!.equals(key)).toBe(true);
    expect(parseRawKey(`  ${key.toString('base64')}\n`)!.equals(key)).toBe(true);
    for (const bad of [key.toString('hex').slice(2), key.toString('hex') + '00', randomBytes(31).toString('base64'), randomBytes(33).toString('base64'), 'correct horse battery staple', '']) {
      expect(parseRawKey(bad), bad).toBeNull();
    }
  });

  it('LATCHKEY_MASTER_KEY: hex, base64, else a passphrase of at least 12 characters; it wins over the key file', () => {
    const home = tmp();
    writeKeyFile(masterKeyPath(home), randomBytes(32));
    expect(findMasterKeySource(home, { LATCHKEY_MASTER_KEY: key.toString('hex') })).toEqual({ kind: 'raw', origin: 'env', key });
    expect(findMasterKeySource(home, { LATCHKEY_MASTER_KEY: key.toString('base64') })).toEqual({ kind: 'raw', origin: 'env', key });
    expect(findMasterKeySource(home, { LATCHKEY_MASTER_KEY: 'a long enough passphrase' })).toEqual({ kind: 'passphrase', origin: 'env', passphrase: 'a long enough passphrase' });
    const e = thrown(() => findMasterKeySource(home, { LATCHKEY_MASTER_KEY: 'elevenchars' }));
    expect(e).toBeInstanceOf(MasterKeyError);
    expect(e.message).toContain('LATCHKEY_MASTER_KEY');
    expect(e.message).not.toContain('elevenchars');
  });

  it('the key file is written 0600 and read; a permissive mode is refused; no file and no variable is null', () => {
    const home = tmp();
    expect(findMasterKeySource(home, {})).toBeNull();
    const path = masterKeyPath(home);
    expect(path).toBe(join(home, 'master.key'));
    writeKeyFile(path, key);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(findMasterKeySource(home, {})).toEqual({ kind: 'raw', origin: 'file', key, path });
    expect(readdirSync(home)).toEqual(['master.key']); // no temp file left behind
    for (const mode of [0o644, 0o640, 0o604, 0o660, 0o666]) {
      chmodSync(path, mode);
      const e = thrown(() => findMasterKeySource(home, {}));
      expect(e, mode.toString(8)).toBeInstanceOf(MasterKeyError);
      expect(e.message).toContain(`chmod 600 ${path}`);
      expect(e.message).not.toContain(key.toString('base64'));
    }
    chmodSync(path, 0o400);
    expect(findMasterKeySource(home, {})).toMatchObject({ kind: 'raw', origin: 'file' });
    // a hex key file is accepted too; garbage is refused without echoing it
    writeFileSync(path, key.toString('hex') + '\n', { mode: 0o600 });
    chmodSync(path, 0o600);
    expect(findMasterKeySource(home, {})).toMatchObject({ key });
    writeFileSync(path, 'not a key at all\n');
    expect(() => findMasterKeySource(home, {})).toThrow(/does not hold a 32-byte key/);
  });

  it('a passphrase is stretched with Argon2id: deterministic for the stored salt and parameters, different for another salt or passphrase', async () => {
    const p = defaultKdfParams();
    expect(p).toMatchObject({ alg: 'argon2id', memoryCost: expect.any(Number), timeCost: expect.any(Number), parallelism: expect.any(Number) });
    expect(p.memoryCost).toBeGreaterThanOrEqual(19456); // OWASP minimum for Argon2id
    expect(Buffer.from(p.salt, 'base64').length).toBeGreaterThanOrEqual(16);
    expect(defaultKdfParams().salt).not.toBe(p.salt);
    const fast: KdfParams = { ...p, memoryCost: 8192, timeCost: 2 };
    const k1 = await stretchPassphrase('correct horse battery staple', fast);
    expect(k1.length).toBe(32);
    expect((await stretchPassphrase('correct horse battery staple', fast)).equals(k1)).toBe(true);
    expect((await stretchPassphrase('correct horse battery stapler', fast)).equals(k1)).toBe(false);
    expect((await stretchPassphrase('correct horse battery staple', { ...fast, salt: randomBytes(16).toString('base64') })).equals(k1)).toBe(false);
    expect((await stretchPassphrase('correct horse battery staple', { ...fast, timeCost: 3 })).equals(k1)).toBe(false);
  });

  it('the missing-key and wrong-key messages say what to do and never contain a key', () => {
    const m = missingKeyMessage('/data/lk');
    expect(m).toContain('LATCHKEY_MASTER_KEY');
    expect(m).toContain('/data/lk/master.key');
    const w = wrongKeyMessage('LATCHKEY_MASTER_KEY');
    expect(w).toMatch(/does not match the key this data was sealed with/);
    expect(w).toMatch(/cannot be recovered/);
  });
});
