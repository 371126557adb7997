/** Percentiles, CPU windows and a plain-text table. */
import { cpus } from 'node:os';
import { machineCpuSeconds, procCpuSeconds } from './proc.js';

export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (!sorted.length) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx]!;
}

export interface LatencySummary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export function summarize(values: ArrayLike<number>): LatencySummary {
  const a = Float64Array.from(values as ArrayLike<number>).sort();
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i]!;
  return {
    n: a.length, p50: percentile(a, 50), p90: percentile(a, 90), p99: percentile(a, 99), p999: percentile(a, 99.9),
    max: a.length ? a[a.length - 1]! : NaN, mean: a.length ? sum / a.length : NaN,
  };
}

export function median(values: number[]): number {
  return summarize(values).p50;
}

/** CPU used by some processes and by the whole machine between start() and stop(), in % of one core. */
export class CpuWindow {
  private t0 = 0;
  private p0 = new Map<number, number | null>();
  private m0: { busy: number; total: number } | null = null;
  private self0: NodeJS.CpuUsage | null = null;

  constructor(private readonly pids: Record<string, number>) {}

  start(): this {
    this.t0 = performance.now();
    for (const pid of Object.values(this.pids)) this.p0.set(pid, procCpuSeconds(pid));
    this.m0 = machineCpuSeconds();
    this.self0 = process.cpuUsage();
    return this;
  }

  /** { <name>: % of one core, self: this process, machine: all cores busy (max = cores × 100), other: machine minus the named and self } */
  stop(): Record<string, number | null> {
    const wall = (performance.now() - this.t0) / 1000;
    const out: Record<string, number | null> = {};
    let named = 0;
    for (const [name, pid] of Object.entries(this.pids)) {
      const a = this.p0.get(pid);
      const b = procCpuSeconds(pid);
      out[name] = a == null || b == null ? null : round1(((b - a) / wall) * 100);
      named += out[name] ?? 0;
    }
    const u = process.cpuUsage(this.self0 ?? undefined);
    out.self = round1(((u.user + u.system) / 1e6 / wall) * 100);
    const m1 = machineCpuSeconds();
    if (this.m0 && m1) {
      // /proc/stat busy seconds over the window, as % of one core (2 cores -> up to 200 %)
      const busy = ((m1.busy - this.m0.busy) / ((m1.total - this.m0.total) || 1)) * cpus().length * 100;
      out.machine = round1(busy);
      out.other = round1(Math.max(0, busy - named - (out.self ?? 0)));
    } else {
      out.machine = null;
      out.other = null;
    }
    return out;
  }
}

export function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

export function fmt(x: number | null | undefined, digits = 2): string {
  if (x === null || x === undefined || Number.isNaN(x)) return '–';
  if (!Number.isFinite(x)) return '∞';
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString('en-US');
  if (Math.abs(x) >= 100) return x.toFixed(Math.min(digits, 1));
  return x.toFixed(digits);
}

export function fmtPct(x: number | null | undefined): string {
  return x === null || x === undefined || Number.isNaN(x) ? '–' : `${x.toFixed(0)}%`;
}

/** Renders rows as an aligned text table; numbers right-aligned. */
export function table(header: string[], rows: Array<Array<string | number>>): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (typeof c === 'number' ? fmt(c) : c)))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const numeric = header.map((_, i) => rows.every((r) => typeof r[i] === 'number' || /^[-–0-9.,%×∞ms ]*$/.test(String(r[i] ?? ''))));
  const line = (r: string[]) => r.map((c, i) => (numeric[i] && i > 0 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const sep = widths.map((w) => '─'.repeat(w)).join('  ');
  return [line(cells[0]!), sep, ...cells.slice(1).map(line)].join('\n');
}
