/**
 * startup: wall time from spawning a process until GET /v1/health answers 200, median of 5,
 * on an already-initialised data dir. Three processes, interleaved run by run:
 *   - the CLI as a user runs it: `node bin/latchkey.js server --port P --proxy-port 0` (the target, ≤ 1 s);
 *     bin/latchkey.js runs the bundled build (dist/bin/latchkey.mjs, vite.cli.config.ts)
 *   - the bench's own child that calls startServer() directly (no CLI layer) from tsc's unbundled
 *     output, for comparison: what the bundle saves
 *   - a bare `node -e` http server answering /v1/health: the baseline (Node's own start-up)
 */
import { get } from 'node:http';
import { join } from 'node:path';
import { check, emptyResult, type Benchmark, type BenchOptions, type BenchResult } from '../lib/harness.js';
import { benchPath, cleanEnv, forkTracked, freePort, makeTempDir, removeTempDir, repoRoot, spawnTracked, stopChild, type Tracked } from '../lib/proc.js';
import { startLatchkey } from '../lib/servers.js';
import { fmt, summarize } from '../lib/stats.js';

const BARE = "require('http').createServer((q,s)=>{s.writeHead(200,{'content-type':'application/json'});s.end('{\"status\":\"ok\"}')}).listen(+process.env.PORT,'127.0.0.1')";

function health(port: number): Promise<number> {
  return new Promise((resolve) => {
    const req = get({ host: '127.0.0.1', port, path: '/v1/health', agent: false, timeout: 500 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => {
      req.destroy();
      resolve(0);
    });
  });
}

interface Variant {
  key: string;
  label: string;
  start(port: number, home: string): Tracked;
}

async function measure(v: Variant, home: string, timeoutMs: number): Promise<{ ms: number | null; error?: string }> {
  const port = await freePort();
  const t0 = performance.now();
  const t = v.start(port, home);
  let exited: string | null = null;
  void t.exited.then(({ code, signal }) => {
    exited = `exited (code ${code}${signal ? `, ${signal}` : ''})`;
  });
  try {
    for (;;) {
      const status = await health(port);
      if (status === 200) return { ms: performance.now() - t0 };
      if (exited) return { ms: null, error: `${exited} before /v1/health answered; output: ${t.output().trim().slice(-300) || '(none)'}` };
      if (performance.now() - t0 > timeoutMs) return { ms: null, error: `no 200 from /v1/health within ${timeoutMs} ms (last status ${status})` };
      await new Promise((r) => setTimeout(r, 2));
    }
  } finally {
    await stopChild(t, 5000);
  }
}

async function run(o: BenchOptions): Promise<BenchResult> {
  const res = emptyResult(startup);
  const runs = o.quick ? 3 : 5;
  const home = makeTempDir('startup');
  try {
    // initialise the data dir once (master key file, database, owner), then stop
    const init = await startLatchkey(home);
    await init.stop();
    const root = repoRoot();
    const variants: Variant[] = [
      { key: 'bare', label: 'baseline: bare node -e http server', start: (port) => spawnTracked(process.execPath, ['-e', BARE], { env: cleanEnv({ PORT: String(port) }) }) },
      {
        key: 'cli', label: 'latchkey server (CLI: node bin/latchkey.js)',
        start: (port, h) => spawnTracked(process.execPath, [join(root, 'bin/latchkey.js'), 'server', '--port', String(port), '--proxy-port', '0'], { cwd: root, env: cleanEnv({ LATCHKEY_HOME: h }) }),
      },
      {
        key: 'direct', label: 'startServer() in a child (unbundled, no CLI)',
        start: (port, h) => forkTracked(benchPath('children/latchkey-server.js'), [], { env: cleanEnv({ BENCH_HOME: h, BENCH_PORT: String(port) }) }),
      },
    ];
    const times: Record<string, number[]> = { bare: [], cli: [], direct: [] };
    const errors: Record<string, string> = {};
    for (let i = 0; i < runs; i++) {
      for (const v of variants) {
        if (errors[v.key]) continue;
        const r = await measure(v, home, 10_000);
        if (r.ms === null) errors[v.key] = r.error ?? 'failed';
        else times[v.key]!.push(r.ms);
      }
    }
    o.log(`startup: ${runs} runs each done`);
    const bareMed = summarize(times.bare!).p50;
    res.tables.push({
      title: `Start-up: spawn → GET /v1/health 200, on an initialised data dir, ${runs} runs each (interleaved)`,
      header: ['process', 'median ms', 'min ms', 'max ms', 'vs bare node', 'runs'],
      rows: variants.map((v) => {
        const xs = times[v.key]!;
        const s = summarize(xs);
        return errors[v.key] && !xs.length
          ? [v.label, 'ERROR', '–', '–', '–', '0']
          : [v.label, fmt(s.p50, 0), fmt(Math.min(...xs), 0), fmt(s.max, 0), `${fmt(s.p50 / bareMed, 1)}×`, String(xs.length)];
      }),
    });
    for (const [k, e] of Object.entries(errors)) res.notes.push(`${variants.find((v) => v.key === k)!.label}: ${e}`);
    const cliMed = times.cli!.length ? summarize(times.cli!).p50 : null;
    const directMed = times.direct!.length ? summarize(times.direct!).p50 : null;
    res.targets.push(check('start-up: CLI to listening (median)', '≤ 1 s', errors.cli ? null : cliMed, (v) => v <= 1000,
      cliMed === null || errors.cli ? `not measured (${(errors.cli ?? '').slice(0, 80)})` : `${fmt(cliMed, 0)} ms (bare node ${fmt(bareMed, 0)} ms)`,
      errors.cli && directMed !== null ? `startServer() without the CLI: ${fmt(directMed, 0)} ms` : undefined));
    res.data = { runs, times, errors, medians: { bare: bareMed, cli: cliMed, direct: directMed } };
    return res;
  } finally {
    removeTempDir(home);
  }
}

export const startup: Benchmark = {
  name: 'startup',
  title: 'Start-up to listening',
  estimateSec: [15, 8],
  run,
};
