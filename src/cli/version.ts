/** The package version, read from package.json next to the build (no core import: the CLI stays light). */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | null = null;

export function cliVersion(): string {
  if (cached) return cached;
  try {
    let dir = dirname(fileURLToPath(import.meta.url));
    for (let i = 0; i < 6; i++) {
      const p = join(dir, 'package.json');
      if (existsSync(p)) {
        const j = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
        if (j.name === 'latchkey' && j.version) return (cached = j.version);
      }
      dir = dirname(dir);
    }
  } catch {
    /* fall through */
  }
  return (cached = '0.0.0');
}
