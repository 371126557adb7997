/**
 * list: GET /v1/vaults/default/secrets?limit=100 must cost O(page), not O(vault). Vaults of 10k,
 * 100k and (time permitting) 1M secrets each run in their own server process at the same time, and
 * requests alternate between them, so machine noise hits every size alike. Two pages are timed: the
 * first, and one half-way through the vault via a cursor.
 */
import { sqlitePathFor } from '../../src/store/index.js';
import { encodeCursor } from '../../src/core/secrets.js';
import { statSync } from 'node:fs';
import { check, emptyResult, type Benchmark, type BenchOptions, type BenchResult } from '../lib/harness.js';
import { bulkInsertSecrets, bulkName } from '../lib/bulk.js';
import { makeTempDir, removeTempDir } from '../lib/proc.js';
import { api, startLatchkey, type LatchkeyChild } from '../lib/servers.js';
import { CpuWindow, fmt, fmtPct, summarize, type LatencySummary } from '../lib/stats.js';

const PREFIX = 'BULK_';
const PAGE = 100;
const MAX_RATIO = 1.5;

interface Size {
  n: number;
  home: string;
  token: string;
  insertMs: number;
  dbBytes: number;
  lk: LatchkeyChild | null;
  first: number[];
  deep: number[];
}

async function run(o: BenchOptions): Promise<BenchResult> {
  const res = emptyResult(list);
  const rounds = o.quick ? 80 : 250;
  const warm = o.quick ? 10 : 25;
  const sizes: Size[] = [];
  try {
    const want = o.quick ? [10_000, 100_000] : [10_000, 100_000, 1_000_000];
    for (const n of want) {
      if (n === 1_000_000) {
        // estimate from the 100k load (×10, plus margin) and leave ~30 s for the measurement and what follows
        const per = sizes.at(-1)!.insertMs / sizes.at(-1)!.n;
        const estMs = per * n * 1.3 + 5000;
        if (performance.now() + estMs > o.deadline - 30_000) {
          res.notes.push(`1,000,000 secrets skipped: the load would take ~${fmt(estMs / 1000, 0)} s and the run's time budget does not allow it (run with --only list to include it).`);
          break;
        }
      }
      const home = makeTempDir(`list${n}`);
      const init = await startLatchkey(home);
      const token = init.token;
      await init.stop();
      o.log(`list: bulk-inserting ${n.toLocaleString('en-US')} secrets`);
      const insertMs = bulkInsertSecrets(sqlitePathFor(home), 'default', PREFIX, 0, n);
      sizes.push({ n, home, token, insertMs, dbBytes: statSync(sqlitePathFor(home)).size, lk: null, first: [], deep: [] });
    }
    if (o.quick) res.notes.push('quick: 10k vs 100k only (SPEC asks 1,000,000; the full run includes it when time allows).');
    await Promise.all(sizes.map(async (s) => {
      s.lk = await startLatchkey(s.home, { token: s.token, profileTag: `list-${s.n}` });
    }));

    const deepPath = (s: Size) => `/v1/vaults/default/secrets?limit=${PAGE}&cursor=${encodeURIComponent(encodeCursor(bulkName(PREFIX, Math.floor(s.n / 2))))}`;
    const firstPath = `/v1/vaults/default/secrets?limit=${PAGE}`;
    // answers must be right: a full first page with a cursor, and the deep page starting right after its cursor
    for (const s of sizes) {
      const a = await api(s.lk!.url, s.token, 'GET', firstPath);
      if (a.status !== 200 || a.json?.items?.length !== PAGE || !a.json?.next_cursor || a.json.items[0].name !== bulkName(PREFIX, 0)) {
        throw new Error(`first page at ${s.n}: HTTP ${a.status} ${JSON.stringify(a.json).slice(0, 200)}`);
      }
      const b = await api(s.lk!.url, s.token, 'GET', deepPath(s));
      if (b.status !== 200 || b.json?.items?.length !== PAGE || b.json.items[0].name !== bulkName(PREFIX, Math.floor(s.n / 2) + 1)) {
        throw new Error(`deep page at ${s.n}: HTTP ${b.status} ${JSON.stringify(b.json).slice(0, 200)}`);
      }
    }
    o.log(`list: timing ${rounds} rounds, sizes alternating`);
    const cpu = new CpuWindow(Object.fromEntries(sizes.map((s) => [`server_${s.n}`, s.lk!.pid])));
    for (let r = -warm; r < rounds; r++) {
      if (r === 0) cpu.start();
      // rotate which size goes first so none always gets the warm (or cold) slot
      for (let k = 0; k < sizes.length; k++) {
        const s = sizes[(r + warm + k) % sizes.length]!;
        const a = await api(s.lk!.url, s.token, 'GET', firstPath);
        const b = await api(s.lk!.url, s.token, 'GET', deepPath(s));
        if (a.status !== 200 || b.status !== 200) throw new Error(`list at ${s.n}: HTTP ${a.status}/${b.status}`);
        if (r >= 0) {
          s.first.push(a.ms);
          s.deep.push(b.ms);
        }
      }
    }
    const c = cpu.stop();
    const base = sizes[0]!;
    const sum = (xs: number[]): LatencySummary => summarize(xs);
    const b1 = sum(base.first).p50;
    const b2 = sum(base.deep).p50;
    res.tables.push({
      title: `Listing a page of ${PAGE} (metadata only), sequential requests, ${rounds} rounds alternating between vault sizes`,
      header: ['secrets in vault', 'db MB', 'load s', 'first p50 ms', 'first p99 ms', 'deep p50 ms', 'deep p99 ms', 'first vs 10k', 'deep vs 10k', 'server CPU'],
      rows: sizes.map((s) => {
        const f = sum(s.first);
        const d = sum(s.deep);
        return [s.n.toLocaleString('en-US'), fmt(s.dbBytes / 1e6, 0), fmt(s.insertMs / 1000, 1), fmt(f.p50), fmt(f.p99), fmt(d.p50), fmt(d.p99),
          `${fmt(f.p50 / b1, 2)}×`, `${fmt(d.p50 / b2, 2)}×`, fmtPct(c[`server_${s.n}`])];
      }),
    });
    res.notes.push(`list: the client (this process) used ${fmtPct(c.self)} of a core; machine ${fmtPct(c.machine)} (other load ${fmtPct(c.other)}).`);
    const top = sizes.at(-1)!;
    const ratio = Math.max(sum(top.first).p50 / b1, sum(top.deep).p50 / b2);
    res.targets.push(check(`list: page latency at ${top.n.toLocaleString('en-US')} vs 10,000 secrets`, `≈ 1 (≤ ${MAX_RATIO}×)`, ratio, (v) => v <= MAX_RATIO,
      `${fmt(ratio, 2)}× (worst of first/deep page, p50)`, top.n < 1_000_000 ? 'SPEC scale is 1,000,000; this run stopped at ' + top.n.toLocaleString('en-US') : undefined));
    res.data = {
      rounds, sizes: sizes.map((s) => ({ n: s.n, insertSeconds: s.insertMs / 1000, dbBytes: s.dbBytes, first: sum(s.first), deep: sum(s.deep) })), cpu: c, ratio,
    };
    return res;
  } finally {
    await Promise.all(sizes.map((s) => s.lk?.stop()));
    for (const s of sizes) removeTempDir(s.home);
  }
}

export const list: Benchmark = {
  name: 'list',
  title: 'Listing stays O(page) as the vault grows',
  estimateSec: [45, 15],
  run,
};
