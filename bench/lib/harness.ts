/** Shapes shared by every benchmark, and the registry they are run from. */

export interface BenchOptions {
  quick: boolean;
  /** performance.now() by which the whole run should be finished (benchmarks may shrink or skip optional work) */
  deadline: number;
  log(msg: string): void;
}

export interface Target {
  /** e.g. "reads: Latchkey / ceiling" */
  name: string;
  /** human text of the SPEC §9 target, e.g. "≥ 0.50" */
  target: string;
  /** human text of what was measured */
  measured: string;
  value: number | null;
  /** null = not measured (reported as SKIP/ERROR, never as PASS) */
  pass: boolean | null;
  note?: string;
}

export interface TableOut {
  title: string;
  header: string[];
  rows: Array<Array<string | number>>;
}

export interface BenchResult {
  name: string;
  title: string;
  tables: TableOut[];
  targets: Target[];
  notes: string[];
  /** raw figures for results.json */
  data: Record<string, unknown>;
  error?: string;
}

export interface Benchmark {
  /** the name used with --only */
  name: string;
  title: string;
  /** rough duration in seconds (full, quick), for the plan printed at start */
  estimateSec: [number, number];
  run(opts: BenchOptions): Promise<BenchResult>;
}

/** A target check with a simple comparison. */
export function check(name: string, target: string, value: number | null, ok: (v: number) => boolean, measured: string, note?: string): Target {
  return { name, target, measured, value, pass: value === null || Number.isNaN(value) ? null : ok(value), ...(note ? { note } : {}) };
}

export function emptyResult(b: Pick<Benchmark, 'name' | 'title'>): BenchResult {
  return { name: b.name, title: b.title, tables: [], targets: [], notes: [], data: {} };
}
