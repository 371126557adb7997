/**
 * Browser tests: Debian's chromium at /usr/bin/chromium driven by playwright-core (never a
 * downloaded browser). Missing browser: the block is skipped with one loud stderr line, or fails
 * when LATCHKEY_REQUIRE_BROWSER=1 (CI).
 *
 *   describeBrowser('console', () => { ... launchBrowser() in beforeAll ... });
 *
 * ensureConsoleBuilt() runs `vite build` when dist/console is missing or older than its sources,
 * so `npx vitest run test/console.test.ts` works without a prior `npm run build`.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { describe, it } from 'vitest';

export const CHROMIUM = '/usr/bin/chromium';
export const BROWSER_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
const REQUIRE_BROWSER = process.env.LATCHKEY_REQUIRE_BROWSER === '1';
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function browserMissing(): string | null {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} does not exist (apt-get install -y chromium)`;
  if (!existsSync(join(ROOT, 'node_modules', 'playwright-core'))) return 'playwright-core is not installed (npm install)';
  return null;
}

let warned = false;

/** describe() when a browser is there; otherwise a loud skip, or a failing test under LATCHKEY_REQUIRE_BROWSER=1. */
export function describeBrowser(name: string, fn: () => void): void {
  const missing = browserMissing();
  if (!missing) {
    describe(name, fn);
    return;
  }
  if (REQUIRE_BROWSER) {
    describe(name, () => {
      it('has a browser', () => {
        throw new Error(`browser tests are required (LATCHKEY_REQUIRE_BROWSER=1) but ${missing}`);
      });
    });
    return;
  }
  if (!warned) {
    warned = true;
    process.stderr.write(`\n*** Browser tests SKIPPED: ${missing} (set LATCHKEY_REQUIRE_BROWSER=1 to make this fail) ***\n`);
  }
  describe.skip(name, fn);
}

export async function launchBrowser(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: BROWSER_ARGS, timeout: 30_000 });
}

function newestMtime(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let max = st.mtimeMs;
  for (const e of readdirSync(path)) max = Math.max(max, newestMtime(join(path, e)));
  return max;
}

/** Builds the console (vite) unless dist/console is newer than src/console and vite.config.ts. */
export function ensureConsoleBuilt(): string {
  const out = join(ROOT, 'dist', 'console');
  const index = join(out, 'index.html');
  const sources = Math.max(newestMtime(join(ROOT, 'src', 'console')), newestMtime(join(ROOT, 'vite.config.ts')));
  if (!existsSync(index) || statSync(index).mtimeMs < sources) {
    execFileSync(process.execPath, [join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--logLevel', 'warn'], {
      cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'], timeout: 120_000,
      // vitest sets NODE_ENV=test, which would bundle React's development build
      env: { ...process.env, NODE_ENV: 'production' },
    });
  }
  return out;
}
