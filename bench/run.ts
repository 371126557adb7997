/**
 * `npm run bench` (= build, then node dist/bench/run.js [--quick] [--only a,b] [--strict]).
 *
 * Runs the SPEC §9 benchmarks side by side with their baselines in one run, prints one table per
 * benchmark and a PASS/FAIL line per target, and writes bench/out/results.json. Every server under
 * test and every load generator is its own child process, so CPU is reported per process.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { BENCHMARKS, PENDING } from './registry.js';
import type { BenchResult, Target } from './lib/harness.js';
import { cleanupAllSync, liveChildren, repoRoot } from './lib/proc.js';
import { summarizeProfiles } from './lib/profile.js';
import { fmt, table } from './lib/stats.js';

function usage(): string {
  return [
    'usage: npm run bench -- [--quick] [--only <name>[,<name>...]] [--strict] [--list]',
    `  benchmarks: ${BENCHMARKS.map((b) => b.name).join(', ')}`,
    '  --quick   shorter runs (for iterating; figures are noisier)',
    '  --only    run just these benchmarks',
    '  --strict  exit 1 when any target FAILs (default: exit 1 only when a benchmark errors)',
    '  --profile run the Latchkey servers with --cpu-prof (bench/out/profiles/) and print their hot spots',
  ].join('\n');
}

function parseArgs(argv: string[]) {
  const out = { quick: false, only: null as string[] | null, strict: false, list: false, profile: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') out.quick = true;
    else if (a === '--strict') out.strict = true;
    else if (a === '--list') out.list = true;
    else if (a === '--profile') out.profile = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (!v) throw new Error('--only needs a benchmark name');
      out.only = [...(out.only ?? []), ...v.split(',').map((s) => s.trim()).filter(Boolean)];
    } else if (a === '--help' || a === '-h') {
      console.log(usage());
      process.exit(0);
    } else throw new Error(`unknown argument ${a}\n${usage()}`);
  }
  return out;
}

const STATUS = (t: Target) => (t.pass === true ? 'PASS' : t.pass === false ? 'FAIL' : 'ERROR');

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (args.list) {
    for (const b of BENCHMARKS) console.log(`${b.name.padEnd(12)} ${b.title}`);
    return 0;
  }
  const unknown = (args.only ?? []).filter((n) => !BENCHMARKS.some((b) => b.name === n));
  if (unknown.length) throw new Error(`unknown benchmark(s) ${unknown.join(', ')}\n${usage()}`);
  const chosen = BENCHMARKS.filter((b) => !args.only || args.only.includes(b.name));

  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  // the whole run should end within ~4 minutes; benchmarks with optional work (list at 1M) check this
  const budgetSec = args.quick ? 150 : args.only ? 600 : 225;
  const deadline = t0 + budgetSec * 1000;
  const est = chosen.reduce((a, b) => a + b.estimateSec[args.quick ? 1 : 0], 0);
  const log = (m: string) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${m}\n`);
  console.log(`Latchkey bench — ${startedAt} — node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, load avg ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  console.log(`mode: ${args.quick ? 'quick' : 'full'}; running ${chosen.map((b) => b.name).join(', ')} (~${est} s)`);
  console.log('CPU figures are % of one core (so on 2 cores the machine tops out at 200%); "loadgen" is the load generator process.\n');

  const outDir = join(repoRoot(), 'bench', 'out');
  const seenProfiles = new Set<string>();
  if (args.profile) {
    const d = join(outDir, 'profiles');
    rmSync(d, { recursive: true, force: true });
    mkdirSync(d, { recursive: true });
    process.env.BENCH_PROFILE_DIR = d;
    console.log(`profiling the Latchkey server processes into ${d} (profiling slows them: figures are not comparable)\n`);
  }

  const results: BenchResult[] = [];
  for (const b of chosen) {
    log(`${b.name}: ${b.title}`);
    const bt = performance.now();
    let r: BenchResult;
    try {
      r = await b.run({ quick: args.quick, deadline, log });
    } catch (err) {
      r = { name: b.name, title: b.title, tables: [], targets: [], notes: [], data: {}, error: String((err as Error)?.stack ?? err) };
    }
    if (liveChildren()) {
      r.notes.push(`${liveChildren()} child process(es) were still running after the benchmark and were killed`);
      cleanupAllSync();
    }
    (r.data as Record<string, unknown>).elapsedSeconds = (performance.now() - bt) / 1000;
    results.push(r);
    console.log(`━━ ${b.name}: ${b.title}  (${((performance.now() - bt) / 1000).toFixed(1)} s)`);
    if (r.error) console.log(`ERROR: ${r.error}`);
    for (const t of r.tables) console.log(`\n${t.title}\n${table(t.header, t.rows)}`);
    for (const n of r.notes) console.log(`  note: ${n}`);
    for (const p of summarizeProfiles(seenProfiles)) {
      console.log(`\nhot spots (self time) of ${p.file}, ${fmt(p.totalMs, 0)} ms busy:`);
      console.log(table(['function  file:line', 'self ms', 'self %'], p.rows.map(([k, ms, pct]) => [k, fmt(ms, 0), `${pct.toFixed(1)}%`])));
    }
    console.log('');
  }

  const targets = results.flatMap((r) => (r.error && !r.targets.length ? [{ name: `${r.name}`, target: '(see SPEC §9)', measured: 'benchmark failed', value: null, pass: null } as Target] : r.targets));
  const pending = args.only ? [] : PENDING;
  console.log('━━ SPEC §9 targets');
  console.log(table(['target', 'SPEC', 'measured', 'result'], [
    ...targets.map((t) => [t.name, t.target, t.measured + (t.note ? ` — ${t.note}` : ''), STATUS(t)]),
    ...pending.map((p) => [p.name, p.target, `no benchmark yet (${p.planned})`, 'SKIP']),
  ]));
  console.log('');
  for (const t of targets) console.log(`${STATUS(t)}  ${t.name}: ${t.measured} (target ${t.target})`);
  for (const p of pending) console.log(`SKIP  ${p.name}: not benchmarked yet (target ${p.target})`);

  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, 'results.json');
  writeFileSync(file, JSON.stringify({
    startedAt, finishedAt: new Date().toISOString(), seconds: (performance.now() - t0) / 1000, mode: args.quick ? 'quick' : 'full', only: args.only,
    machine: { node: process.version, platform: process.platform, cpus: cpus().length, cpuModel: cpus()[0]?.model, loadavg: loadavg(), totalmem: totalmem() },
    targets: [...targets.map((t) => ({ ...t, result: STATUS(t) })), ...pending.map((p) => ({ name: p.name, target: p.target, result: 'SKIP', planned: p.planned }))],
    benchmarks: results,
  }, null, 2) + '\n');
  console.log(`\nresults: ${file} (${((performance.now() - t0) / 1000).toFixed(1)} s total)`);
  const errored = results.some((r) => r.error) || targets.some((t) => t.pass === null);
  const failed = targets.some((t) => t.pass === false);
  return errored || (args.strict && failed) ? 1 : 0;
}

process.on('exit', cleanupAllSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    process.stderr.write(`\nbench: ${sig}, stopping children and removing temp dirs\n`);
    cleanupAllSync();
    process.exit(130);
  });
}

main().then(
  (code) => {
    cleanupAllSync();
    process.exit(code);
  },
  (err) => {
    process.stderr.write(`bench: ${(err as Error)?.message ?? err}\n`);
    cleanupAllSync();
    process.exit(2);
  },
);
