/**
 * --profile: Latchkey server children run with --cpu-prof; after each benchmark the new profiles
 * are summarised as the functions with the most self time (the hot spots worth optimising).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface ProfNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

export function profileDir(): string | null {
  return process.env.BENCH_PROFILE_DIR || null;
}

/** node flags for a child to profile into BENCH_PROFILE_DIR (none when profiling is off). */
let seq = 0;
export function profileArgs(tag: string): string[] {
  const d = profileDir();
  return d ? ['--cpu-prof', '--cpu-prof-dir', d, '--cpu-prof-name', `${String(++seq).padStart(2, '0')}-${tag}.cpuprofile`] : [];
}

function shortUrl(u: string): string {
  return u.replace(/^file:\/\//, '').replace(/.*\/node_modules\//, '~/').replace(/.*\/dist\//, '');
}

/** Top self-time entries of every profile in the dir not yet in `seen`. */
export function summarizeProfiles(seen: Set<string>, top = 15): Array<{ file: string; totalMs: number; rows: Array<[string, number, number]> }> {
  const d = profileDir();
  if (!d) return [];
  const out = [];
  for (const f of readdirSync(d).filter((x) => x.endsWith('.cpuprofile')).sort()) {
    if (seen.has(f)) continue;
    seen.add(f);
    const p = JSON.parse(readFileSync(join(d, f), 'utf8')) as { nodes: ProfNode[]; samples: number[]; timeDeltas: number[] };
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    const self = new Map<string, number>();
    let total = 0;
    p.samples.forEach((id, i) => {
      const n = byId.get(id)!;
      const dt = p.timeDeltas[i] ?? 0;
      total += dt;
      const fn = n.callFrame.functionName || '(anonymous)';
      const key = n.callFrame.url ? `${fn}  ${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}` : fn;
      self.set(key, (self.get(key) ?? 0) + dt);
    });
    const idle = (self.get('(idle)') ?? 0);
    const busy = total - idle;
    const rows = [...self.entries()].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, top)
      .map(([k, v]) => [k, v / 1000, (v / (busy || 1)) * 100] as [string, number, number]);
    out.push({ file: join(d, f), totalMs: busy / 1000, rows });
  }
  return out;
}
