/** Shared by the suites that run the real CLI (`node bin/latchkey.js …`) as a child process. */
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const BIN = join(ROOT, 'bin', 'latchkey.js');

export interface Result { code: number | null; stdout: string; stderr: string }

/** A TCP port nobody listens on right now (for `latchkey server --port`). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => res(port));
    });
  });
}

/** The environment without anything from the developer's own Latchkey setup, plus `extra` (undefined deletes). */
export function cleanEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('LATCHKEY_')) delete env[k];
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/**
 * Runs the CLI on a real pseudo-terminal (util-linux `script`), answering each prompt as it
 * appears: `answers` are [what the screen ends with, the line typed (or a function that does
 * something first, while the question waits, and gives the line)]. stdout is the terminal's
 * whole output (the CLI's stdout and stderr, and what the terminal echoed).
 */
export function runInTerminal(args: string[], env: NodeJS.ProcessEnv, answers: Array<[RegExp, string | (() => Promise<string>)]>): Promise<Result> {
  return new Promise((res, rej) => {
    const cmd = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    const child = spawn('script', ['-qec', cmd, '/dev/null'], { env: { ...env, TERM: 'dumb' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let next = 0;
    child.stdout.setEncoding('utf8').on('data', (d) => {
      stdout += d;
      const a = answers[next];
      if (a && a[0].test(stdout)) {
        next++;
        const line = a[1];
        void (typeof line === 'string' ? Promise.resolve(line) : line()).then((t) => child.stdin.write(`${t}\r`), rej);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    // a question that never comes must not hang the suite
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', rej);
    child.on('close', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
  });
}
