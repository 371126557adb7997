/**
 * Shared CLI plumbing: exit codes, the one-line error, tables, JSON, progress, stdin, small
 * argument parsers. Nothing here ever prints a secret value unless a command asked for it.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { ApiError, LatchkeyClient } from '../client/index.js';
import { readCliConfig, resolveAddr, resolveToken } from './config.js';

export const EXIT = { ok: 0, error: 1, usage: 2, notFound: 3, denied: 4 } as const;

/** An error the CLI raises itself, with the exit code it means. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: number = EXIT.error) {
    super(message);
    this.name = 'CliError';
  }
}

export const usage = (message: string) => new CliError(message, EXIT.usage);

/** Exit code for an HTTP status (and for core errors, which carry the same status). */
export function exitCodeForStatus(status: number): number {
  if (status === 400 || status === 413 || status === 415 || status === 422) return EXIT.usage;
  if (status === 401 || status === 403) return EXIT.denied;
  if (status === 404) return EXIT.notFound;
  return EXIT.error;
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

/** Turns any error into its exit code and the one line printed after `latchkey: `. */
export function describeError(err: unknown): { code: number; message: string } {
  if (err instanceof CliError) return { code: err.exitCode, message: oneLine(err.message) };
  if (err instanceof ApiError) {
    let message = err.detail || err.message;
    if (err.field && !message.includes(err.field)) message = `${err.field}: ${message}`;
    if (err.status === 401 && err.code !== 'unreachable' && err.code !== 'bad_credentials') message += ' (set LATCHKEY_TOKEN, or run `latchkey init` / `latchkey login`)';
    if (err.status === 429) {
      const retry = err.body?.retry_after;
      if (retry !== undefined) message += ` (retry after ${String(retry)} s)`;
    }
    return { code: err.status === 0 ? EXIT.error : exitCodeForStatus(err.status), message: oneLine(message) };
  }
  const e = err as { name?: string; message?: string; exitCode?: unknown; status?: unknown; code?: unknown; field?: unknown };
  if (e && e.name === 'StartupError') {
    return { code: typeof e.exitCode === 'number' && e.exitCode > 0 ? e.exitCode : EXIT.error, message: oneLine(String(e.message)) };
  }
  // core errors raised by the offline commands carry an HTTP status and a code
  if (e && typeof e.status === 'number' && typeof e.code === 'string') {
    let message = String(e.message ?? e.code);
    if (typeof e.field === 'string' && !message.includes(e.field)) message = `${e.field}: ${message}`;
    return { code: exitCodeForStatus(e.status), message: oneLine(message) };
  }
  if (e && (e.code === 'EACCES' || e.code === 'EPERM')) return { code: EXIT.error, message: oneLine(String(e.message)) };
  return { code: EXIT.error, message: oneLine(String(e?.message ?? err)) };
}

export function printError(message: string): void {
  process.stderr.write(`latchkey: ${message}\n`);
}

export function out(line = ''): void {
  process.stdout.write(line + '\n');
}

export function info(line: string): void {
  process.stderr.write(line + '\n');
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/**
 * Text that others wrote (an agent's proposal message or reason, a description), made safe for a
 * terminal: line breaks and tabs become spaces, and every other control character (C0, DEL, C1,
 * so no escape sequence) is shown as `\xNN` instead of acting on the screen. Values a person asked
 * for (`secret get`) are printed as they are, never through this.
 */
export function plain(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, ' ').replace(/\t/g, ' ').replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** A plain aligned table (header in capitals), to stdout; cells through plain(). */
export function printTable(headers: string[], rows: (string | number | null | undefined)[][]): void {
  const cells = rows.map((r) => r.map((c) => plain(c === null || c === undefined || c === '' ? '-' : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]?.length ?? 0)));
  const fmt = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  out(fmt(headers));
  for (const r of cells) out(fmt(r));
}

/** Progress on stderr: a redrawn bar on a TTY, else one line per update. */
export class Progress {
  private readonly tty: boolean;
  private drawn = false;
  constructor(private readonly verb: string) {
    this.tty = !!process.stderr.isTTY;
  }
  update(done: number, total: number): void {
    if (this.tty) {
      const width = 30;
      const frac = total > 0 ? Math.min(1, done / total) : 1;
      const fill = Math.round(frac * width);
      process.stderr.write(`\r[${'#'.repeat(fill)}${'-'.repeat(width - fill)}] ${this.verb} ${done}/${total} (${Math.round(frac * 100)}%)`);
      this.drawn = true;
    } else {
      process.stderr.write(`${this.verb} ${done}/${total}\n`);
    }
  }
  end(): void {
    if (this.tty && this.drawn) process.stderr.write('\n');
    this.drawn = false;
  }
}

/** Reads all of stdin; trims one trailing newline (what `echo` adds). */
export async function readStdin(what = 'the value'): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write(`reading ${what} from stdin (end with Ctrl-D)…\n`);
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** True when the CLI can ask its user questions: stdin and stderr are a terminal. */
export function interactive(): boolean {
  return !!process.stdin.isTTY && !!process.stderr.isTTY;
}

/**
 * Asks one question on the terminal (stderr) and reads one line from it, in raw mode: the answer
 * is echoed (or, `hidden`, not), Backspace and Ctrl-U edit, arrow and other escape sequences are
 * ignored, Ctrl-C gives up (exit 1), Ctrl-D on an empty line or the end of input gives up (exit 2,
 * naming `what`). Only when `interactive()`; the caller decides what to do otherwise.
 */
export function prompt(question: string, opts: { hidden?: boolean; what?: string } = {}): Promise<string> {
  const input = process.stdin;
  const echo = (s: string) => {
    if (!opts.hidden) process.stderr.write(s);
  };
  return new Promise((resolve, reject) => {
    let value = '';
    /** 0: text; 1: after ESC; 2: in a CSI sequence (ESC [ … final byte); 3: one more byte (ESC O x) */
    let esc = 0;
    const finish = (err: Error | null) => {
      input.removeListener('data', onData);
      input.removeListener('end', onEnd);
      input.removeListener('error', finish);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onEnd = () => finish(usage(`${opts.what ?? question.replace(/[:\s]+$/, '').toLowerCase()}: no answer (the input ended)`));
    const erase = (n: number) => echo('\b \b'.repeat(n));
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (esc === 1) {
          esc = ch === '[' ? 2 : ch === 'O' ? 3 : 0;
          continue;
        }
        if (esc === 2) {
          if (ch >= '@' && ch <= '~') esc = 0;
          continue;
        }
        if (esc === 3) {
          esc = 0;
          continue;
        }
        if (ch === '\r' || ch === '\n') return finish(null);
        if (ch === '\u0003') return finish(new CliError('interrupted', EXIT.error));
        if (ch === '\u0004') return value ? finish(null) : onEnd();
        if (ch === '\u001b') esc = 1;
        else if (ch === '\u0015') {
          erase(Array.from(value).length);
          value = '';
        } else if (ch === '\u007f' || ch === '\b') {
          if (value) erase(1);
          value = Array.from(value).slice(0, -1).join('');
        } else if (ch >= ' ') {
          value += ch;
          echo(ch);
        }
      }
    };
    // raw before the question: nothing typed ahead is echoed by the terminal
    input.setRawMode(true);
    process.stderr.write(question);
    input.setEncoding('utf8');
    input.on('data', onData);
    input.on('end', onEnd);
    input.once('error', finish);
    input.resume();
  });
}

// ---------------------------------------------------------------- argument parsers (commander)

export function intArg(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    if (!/^\d+$/.test(v.trim())) throw new InvalidArgumentError(`must be a whole number${min > 0 ? ` ≥ ${min}` : ''}`);
    const n = Number(v);
    if (n < min || n > max) throw new InvalidArgumentError(`must be between ${min} and ${max}`);
    return n;
  };
}

export function listArg(v: string): string[] {
  return v.split(',').map((s) => s.trim()).filter(Boolean);
}

export function collect(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), v];
}

const UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** An ISO time, or a duration back from now (`30m`, `1h`, `7d`, `2w`); returns ISO. */
export function parseTime(v: string, now = Date.now()): string {
  const m = /^(\d+(?:\.\d+)?)\s*([smhdw])$/i.exec(v.trim());
  if (m) return new Date(now - Number(m[1]) * UNITS[m[2]!.toLowerCase()]!).toISOString();
  if (/^\d{4}-\d{2}-\d{2}/.test(v.trim())) {
    const t = Date.parse(v.trim());
    if (!Number.isNaN(t)) return new Date(t).toISOString();
  }
  throw new InvalidArgumentError('must be an ISO time (2025-01-31T12:00:00Z) or a duration like 30m, 1h, 7d');
}

// ---------------------------------------------------------------- client for a command

export interface GlobalOpts { addr?: string }

/** Global options: the verb's own (`secret list --addr X`) win over the root's (`--addr X secret list`). */
export function globals(cmd: Command): GlobalOpts {
  let addr: string | undefined;
  for (let c: Command | null = cmd; c; c = c.parent) {
    const v = (c.opts() as GlobalOpts).addr;
    if (addr === undefined && v) addr = v;
  }
  return { addr };
}

export function clientFor(cmd: Command): LatchkeyClient {
  const config = readCliConfig();
  return new LatchkeyClient({ addr: resolveAddr(globals(cmd).addr, process.env, config), token: resolveToken(process.env, config) });
}

export function defaultVault(flag?: string): string {
  return flag || process.env.LATCHKEY_VAULT || 'default';
}

/** Fetches every page (or up to `max` items) following next_cursor. */
export async function collectPages<T>(fetchPage: (cursor: string | undefined, limit: number) => Promise<{ items: T[]; next_cursor: string | null }>, max = Infinity, pageSize = 1000): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | undefined;
  const seen = new Set<string>();
  for (;;) {
    const want = Math.min(pageSize, max - items.length);
    if (want <= 0) break;
    const page = await fetchPage(cursor, want);
    items.push(...page.items.slice(0, want));
    if (!page.next_cursor || page.items.length === 0 || seen.has(page.next_cursor)) break;
    seen.add(page.next_cursor);
    cursor = page.next_cursor;
  }
  return items;
}
