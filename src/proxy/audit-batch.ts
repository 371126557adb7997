/**
 * `proxy.request` events, written in batches after the response (SPEC §4): flushed every
 * `intervalMs` or as soon as `maxBatch` are queued, each batch one transaction on the audit chain.
 * Never dropped: a batch that fails stays queued (in order) and is retried with backoff, and
 * while the store refuses them the proxy answers 503 to new requests (`healthy` is false).
 */
import type { Core } from '../core/core.js';
import type { AuditInput } from '../core/audit.js';
import type { OpContext } from '../core/principal.js';

export interface AuditBatchOptions {
  intervalMs?: number;
  maxBatch?: number;
  /** beyond this many queued events new requests are refused even while flushes succeed */
  maxQueued?: number;
  onError?: (err: unknown, queued: number) => void;
}

interface Entry {
  ctx: OpContext;
  input: AuditInput;
}

export class AuditBatch {
  private queue: Entry[] = [];
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private failing = false;
  private backoff = 0;
  private closed = false;
  private readonly intervalMs: number;
  private readonly maxBatch: number;
  private readonly maxQueued: number;
  /** events written so far (tests, status) */
  written = 0;

  constructor(private readonly core: Core, private readonly opts: AuditBatchOptions = {}) {
    // a batch is one synchronous transaction on the event loop (~20 µs per event): every 10 ms
    // keeps that pause near 0.2 ms at 1,000 req/s (it was ~1 ms every 50 ms, visible at p99)
    this.intervalMs = opts.intervalMs ?? 10;
    this.maxBatch = opts.maxBatch ?? 200;
    this.maxQueued = opts.maxQueued ?? 50_000;
  }

  /** False while the audit store refuses events (or the queue is too long): refuse new requests. */
  get healthy(): boolean {
    return !this.failing && this.queue.length < this.maxQueued;
  }

  get queued(): number {
    return this.queue.length;
  }

  push(ctx: OpContext, input: AuditInput): void {
    this.queue.push({ ctx, input });
    if (this.queue.length >= this.maxBatch && !this.failing) this.kick(0);
    else this.kick(this.intervalMs);
  }

  private kick(delay: number): void {
    if (this.flushing) return;
    if (this.timer) {
      if (delay > 0) return;
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flushing = this.run().finally(() => {
        this.flushing = null;
        if (this.queue.length && !this.closed) this.kick(this.failing ? this.backoff : this.queue.length >= this.maxBatch ? 0 : this.intervalMs);
      });
    }, delay);
    this.timer.unref?.();
  }

  /** Writes queued batches until the queue is empty or a write fails. */
  private async run(): Promise<void> {
    while (this.queue.length) {
      const batch = this.queue.slice(0, this.maxBatch);
      try {
        const rows = await this.core.audit.appendEntries(this.core.store, batch);
        this.queue.splice(0, batch.length);
        this.written += batch.length;
        this.failing = false;
        this.backoff = 0;
        this.core.audit.emit(rows);
      } catch (err) {
        this.failing = true;
        this.backoff = Math.min(this.backoff ? this.backoff * 2 : 100, 2000);
        this.opts.onError?.(err, this.queue.length);
        return;
      }
    }
  }

  /** Flushes now; resolves when the queue is empty, rejects if a write fails. */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    while (this.flushing) await this.flushing;
    await (this.flushing = this.run().finally(() => (this.flushing = null)));
    if (this.queue.length) throw new Error(`audit store refused ${this.queue.length} proxy events`);
  }

  /** Flushes what is queued, retrying for up to `timeoutMs`; reports what could not be written. */
  async close(timeoutMs = 5000): Promise<void> {
    this.closed = true;
    const until = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.flush();
        return;
      } catch (err) {
        if (Date.now() >= until) {
          this.opts.onError?.(err, this.queue.length);
          return;
        }
        await new Promise((r) => setTimeout(r, Math.min(this.backoff || 100, 500)));
      }
    }
  }
}
