/**
 * Child processes, temp dirs and CPU accounting for the bench. Every child and temp dir made
 * here is tracked and torn down on exit, on error and on SIGINT/SIGTERM.
 */
import { fork, spawn, type ChildProcess, type ForkOptions, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();

/** Path of a compiled helper next to this file's parent (dist/bench/...). */
export function benchPath(rel: string): string {
  return fileURLToPath(new URL(`../${rel}`, import.meta.url));
}

/** The repository root (dist/bench/lib -> ../../..). */
export function repoRoot(): string {
  return fileURLToPath(new URL('../../../', import.meta.url));
}

export function makeTempDir(tag: string): string {
  const d = mkdtempSync(join(tmpdir(), `latchkey-bench-${tag}-`));
  tempDirs.add(d);
  return d;
}

export function removeTempDir(d: string): void {
  rmSync(d, { recursive: true, force: true });
  tempDirs.delete(d);
}

/** An environment with no LATCHKEY_* variables from the caller leaking into a child. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('LATCHKEY_') && !k.startsWith('BENCH_') && k !== 'NODE_OPTIONS') env[k] = v;
  return { ...env, ...extra };
}

export interface Tracked {
  child: ChildProcess;
  /** last ~8 KiB of the child's stderr and stdout, for error messages */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function track(child: ChildProcess): Tracked {
  children.add(child);
  let out = '';
  const keep = (b: Buffer) => {
    out = (out + b.toString('utf8')).slice(-8192);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
    child.once('error', () => {
      children.delete(child);
      resolve({ code: -1, signal: null });
    });
  });
  return { child, output: () => out, exited };
}

export function forkTracked(script: string, args: string[] = [], opts: ForkOptions = {}): Tracked {
  return track(fork(script, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], execArgv: [], ...opts }));
}

export function spawnTracked(cmd: string, args: string[], opts: SpawnOptions = {}): Tracked {
  return track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts }));
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the child is gone. */
export async function stopChild(t: Tracked, graceMs = 3000): Promise<void> {
  if (t.child.exitCode !== null || t.child.signalCode !== null) return;
  t.child.kill('SIGTERM');
  const timer = setTimeout(() => t.child.kill('SIGKILL'), graceMs);
  await t.exited;
  clearTimeout(timer);
}

/** Synchronous last-resort cleanup (process 'exit' and signals). */
export function cleanupAllSync(): void {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
  children.clear();
  for (const d of tempDirs) {
    try {
      rmSync(d, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
  tempDirs.clear();
}

export function liveChildren(): number {
  return children.size;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

// ---- request/response over the IPC channel ----

let nextId = 1;

/**
 * The first IPC message `pick` settles (a value to resolve with, an Error to reject with, or
 * undefined to keep waiting), or an error when the child exits or `timeoutMs` passes first.
 */
function awaitMessage<T>(t: Tracked, what: string, timeoutMs: number, pick: (m: any) => T | Error | undefined): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`child sent nothing for '${what}' within ${timeoutMs} ms: ${t.output().slice(-1500)}`));
    }, timeoutMs);
    const onMsg = (m: any) => {
      const r = pick(m);
      if (r === undefined) return;
      cleanup();
      if (r instanceof Error) reject(r);
      else resolve(r);
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`child exited (code ${code}) during '${what}': ${t.output().slice(-1500)}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      t.child.off('message', onMsg);
      t.child.off('exit', onExit);
    };
    t.child.on('message', onMsg);
    t.child.once('exit', onExit);
  });
}

/** Sends {type, ...payload, id} and resolves with the child's reply carrying the same id. */
export function rpc<T = any>(t: Tracked, type: string, payload: Record<string, unknown> = {}, timeoutMs = 600_000): Promise<T> {
  const id = nextId++;
  const reply = awaitMessage<T>(t, type, timeoutMs, (m) => (!m || m.id !== id ? undefined : m.error ? new Error(`child: ${m.error}`) : (m as T)));
  t.child.send({ type, id, ...payload });
  return reply;
}

/** The first IPC message of a given type (e.g. 'ready'), or an error if the child exits first. */
export function waitMessage<T = any>(t: Tracked, type: string, timeoutMs = 60_000): Promise<T> {
  return awaitMessage<T>(t, type, timeoutMs, (m) => (m?.type === 'error' ? new Error(`child failed: ${m.error}`) : m?.type === type ? (m as T) : undefined));
}

// ---- CPU accounting from /proc (Linux); null elsewhere ----

const CLK_TCK = 100;

/** CPU seconds (user + system, all threads) a process has used so far. */
export function procCpuSeconds(pid: number): number | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after the ")" that closes the command name: state is field 3, utime 14, stime 15
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
  } catch {
    return null;
  }
}

/** Busy and total CPU seconds of the whole machine (all cores) so far. */
export function machineCpuSeconds(): { busy: number; total: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    return { busy: (total - idle) / CLK_TCK, total: total / CLK_TCK };
  } catch {
    return null;
  }
}
