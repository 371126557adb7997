/**
 * The instance CA of the forward proxy: an ECDSA P-256 root whose private key is sealed under the
 * keyring (Keyring.sealBlob) and stored in the database, so every replica on one database presents
 * leaves from the same root. Created on first use in one transaction; a concurrent creator (another
 * replica) loses on the primary key and reads the winner's row.
 *
 * Leaves: one per host (SAN dns:<host> or ip:<addr>), valid 24 h (back-dated 1 h for clock skew),
 * with a fresh P-256 key generated once per host and kept while the host stays in the LRU cache.
 * Generation is asynchronous (WebCrypto), de-duplicated per host, and renewed in the background
 * once a cached leaf enters its last hours, so a request never waits for a renewal.
 */
import { randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import type * as X509 from '@peculiar/x509';
import { blobKekVersion } from '../crypto/keyring.js';
import type { Core } from '../core/core.js';
import { systemContext } from '../core/principal.js';
import { CA_SEAL_PURPOSE } from '../core/keys.js';
import type { ProxyCaRow } from '../store/store.js';

/**
 * @peculiar/x509 (and the tsyringe + Reflect metadata it needs) is loaded on first use, not at
 * start-up: it costs ~0.2 s of module loading that a server without CONNECT traffic never needs.
 */
let x509lib: typeof X509 | null = null;
async function x509(): Promise<typeof X509> {
  if (!x509lib) {
    await import('reflect-metadata'); // tsyringe resolves the library's algorithms through it
    const lib = await import('@peculiar/x509');
    lib.cryptoProvider.set(webcrypto as never);
    x509lib = lib;
  }
  return x509lib;
}

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const subtle = webcrypto.subtle;
const KEY_ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN_ALG = { name: 'ECDSA', hash: 'SHA-256' } as const;

export const CA_ROW_ID = 'instance';
const CA_VALID_YEARS = 10;
const HOUR = 3_600_000;
const SKEW_MS = HOUR;

export interface CaOptions {
  /** leaf validity (default 24 h) */
  leafValidityMs?: number;
  /** renew a cached leaf in the background when less than this is left (default 4 h) */
  renewBeforeMs?: number;
  /** hosts kept in the leaf cache (default 1000) */
  maxLeaves?: number;
}

export interface Leaf {
  host: string;
  certPem: string;
  keyPem: string;
  notAfter: Date;
  context: SecureContext;
}

interface LoadedCa {
  row: ProxyCaRow;
  cert: X509.X509Certificate;
  key: CryptoKey;
}

interface LeafEntry {
  leaf: Leaf;
  /** the host's key pair, kept across renewals */
  keys: CryptoKeyPair;
  keyPem: string;
  renewing: Promise<void> | null;
}

/** Host names and IP literals a leaf may be made for (the CONNECT target, already matched by a service). */
const HOST_RE = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/** Lower-cases, strips IPv6 brackets and a trailing dot; null when it is no host name or IP literal. */
export function leafHost(host: string): string | null {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (isIP(h)) return h;
  return HOST_RE.test(h) ? h : null;
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01; // positive, and no leading zero byte
  return b.toString('hex');
}

function pem(label: string, der: ArrayBuffer | Uint8Array): string {
  const b64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

export class InstanceCa {
  private loading: Promise<LoadedCa> | null = null;
  private readonly leaves = new Map<string, LeafEntry>();
  private readonly pending = new Map<string, Promise<LeafEntry>>();
  private readonly leafValidityMs: number;
  private readonly renewBeforeMs: number;
  private readonly maxLeaves: number;
  /** counters for tests and metrics */
  readonly stats = { generated: 0, renewed: 0, hits: 0 };

  constructor(private readonly core: Core, opts: CaOptions = {}) {
    this.leafValidityMs = opts.leafValidityMs ?? 24 * HOUR;
    this.renewBeforeMs = Math.min(opts.renewBeforeMs ?? 4 * HOUR, this.leafValidityMs / 2);
    this.maxLeaves = opts.maxLeaves ?? 1000;
  }

  /** The CA (loaded from the database, or created there on first use). */
  ready(): Promise<LoadedCa> {
    if (!this.loading) {
      this.loading = this.loadOrCreate();
      // a failure (database down) is not remembered: the next call tries again
      this.loading.catch(() => { this.loading = null; });
    }
    return this.loading;
  }

  /** The CA certificate (PEM): public, what clients add to their trust store. */
  async certPem(): Promise<string> {
    return (await this.ready()).row.cert_pem;
  }

  private async loadOrCreate(): Promise<LoadedCa> {
    const existing = await this.core.store.getProxyCa();
    if (existing) return this.open(existing);
    const created = await this.generateCa();
    try {
      const row = await this.core.write(systemContext(), async (s, ev) => {
        const raced = await s.getProxyCa();
        if (raced) return raced;
        await s.insertProxyCa(created.row);
        ev.push({ action: 'ca.create', target: 'proxy-ca', details: { algorithm: 'ECDSA P-256', fingerprint_sha256: created.fingerprint, not_after: created.cert.notAfter.toISOString() } });
        return created.row;
      });
      return row === created.row ? { row, cert: created.cert, key: created.key } : this.open(row);
    } catch (err) {
      // another replica inserted its CA between our read and our insert (a unique violation, or on
      // SQLite a write conflict with the transaction that did): use the one that won
      const winner = await this.core.store.getProxyCa().catch(() => null);
      if (winner) return this.open(winner);
      throw err;
    }
  }

  private async generateCa(): Promise<LoadedCa & { fingerprint: string }> {
    const x = await x509();
    const keys = (await subtle.generateKey(KEY_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
    const now = Date.now();
    const notAfter = new Date(now);
    notAfter.setUTCFullYear(notAfter.getUTCFullYear() + CA_VALID_YEARS);
    const name = `CN=Latchkey proxy CA ${randomBytes(4).toString('hex')}, O=Latchkey`;
    const cert = await x.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name,
      notBefore: new Date(now - SKEW_MS),
      notAfter,
      signingAlgorithm: SIGN_ALG,
      keys,
      extensions: [
        new x.BasicConstraintsExtension(true, 0, true),
        new x.KeyUsagesExtension(x.KeyUsageFlags.keyCertSign | x.KeyUsageFlags.cRLSign | x.KeyUsageFlags.digitalSignature, true),
        await x.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const pkcs8 = Buffer.from(await subtle.exportKey('pkcs8', keys.privateKey));
    try {
      const sealed = this.core.keyring.sealBlob(CA_SEAL_PURPOSE, CA_ROW_ID, CA_ROW_ID, pkcs8);
      const row: ProxyCaRow = { id: CA_ROW_ID, cert_pem: cert.toString('pem') + '\n', sealed_key: sealed, created_at: new Date(now).toISOString() };
      // a non-extractable signing key from here on
      const key = await subtle.importKey('pkcs8', pkcs8, KEY_ALG, false, ['sign']);
      const fingerprint = Buffer.from(await cert.getThumbprint('SHA-256')).toString('hex');
      return { row, cert, key, fingerprint };
    } finally {
      pkcs8.fill(0);
    }
  }

  private async open(row: ProxyCaRow): Promise<LoadedCa> {
    // sealed under a KEK another replica made after we started: load it first
    if (!this.core.keyring.hasKek(blobKekVersion(row.sealed_key))) await this.core.keys.refresh();
    const x = await x509();
    const pkcs8 = this.core.keyring.openBlob(CA_SEAL_PURPOSE, row.id, row.id, row.sealed_key);
    try {
      const key = await subtle.importKey('pkcs8', pkcs8, KEY_ALG, false, ['sign']);
      return { row, cert: new x.X509Certificate(row.cert_pem), key };
    } finally {
      pkcs8.fill(0);
    }
  }

  /** The TLS context presenting a leaf for `host` (cached; renewed in the background near expiry). */
  async secureContext(host: string): Promise<SecureContext> {
    return (await this.leaf(host)).context;
  }

  /** A leaf certificate for `host` (a DNS name or an IP literal). */
  async leaf(host: string): Promise<Leaf> {
    const h = leafHost(host);
    if (!h) throw new Error('not a host name or IP address');
    const now = Date.now();
    const cached = this.leaves.get(h);
    if (cached && cached.leaf.notAfter.getTime() > now + 60_000) {
      this.stats.hits++;
      // LRU: most recently used last
      this.leaves.delete(h);
      this.leaves.set(h, cached);
      if (cached.leaf.notAfter.getTime() - now < this.renewBeforeMs && !cached.renewing) {
        cached.renewing = this.issue(h, cached).then(
          () => { cached.renewing = null; this.stats.renewed++; },
          () => { cached.renewing = null; },
        );
      }
      return cached.leaf;
    }
    let p = this.pending.get(h);
    if (!p) {
      p = this.create(h, cached ?? null).finally(() => this.pending.delete(h));
      this.pending.set(h, p);
    }
    return (await p).leaf;
  }

  private async create(h: string, expired: LeafEntry | null): Promise<LeafEntry> {
    let entry = expired;
    if (!entry) {
      const keys = (await subtle.generateKey(KEY_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
      const keyPem = pem('PRIVATE KEY', await subtle.exportKey('pkcs8', keys.privateKey));
      entry = { leaf: null as unknown as Leaf, keys, keyPem, renewing: null };
    }
    await this.issue(h, entry);
    this.stats.generated++;
    this.leaves.delete(h);
    this.leaves.set(h, entry);
    while (this.leaves.size > this.maxLeaves) this.leaves.delete(this.leaves.keys().next().value!);
    return entry;
  }

  /** Signs a new leaf for the entry's key and swaps it in. */
  private async issue(h: string, entry: LeafEntry): Promise<void> {
    const ca = await this.ready();
    const x = await x509();
    const now = Date.now();
    const notAfter = new Date(Math.min(now + this.leafValidityMs, ca.cert.notAfter.getTime()));
    const cert = await x.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: [{ CN: [h] }],
      issuer: ca.cert.subjectName,
      notBefore: new Date(now - SKEW_MS),
      notAfter,
      signingAlgorithm: SIGN_ALG,
      publicKey: entry.keys.publicKey,
      signingKey: ca.key,
      extensions: [
        new x.BasicConstraintsExtension(false, undefined, true),
        new x.KeyUsagesExtension(x.KeyUsageFlags.digitalSignature, true),
        new x.ExtendedKeyUsageExtension([x.ExtendedKeyUsage.serverAuth]),
        new x.SubjectAlternativeNameExtension([{ type: isIP(h) ? 'ip' : 'dns', value: h }]),
        await x.SubjectKeyIdentifierExtension.create(entry.keys.publicKey),
        await x.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey),
      ],
    });
    const certPem = cert.toString('pem') + '\n';
    const context = createSecureContext({ key: entry.keyPem, cert: certPem, minVersion: 'TLSv1.2' });
    entry.leaf = { host: h, certPem, keyPem: entry.keyPem, notAfter, context };
  }

  /** Number of hosts with a cached leaf. */
  get cachedLeaves(): number {
    return this.leaves.size;
  }
}
