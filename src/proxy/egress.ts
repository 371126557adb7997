/**
 * The egress guard: the proxy never dials private, loopback, link-local, CGN, cloud-metadata,
 * unspecified, multicast or reserved addresses unless LATCHKEY_EGRESS_ALLOW admits them
 * (metadata addresses stay blocked whatever the allow list says).
 *
 * A host name is resolved once per new connection; if ANY of its addresses is refused, the
 * connection is refused (a name that resolves to a public and a private address is a DNS
 * rebinding attempt). The connector then dials exactly an address that was checked: no second
 * resolution happens between the check and the connect.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Socket } from 'node:net';
import type { buildConnector } from 'undici';
import { createSecureContext } from 'node:tls';

// ---- addresses as bytes

/** 4 bytes for IPv4, 16 for IPv6; null if not an IP literal. Accepts a zone id (`fe80::1%eth0`). */
export function parseIp(input: string): Uint8Array | null {
  let s = input;
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const pct = s.indexOf('%');
  if (pct !== -1) s = s.slice(0, pct);
  const fam = isIP(s);
  if (fam === 4) return Uint8Array.from(s.split('.').map(Number));
  if (fam !== 6) return null;
  // an embedded dotted quad at the end
  let tail: number[] = [];
  const lastColon = s.lastIndexOf(':');
  if (s.slice(lastColon + 1).includes('.')) {
    tail = s.slice(lastColon + 1).split('.').map(Number);
    s = s.slice(0, lastColon + 1) + '0:0';
  }
  const [head, rest] = s.includes('::') ? s.split('::') as [string, string] : [s, null];
  const h = head ? head.split(':') : [];
  const r = rest === null ? [] : rest ? rest.split(':') : [];
  const groups = rest === null ? h : [...h, ...Array(8 - h.length - r.length).fill('0'), ...r];
  if (groups.length !== 8) return null;
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  if (tail.length === 4) out.set(tail, 12);
  return out;
}

export function formatIp(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join('.');
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return g.join(':');
}

export interface Cidr {
  bytes: Uint8Array;
  bits: number;
}

export function parseCidr(input: string): Cidr | null {
  const slash = input.indexOf('/');
  const ip = parseIp(slash === -1 ? input : input.slice(0, slash));
  if (!ip) return null;
  const max = ip.length * 8;
  const bits = slash === -1 ? max : /^\d{1,3}$/.test(input.slice(slash + 1)) ? Number(input.slice(slash + 1)) : NaN;
  if (!Number.isInteger(bits) || bits < 0 || bits > max) return null;
  return { bytes: ip, bits };
}

export function inCidr(ip: Uint8Array, c: Cidr): boolean {
  if (ip.length !== c.bytes.length) return false;
  let bits = c.bits;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((ip[i]! & mask) !== (c.bytes[i]! & mask)) return false;
  }
  return true;
}

const cidrs = (list: string[]): Array<Cidr & { text: string }> => list.map((t) => ({ ...parseCidr(t)!, text: t }));

/** Cloud metadata endpoints: refused even when an allow entry covers them. */
const METADATA = cidrs([
  '169.254.169.254/32', // AWS, GCP, Azure, OpenStack, DigitalOcean, ...
  '169.254.170.2/32', // AWS ECS task metadata
  '169.254.170.23/32', // AWS EKS pod identity
  '168.63.129.16/32', // Azure WireServer (a public address, yet the host's own agent endpoint)
  '100.100.100.200/32', // Alibaba Cloud
  '192.0.0.192/32', // Oracle Cloud (legacy)
  'fd00:ec2::254/128', // AWS IMDS over IPv6
  'fd00:ec2::23/128', // AWS EKS pod identity over IPv6
]);
const METADATA_NAMES = new Set(['metadata.google.internal', 'metadata.goog', 'metadata', 'instance-data', 'instance-data.ec2.internal']);

/** Not public: refused unless allowed. */
const BLOCKED_V4 = cidrs([
  '0.0.0.0/8', // unspecified, "this network"
  '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', // private
  '100.64.0.0/10', // carrier-grade NAT
  '127.0.0.0/8', // loopback
  '169.254.0.0/16', // link-local (metadata lives here)
  '192.0.0.0/24', // IETF protocol assignments
  '192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24', // documentation
  '198.18.0.0/15', // benchmarking
  '192.88.99.0/24', // 6to4 relay anycast
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, and 255.255.255.255 broadcast
]);
const BLOCKED_V6 = cidrs([
  '::/128', // unspecified
  '::1/128', // loopback
  'fe80::/10', // link-local
  'fec0::/10', // site-local (deprecated)
  'fc00::/7', // unique local
  'ff00::/8', // multicast
  '100::/64', // discard
  '2001:db8::/32', // documentation
  '2001::/23', // IETF protocol assignments (Teredo, ORCHID, ...)
]);
/** IPv6 forms that carry an IPv4 address: judged by the embedded one. */
const V4_MAPPED = parseCidr('::ffff:0:0/96')!;
const V4_COMPAT = parseCidr('::/96')!;
const NAT64 = parseCidr('64:ff9b::/96')!;
const NAT64_LOCAL = parseCidr('64:ff9b:1::/48')!;
const SIX_TO_FOUR = parseCidr('2002::/16')!;

/** The IPv4 address embedded in an IPv6 one (mapped, compatible, NAT64, 6to4), if any. */
export function embeddedV4(ip: Uint8Array): Uint8Array | null {
  if (ip.length !== 16) return null;
  if (inCidr(ip, V4_MAPPED) || inCidr(ip, NAT64)) return ip.slice(12, 16);
  if (inCidr(ip, V4_COMPAT) && !ip.slice(0, 12).some((b) => b !== 0) && (ip[12] || ip[13] || ip[14] || ip[15]! > 1)) return ip.slice(12, 16);
  if (inCidr(ip, SIX_TO_FOUR)) return ip.slice(2, 6);
  return null;
}

export type AddressClass = 'public' | 'metadata' | 'blocked';

/** What an address is: `metadata` (never dialed), `blocked` (only if allowed), or `public`. */
export function classifyAddress(ip: Uint8Array): { cls: AddressClass; range: string | null } {
  const v4 = embeddedV4(ip);
  if (v4) {
    const inner = classifyAddress(v4);
    if (inner.cls !== 'public') return inner;
    if (inCidr(ip, NAT64_LOCAL)) return { cls: 'blocked', range: '64:ff9b:1::/48' };
    return inner;
  }
  for (const c of METADATA) if (inCidr(ip, c)) return { cls: 'metadata', range: c.text };
  for (const c of ip.length === 4 ? BLOCKED_V4 : BLOCKED_V6) if (inCidr(ip, c)) return { cls: 'blocked', range: c.text };
  if (ip.length === 16 && inCidr(ip, NAT64_LOCAL)) return { cls: 'blocked', range: '64:ff9b:1::/48' };
  return { cls: 'public', range: null };
}

// ---- the allow list and the guard

export class EgressDeniedError extends Error {
  readonly code = 'egress_denied';
  constructor(readonly host: string, readonly address: string | null, readonly reason: string) {
    super(`egress to ${host}${address && address !== host ? ` (${address})` : ''} is refused: ${reason}`);
    this.name = 'EgressDeniedError';
  }
}

export class EgressUnresolvedError extends Error {
  readonly code = 'upstream_unresolved';
  constructor(readonly host: string, cause: unknown) {
    super(`the upstream host ${host} could not be resolved`, { cause });
    this.name = 'EgressUnresolvedError';
  }
}

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

export type Resolver = (host: string) => Promise<ResolvedAddress[]>;

const systemResolver: Resolver = async (host) => (await dnsLookup(host, { all: true, verbatim: true })) as ResolvedAddress[];

const HOST_RE = /^(\*\.)?[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

export interface EgressPolicy {
  cidrs: Array<Cidr & { text: string }>;
  /** exact host names, lower case */
  hosts: Set<string>;
  /** `*.example.com` entries as `.example.com` suffixes */
  suffixes: string[];
}

/** Parses LATCHKEY_EGRESS_ALLOW: a comma list of CIDRs, IP addresses, host names or `*.domain`. Throws naming the bad entry. */
export function parseEgressAllow(text: string | undefined | null): EgressPolicy {
  const p: EgressPolicy = { cidrs: [], hosts: new Set(), suffixes: [] };
  for (const raw of (text ?? '').split(',')) {
    const e = raw.trim().toLowerCase();
    if (!e) continue;
    const c = parseCidr(e);
    if (c) {
      p.cidrs.push({ ...c, text: e });
      continue;
    }
    const h = e.endsWith('.') ? e.slice(0, -1) : e;
    if (!HOST_RE.test(h) || h.length > 253) throw new Error(`LATCHKEY_EGRESS_ALLOW: '${raw.trim()}' is neither a CIDR (10.0.0.0/8, fd00::/8), an IP address nor a host name`);
    if (h.startsWith('*.')) p.suffixes.push(h.slice(1));
    else p.hosts.add(h);
  }
  return p;
}

/** What `localhost` and `*.localhost` stand for (RFC 6761), in the order they are dialed. */
const LOOPBACK: readonly ResolvedAddress[] = [{ address: '127.0.0.1', family: 4 }, { address: '::1', family: 6 }];

export class EgressGuard {
  readonly policy: EgressPolicy;

  constructor(allow: string | undefined | null, private readonly resolver: Resolver = systemResolver) {
    this.policy = parseEgressAllow(allow);
  }

  private hostAllowed(host: string): boolean {
    if (this.policy.hosts.has(host)) return true;
    return this.policy.suffixes.some((s) => host.endsWith(s) && host.length > s.length);
  }

  private cidrAllows(ip: Uint8Array): boolean {
    return this.policy.cidrs.some((c) => inCidr(ip, c) || (ip.length === 16 && !!embeddedV4(ip) && inCidr(embeddedV4(ip)!, c)));
  }

  /** Throws EgressDeniedError unless the address may be dialed for `host`. */
  checkAddress(host: string, address: string, nameAllowed = false): void {
    const ip = parseIp(address);
    if (!ip) throw new EgressDeniedError(host, address, 'not an IP address');
    const { cls, range } = classifyAddress(ip);
    if (cls === 'public') return;
    if (cls === 'metadata') throw new EgressDeniedError(host, address, `it is a cloud metadata address (${range}), never reachable through the proxy`);
    if (nameAllowed || this.cidrAllows(ip)) return;
    throw new EgressDeniedError(host, address, `it is a private, loopback, link-local or reserved address (${range}); LATCHKEY_EGRESS_ALLOW can allow it`);
  }

  /**
   * Resolves `host` (an IP literal stands for itself) and checks EVERY address; returns them in
   * resolver order. Throws EgressDeniedError or EgressUnresolvedError.
   */
  async resolve(hostIn: string): Promise<ResolvedAddress[]> {
    let host = hostIn.toLowerCase();
    if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
    if (host.endsWith('.')) host = host.slice(0, -1);
    const fam = isIP(host);
    if (fam) {
      this.checkAddress(host, host);
      return [{ address: host, family: fam as 4 | 6 }];
    }
    if (METADATA_NAMES.has(host)) throw new EgressDeniedError(host, null, 'it is a cloud metadata host name');
    if (host === 'localhost' || host.endsWith('.localhost')) {
      // RFC 6761: loopback, never asked of DNS; allowed by its name or by the loopback addresses
      // the allow list covers (127.0.0.1/32 admits `localhost` as it admits `127.0.0.1`)
      const named = this.hostAllowed(host);
      const loop = LOOPBACK.filter((a) => named || this.cidrAllows(parseIp(a.address)!));
      if (!loop.length) throw new EgressDeniedError(host, null, 'localhost is loopback (127.0.0.1, ::1); LATCHKEY_EGRESS_ALLOW can allow it (the name, or 127.0.0.1/32)');
      return loop.map((a) => ({ ...a }));
    }
    let addrs: ResolvedAddress[];
    try {
      addrs = await this.resolver(host);
    } catch (err) {
      throw new EgressUnresolvedError(host, err);
    }
    if (!addrs.length) throw new EgressUnresolvedError(host, null);
    const nameAllowed = this.hostAllowed(host);
    for (const a of addrs) this.checkAddress(host, a.address, nameAllowed);
    return addrs;
  }
}

export interface ConnectorOptions {
  /**
   * trusted CAs for upstream TLS (system roots plus extras); undefined = Node's defaults. Built
   * into ONE secure context here: passing `ca` to every tls.connect would rebuild the whole
   * certificate store per new connection (tens of milliseconds of blocked event loop each).
   */
  ca?: string[];
  timeout?: number;
}

type ConnectOpts = Parameters<buildConnector.connector>[0];
type ConnectCb = Parameters<buildConnector.connector>[1];

/**
 * An undici connector that resolves and checks through the guard, then dials exactly a checked
 * address (the first; the next ones on connection failure). TLS verifies the certificate against
 * the original host name (SNI), or the IP literal when the host was one.
 */
export function guardedConnector(build: typeof buildConnector, guard: EgressGuard, opts: ConnectorOptions = {}): buildConnector.connector {
  const secureContext = opts.ca ? createSecureContext({ ca: opts.ca }) : undefined;
  const base = build({ ...(secureContext ? { secureContext } : {}), timeout: opts.timeout ?? 10_000 } as buildConnector.BuildOptions);
  return (o: ConnectOpts, cb: ConnectCb) => {
    guard.resolve(o.hostname).then((addrs) => {
      let i = 0;
      const attempt = (): void => {
        const a = addrs[i++]!;
        // `host` (name:port) stays: undici takes the SNI name and the session key from it
        base({ ...o, hostname: a.address } as ConnectOpts, (err, sock) => {
          if (err && i < addrs.length && isRetryable(err)) return attempt();
          if (err) return cb(err, null);
          cb(null, sock as Socket);
        });
      };
      attempt();
    }, (err) => cb(err as Error, null));
  };
}

function isRetryable(err: Error): boolean {
  const code = (err as { code?: string }).code;
  return code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT';
}

/** The guard error behind an undici failure, if it was one (undici may wrap the cause). */
export function egressErrorOf(err: unknown): EgressDeniedError | EgressUnresolvedError | null {
  for (let e = err as { cause?: unknown } | null, n = 0; e && n < 5; e = e.cause as { cause?: unknown } | null, n++) {
    if (e instanceof EgressDeniedError || e instanceof EgressUnresolvedError) return e;
  }
  return null;
}
