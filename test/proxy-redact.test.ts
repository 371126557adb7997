/**
 * Redaction of injected values in upstream responses: strings (headers), and streams split at
 * every possible chunk boundary (fuzzed), with masks of equal length and minimal hold-back.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { maskFor, MIN_NEEDLE, needlesFor, Redactor } from '../src/proxy/redact.js';

async function run(r: Redactor, chunks: Buffer[]): Promise<{ out: Buffer; pieces: Buffer[] }> {
  const s = Readable.from(chunks).pipe(r.stream());
  const pieces: Buffer[] = [];
  for await (const c of s) pieces.push(c as Buffer);
  return { out: Buffer.concat(pieces), pieces };
}

/** The reference: which bytes of the whole text belong to some occurrence of some needle (overlaps included). */
function maskedPositions(text: Buffer, needles: Buffer[]): boolean[] {
  const m = new Array<boolean>(text.length).fill(false);
  for (const n of needles) {
    for (let i = text.indexOf(n); i !== -1; i = text.indexOf(n, i + 1)) for (let j = i; j < i + n.length; j++) m[j] = true;
  }
  return m;
}

const MASK_BYTES = new Set([...Buffer.from('[REDACTED]*')]);

/** out equals text except exactly at the reference positions, which hold mask bytes. */
function expectRedacted(out: Buffer, text: Buffer, needles: Buffer[]): void {
  expect(out.length).toBe(text.length);
  const m = maskedPositions(text, needles);
  const bad: number[] = [];
  for (let i = 0; i < text.length; i++) {
    if (m[i] ? !MASK_BYTES.has(out[i]!) : out[i] !== text[i]) bad.push(i);
  }
  expect(bad).toEqual([]);
}

function splitRandom(b: Buffer, maxPiece: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < b.length;) {
    const n = Math.min(b.length - i, 1 + randomInt(maxPiece));
    out.push(b.subarray(i, i + n));
    i += n;
  }
  return out;
}

describe('redaction', () => {
  const SECRET = 'sk_live_51HxQ2eZvKYlo2CabcdEFGH';

  it('needles: the value, URL and JSON escapes, base64; short values skipped', () => {
    const n = needlesFor(['a/b"c+d=e', 'abc']).map((b) => b.toString());
    expect(n).toContain('a/b"c+d=e');
    expect(n).toContain(encodeURIComponent('a/b"c+d=e'));
    expect(n).toContain('a/b\\"c+d=e');
    expect(n).toContain(Buffer.from('a/b"c+d=e').toString('base64').replace(/=+$/, ''));
    expect(n.some((x) => x === 'abc')).toBe(false);
    expect(MIN_NEEDLE).toBe(4);
  });

  it('an echo in base64 (any alignment, base64url too), hex or escaped JSON is masked, also mid-stream', async () => {
    const r = new Redactor(needlesFor([SECRET]));
    for (const prefix of ['', 'x', 'xy', 'user:', 'Bearer ']) {
      const raw = Buffer.from(`${prefix}${SECRET}-and-more-after-it`);
      for (const enc of [raw.toString('base64'), raw.toString('base64url')]) {
        const { out } = await run(r, splitRandom(Buffer.from(`{"blob":"${enc}"}`), 7));
        // no run of the value's base64 letters is left: decode what is left and look for the value
        expect(Buffer.from(out.toString().slice(9, -2).replace(/[^A-Za-z0-9+/_-]/g, 'A'), 'base64').toString('latin1')).not.toContain(SECRET);
        expect(out.toString()).toContain('[REDACTED');
      }
    }
    for (const enc of [Buffer.from(SECRET).toString('hex'), Buffer.from(SECRET).toString('hex').toUpperCase(), JSON.stringify(`a/${SECRET}`).replace(/\//g, '\\/')]) {
      expect(r.redactString(`<${enc}>`)).not.toContain(enc.includes('\\/') ? SECRET : enc);
    }
    expect(new Redactor(needlesFor(['é' + SECRET])).redactString(`{"k":"\\u00e9${SECRET}"}`)).not.toContain(SECRET);
    // encoded forms of short values are not looked for (a few base64 or hex letters turn up by chance)
    expect(needlesFor(['abcd']).map(String).every((n) => n === 'abcd' || n.length >= 8)).toBe(true);
  });

  it('masks keep the length and say what they are', () => {
    expect(maskFor(30).toString()).toMatch(/^\[REDACTED\*+\]$/);
    expect(maskFor(30).length).toBe(30);
    expect(maskFor(5).toString()).toBe('*****');
    expect(maskFor(10).toString()).toBe('[REDACTED]');
  });

  it('header values: every occurrence, basic-auth base64 included', () => {
    const basic = Buffer.from(`user:${SECRET}`).toString('base64');
    const r = new Redactor(needlesFor([SECRET, 'user'], [basic]));
    const h = r.redactString(`Bearer ${SECRET}; again ${SECRET}; Basic ${basic}`);
    expect(h).not.toContain(SECRET);
    expect(h).not.toContain(basic);
    expect(h.length).toBe(`Bearer ${SECRET}; again ${SECRET}; Basic ${basic}`.length);
  });

  it('a value split over two chunks at every position is masked', async () => {
    const r = new Redactor(needlesFor([SECRET]));
    const text = Buffer.from(`{"echo":"${SECRET}","n":1}`);
    for (let cut = 1; cut < text.length; cut++) {
      const { out } = await run(r, [text.subarray(0, cut), text.subarray(cut)]);
      expect(out.toString()).not.toContain(SECRET);
      expectRedacted(out, text, r.needles);
    }
  });

  it('overlapping occurrences of a value that starts with its own last character, across chunks', async () => {
    const v = 'D' + 'sEMT2HkyJSsNdoEWmff0gKwl2wMBdIaAah' + 'D';
    const r = new Redactor(needlesFor([v]));
    const text = Buffer.from(`x${v.slice(0, -1)}${v}y${v}${v.slice(1)}z`);
    for (let cut = 1; cut < text.length; cut++) {
      for (const cut2 of [cut + 1, cut + 17, text.length - 1]) {
        if (cut2 <= cut || cut2 >= text.length) continue;
        const { out } = await run(r, [text.subarray(0, cut), text.subarray(cut, cut2), text.subarray(cut2)]);
        expectRedacted(out, text, r.needles);
      }
    }
  });

  it('one byte per chunk', async () => {
    const r = new Redactor(needlesFor([SECRET]));
    const text = Buffer.from(`a${SECRET}b${SECRET}${SECRET}c`);
    const { out } = await run(r, [...text].map((b) => Buffer.from([b])));
    expectRedacted(out, text, r.needles);
    expect(out.toString()).not.toContain(SECRET.slice(0, 8));
  });

  it('fuzz: random bodies, random needles planted, random chunking == whole-text reference', async () => {
    for (let round = 0; round < 1000; round++) {
      // short alphabets make overlapping and self-similar values likely
      const alpha = randomInt(3) === 0 ? 'ab' : randomInt(2) ? 'abcD' : '';
      const mk = () => alpha ? Array.from({ length: 4 + randomInt(12) }, () => alpha[randomInt(alpha.length)]).join('') : randomBytes(4 + randomInt(40)).toString('base64url');
      const values = Array.from({ length: 1 + randomInt(3) }, mk);
      const r = new Redactor(needlesFor(values));
      const parts: Buffer[] = [];
      for (let i = 0; i < 20; i++) {
        parts.push(alpha ? Buffer.from(Array.from({ length: randomInt(20) }, () => alpha[randomInt(alpha.length)]).join('')) : randomBytes(randomInt(60)));
        if (randomInt(2)) {
          const v = values[randomInt(values.length)]!;
          // sometimes a truncated copy (must NOT be masked), sometimes whole
          parts.push(Buffer.from(randomInt(4) === 0 ? v.slice(0, v.length - 1) : v));
        }
      }
      const text = Buffer.concat(parts);
      const { out } = await run(r, splitRandom(text, 1 + randomInt(70)));
      expectRedacted(out, text, r.needles);
      for (const v of values) expect(out.includes(Buffer.from(v))).toBe(false);
      for (const v of values) expect(out.includes(Buffer.from(v))).toBe(false);
    }
  });

  it('holds back nothing when the tail cannot start a value (SSE events pass at once)', async () => {
    const r = new Redactor(needlesFor([SECRET]));
    const s = r.stream();
    const got: string[] = [];
    s.on('data', (c: Buffer) => got.push(c.toString()));
    s.write(Buffer.from('data: {"delta":"hello"}\n\n'));
    await new Promise((res) => setImmediate(res));
    expect(got.join('')).toBe('data: {"delta":"hello"}\n\n');
    // a tail that could start the secret is held (at most len-1 bytes), then released or masked
    s.write(Buffer.from('data: sk_live_5'));
    await new Promise((res) => setImmediate(res));
    expect(got.join('')).toBe('data: {"delta":"hello"}\n\ndata: ');
    s.write(Buffer.from('9 not it\n\n'));
    s.end();
    await new Promise((res) => s.on('end', res));
    expect(got.join('')).toBe('data: {"delta":"hello"}\n\ndata: sk_live_59 not it\n\n');
  });

  it('an unfinished prefix at the very end is released unmasked', async () => {
    const r = new Redactor(needlesFor([SECRET]));
    const { out } = await run(r, [Buffer.from('tail: '), Buffer.from(SECRET.slice(0, 10))]);
    expect(out.toString()).toBe(`tail: ${SECRET.slice(0, 10)}`);
  });

  it('does not alter the upstream\'s own buffers', async () => {
    const r = new Redactor(needlesFor([SECRET]));
    const chunk = Buffer.from(`x${SECRET}y`);
    const copy = Buffer.from(chunk);
    await run(r, [chunk]);
    expect(chunk.equals(copy)).toBe(true);
  });

  it('throughput: 64 MiB in 64 KiB chunks stays fast', async () => {
    const r = new Redactor(needlesFor([SECRET, 'another-credential-value']));
    const chunk = randomBytes(65536);
    const t0 = performance.now();
    const s = r.stream();
    let n = 0;
    s.on('data', (c: Buffer) => (n += c.length));
    for (let i = 0; i < 1024; i++) if (!s.write(chunk)) await new Promise((res) => s.once('drain', res));
    s.end();
    await new Promise((res) => s.on('end', res));
    const ms = performance.now() - t0;
    expect(n).toBe(64 * 1024 * 1024);
    expect(ms).toBeLessThan(5000);
  });
});
