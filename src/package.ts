/**
 * The installed package: its root directory and version, found by walking up from the running
 * module to the package.json named `latchkey`. The same walk works from the TypeScript sources
 * (vitest), from tsc's output (dist/src/...) and from the bundled CLI (dist/bin/...), wherever
 * the bundler put the chunk that asks. No imports beyond Node's: the CLI and core both use it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: { dir: string; version: string } | null | undefined;

function find(from: string): { dir: string; version: string } | null {
  let dir = from;
  for (let i = 0; i < 8; i++) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) {
      try {
        const j = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
        if (j.name === 'latchkey') return { dir, version: j.version ?? '0.0.0' };
      } catch {
        // not ours (or unreadable); keep walking up
      }
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return null;
}

/** The package's root directory (where its package.json is), or null when it cannot be found. */
export function packageRoot(): string | null {
  if (root === undefined) root = find(dirname(fileURLToPath(import.meta.url)));
  return root?.dir ?? null;
}

/** The package's version, or 0.0.0 when its package.json cannot be found. */
export function packageVersion(): string {
  packageRoot();
  return root?.version ?? '0.0.0';
}
