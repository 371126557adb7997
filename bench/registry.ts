/**
 * The named benchmarks `npm run bench` runs, in order (`--only <name>[,<name>]` picks some).
 *
 * To add one (e.g. the proxy benchmarks of SPEC §9): write bench/benchmarks/<name>.ts exporting a
 * `Benchmark` (see lib/harness.ts: name, title, estimateSec, run(opts) → tables, targets, notes,
 * data), add it to BENCHMARKS, and drop its SPEC lines from PENDING. The helpers you will want:
 *   lib/servers.ts  startLatchkey(home) (real server in a child, owner token; extend its child for the
 *                   proxy port), startLoadgen() + rpc(lg, 'closed'|'open', {target}) (undici Pool,
 *                   closed loop or fixed-rate open loop, CPU of server and load generator)
 *   lib/proc.ts     tracked children and temp dirs (always cleaned up), /proc CPU accounting
 *   lib/stats.ts    percentiles, CpuWindow, table formatting
 * Every figure should be a ratio against a baseline run in the same process tree at the same time
 * (e.g. a bare node:http + undici forwarding proxy, or a direct request to the upstream).
 */
import type { Benchmark } from './lib/harness.js';
import { reads } from './benchmarks/reads.js';
import { rotateAll } from './benchmarks/rotate-all.js';
import { startup } from './benchmarks/startup.js';
import { list } from './benchmarks/list.js';
import { proxy } from './benchmarks/proxy.js';

export const BENCHMARKS: Benchmark[] = [reads, rotateAll, startup, list, proxy];

/** SPEC §9 targets no benchmark measures yet: reported as SKIP so the gap stays visible. */
export const PENDING: Array<{ name: string; target: string; planned: string }> = [];
