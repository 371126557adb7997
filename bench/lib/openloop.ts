/**
 * Open-loop load at a fixed rate: request i is due at start + i/rate whether or not earlier ones
 * were answered, and its latency counts from that scheduled time (no coordinated omission).
 * `send(i)` resolves with null when the answer was right, or a short reason when it was not.
 */
export interface OpenLoopResult {
  ok: number;
  errors: number;
  firstError: string | null;
  /** latencies (ms) of the good answers, when `record` */
  lat: number[];
  wallMs: number;
  /** how late the timer fired at worst: a busy load generator shows here */
  maxSendLagMs: number;
  scheduled: number;
}

export async function openLoop(rate: number, durationMs: number, record: boolean, send: (i: number) => Promise<string | null>): Promise<OpenLoopResult> {
  const n = Math.max(1, Math.round((rate * durationMs) / 1000));
  const interval = 1000 / rate;
  const lat = new Float64Array(n).fill(NaN);
  let errors = 0;
  let firstError: string | null = null;
  let sent = 0;
  let maxSendLagMs = 0;
  const inflight: Promise<void>[] = [];
  const start = performance.now() + 2;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (sent < n && start + sent * interval <= now) {
        const idx = sent++;
        const scheduled = start + idx * interval;
        maxSendLagMs = Math.max(maxSendLagMs, now - scheduled);
        inflight.push(send(idx).then(
          (bad) => {
            if (bad === null) lat[idx] = performance.now() - scheduled;
            else {
              errors++;
              firstError ??= bad;
            }
          },
          (err) => {
            errors++;
            firstError ??= String((err as Error)?.message ?? err);
          },
        ));
      }
      if (sent >= n) return resolve();
      setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
    };
    tick();
  });
  await Promise.all(inflight);
  const wallMs = performance.now() - start;
  const good = Array.from(lat).filter((x) => !Number.isNaN(x));
  return { ok: good.length, errors, firstError, lat: record ? good : [], wallMs, maxSendLagMs, scheduled: n };
}
