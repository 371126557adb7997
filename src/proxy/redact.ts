/**
 * Redaction: every injected credential value (and the encodings it is sent in or echoed back in:
 * the base64 of a basic-auth pair, base64 and base64url at any offset, hex, URL and JSON escaping) is masked wherever it appears in an upstream's response,
 * headers and body, before the agent sees it.
 *
 * The body is redacted as it streams. A match can straddle chunk boundaries, so at the end of each
 * chunk we hold back the longest tail that is still the beginning of some needle (at most
 * len - 1 bytes, and usually none: an SSE event ending in "\n\n" is passed on at once unless a
 * credential starts with a line feed). Masks have the same length as what they replace, so a
 * Content-Length stays right and framing never changes.
 */
import { Transform, type TransformCallback } from 'node:stream';

/** Values shorter than this are not redacted (masking 1-3 byte strings would garble any body). */
export const MIN_NEEDLE = 4;

/** The mask for `len` bytes: `[REDACTED]` padded with `*`, or `*`s when shorter than that. */
export function maskFor(len: number): Buffer {
  const label = '[REDACTED]';
  if (len < label.length) return Buffer.alloc(len, '*');
  return Buffer.from(label.slice(0, -1) + '*'.repeat(len - label.length) + ']', 'latin1');
}

/** Encoded forms shorter than this are not looked for: a short run of base64 or hex letters turns up by chance. */
const MIN_ENCODED = 8;

/**
 * The base64 letters that encode `v` whatever precedes it: for each of the three alignments the
 * value can start at (0, 1 or 2 bytes into a 3-byte group), the letters that depend on the value's
 * bits alone. So `base64("user:" + value)` or a token inside a base64 blob is found too.
 */
function base64Cores(v: Buffer): string[] {
  const out: string[] = [];
  for (let o = 0; o < 3; o++) {
    const b64 = Buffer.concat([Buffer.alloc(o), v]).toString('base64');
    const first = Math.ceil((8 * o) / 6);
    const last = Math.floor((8 * (o + v.length)) / 6); // letters before this hold value bits only
    if (last > first) out.push(b64.slice(first, last));
  }
  return out;
}

/** The byte strings to look for, given the injected values: each value and its common encodings. */
export function needlesFor(values: Iterable<string>, extra: Iterable<string> = []): Buffer[] {
  const set = new Set<string>();
  const add = (s: string, min = MIN_NEEDLE) => {
    if (Buffer.byteLength(s) >= min) set.add(s);
  };
  for (const v of values) {
    const bytes = Buffer.from(v, 'utf8');
    add(v);
    add(encodeURIComponent(v));
    const json = JSON.stringify(v).slice(1, -1);
    add(json);
    add(json.replace(/\//g, '\\/')); // JSON writers that escape '/' (PHP)
    // JSON writers that escape every non-ASCII character (Python's json.dumps)
    add(json.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
    // the first alignment's letters are the value's own base64, less a last letter that also
    // holds the bits of whatever follows (so it matches wherever that base64 does)
    for (const core of base64Cores(bytes)) {
      add(core, MIN_ENCODED);
      add(core.replace(/\+/g, '-').replace(/\//g, '_'), MIN_ENCODED); // base64url
    }
    add(bytes.toString('hex'), MIN_ENCODED);
    add(bytes.toString('hex').toUpperCase(), MIN_ENCODED);
  }
  for (const e of extra) add(e);
  // longest first: a longer needle that contains a shorter one is masked whole
  return [...set].sort((a, b) => b.length - a.length).map((s) => Buffer.from(s, 'utf8'));
}

export class Redactor {
  readonly needles: Buffer[];
  readonly maxLen: number;
  private readonly strings: string[];
  private readonly firstBytes: Uint8Array;

  constructor(needles: Buffer[]) {
    this.needles = needles.filter((n) => n.length >= MIN_NEEDLE);
    this.maxLen = this.needles.reduce((m, n) => Math.max(m, n.length), 0);
    this.strings = this.needles.map((n) => n.toString('utf8'));
    this.firstBytes = new Uint8Array(256);
    for (const n of this.needles) this.firstBytes[n[0]!] = 1;
  }

  get empty(): boolean {
    return this.needles.length === 0;
  }

  /** Masks every occurrence in a string (header values). */
  redactString(s: string): string {
    if (this.empty) return s;
    let out = s;
    for (const n of this.strings) {
      if (out.includes(n)) out = out.split(n).join(maskFor(Buffer.byteLength(n)).toString('latin1'));
    }
    return out;
  }

  /** Every complete occurrence of every needle in `buf` as [start, end) ranges (overlaps included), or null. */
  ranges(buf: Buffer): Array<[number, number]> | null {
    let out: Array<[number, number]> | null = null;
    for (const n of this.needles) {
      for (let i = buf.indexOf(n); i !== -1; i = buf.indexOf(n, i + 1)) (out ??= []).push([i, i + n.length]);
    }
    return out;
  }

  /** A whole body with every occurrence masked (a copy when anything is; never alters `buf`). */
  redactBuffer(buf: Buffer): Buffer {
    const ranges = this.ranges(buf);
    if (!ranges) return buf;
    const out = Buffer.from(buf);
    for (const [a, b] of ranges) maskFor(b - a).copy(out, a);
    return out;
  }

  /** Length of the longest proper tail of `buf` that begins some needle (at most maxLen - 1). */
  holdback(buf: Buffer): number {
    const max = Math.min(this.maxLen - 1, buf.length);
    for (let k = max; k > 0; k--) {
      const start = buf.length - k;
      if (!this.firstBytes[buf[start]!]) continue;
      for (const n of this.needles) {
        if (n.length > k && buf.compare(n, 0, k, start, buf.length) === 0) return k;
      }
    }
    return 0;
  }

  /** A streaming transform (one per response). */
  stream(): Transform {
    return new RedactStream(this);
  }
}

/**
 * State between chunks: `held` are ORIGINAL bytes not yet passed on (the tail that may begin a
 * value); `carry` is the mask for the first bytes of `held` that belong to a value already found
 * (a match that straddled the cut). Searching the original bytes again with the next chunk finds
 * every match that starts in `held`, overlapping ones included.
 */
class RedactStream extends Transform {
  private held: Buffer | null = null;
  private carry: Buffer | null = null;

  constructor(private readonly r: Redactor) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (!Buffer.isBuffer(chunk)) chunk = Buffer.from(chunk as unknown as string);
    const buf = this.held ? Buffer.concat([this.held, chunk]) : chunk;
    const carry = this.carry;
    this.held = null;
    this.carry = null;
    const ranges = this.r.ranges(buf);
    const cut = buf.length - this.r.holdback(buf);
    if (cut < buf.length) this.held = Buffer.from(buf.subarray(cut)); // a copy: the chunk may be a pooled buffer
    if (cut === 0) {
      this.carry = carry;
      return cb();
    }
    if (!ranges && !carry) {
      this.push(cut === buf.length ? buf : buf.subarray(0, cut));
      return cb();
    }
    // mask into a copy: never alter the upstream's buffers
    const out = Buffer.from(buf.subarray(0, cut));
    if (carry) carry.copy(out, 0, 0, Math.min(carry.length, cut));
    if (carry && carry.length > cut) this.carry = carry.subarray(cut);
    let carryEnd = this.carry ? cut + this.carry.length : cut;
    for (const [a, b] of ranges ?? []) {
      const m = maskFor(b - a);
      if (a < cut) m.copy(out, a, 0, Math.min(b, cut) - a);
      if (b > carryEnd && a < cut) {
        // a match crossing the cut: its remaining bytes (now in `held`) stay masked
        this.carry = m.subarray(cut - a);
        carryEnd = b;
      }
    }
    this.push(out);
    cb();
  }

  override _flush(cb: TransformCallback): void {
    // the stream ended: no held match can grow any more; mask the complete ones it holds (a short
    // value inside the beginning of a longer one) and the carried mask, release the rest
    const held = this.held;
    if (held) {
      const ranges = this.r.ranges(held);
      const out = ranges || this.carry ? Buffer.from(held) : held;
      if (this.carry) this.carry.copy(out, 0, 0, Math.min(this.carry.length, out.length));
      for (const [a, b] of ranges ?? []) maskFor(b - a).copy(out, a);
      this.push(out);
    }
    this.held = null;
    this.carry = null;
    cb();
  }
}
