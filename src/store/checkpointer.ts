/**
 * WAL checkpoints off the event loop.
 *
 * SQLite's automatic checkpoint runs inside the COMMIT that crosses 1,000 WAL pages, on the
 * committing connection: it copies the pages into the database file and fsyncs it, which stalls
 * the whole server for several milliseconds about once per hundred commits (the p99 of every
 * audited request). Instead the writer runs with `wal_autocheckpoint = 0` and a worker thread with
 * its own connection runs `PRAGMA wal_checkpoint(PASSIVE)` at most every INTERVAL_MS while there
 * are new commits. PASSIVE never waits for (or blocks) the writer or the readers; what it cannot
 * copy yet is copied next time. A crash mid-checkpoint is safe (the WAL stays the record).
 *
 * The worker starts on the first commit that needs a checkpoint (not at start-up). If it cannot
 * start or fails, the writer goes back to automatic checkpoints.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';

const INTERVAL_MS = 200;

/** The worker: CommonJS source, evaluated (so it runs the same from src/ under tests and from dist/). */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path);
db.pragma('busy_timeout = 1000');
parentPort.on('message', (m) => {
  if (m === 'close') { db.close(); parentPort.close(); return; }
  try {
    const r = db.pragma('wal_checkpoint(PASSIVE)')[0] || {};
    parentPort.postMessage({ ok: true, busy: r.busy, log: r.log, checkpointed: r.checkpointed });
  } catch (err) {
    parentPort.postMessage({ ok: false, code: err && err.code });
  }
});
`;

export interface CheckpointStats {
  runs: number;
  failures: number;
  /** frames in the WAL and frames copied, as of the last run */
  log: number;
  checkpointed: number;
}

export class Checkpointer {
  private worker: Worker | null = null;
  private running = false;
  private pending = false;
  private lastRun = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private disabled = false;
  private waiters: Array<() => void> = [];
  readonly stats: CheckpointStats = { runs: 0, failures: 0, log: 0, checkpointed: 0 };

  constructor(private readonly path: string, private readonly writer: BetterSqlite3.Database, private readonly onError: (code: string | undefined) => void = () => {}) {
    writer.pragma('wal_autocheckpoint = 0');
  }

  /** After a commit: a checkpoint will run within INTERVAL_MS. */
  nudge(): void {
    if (this.closed || this.disabled) return;
    this.pending = true;
    if (this.running || this.timer) return;
    const wait = Math.max(0, this.lastRun + INTERVAL_MS - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.run();
    }, wait);
    this.timer.unref();
  }

  /** Resolves after the next checkpoint has run (tests). */
  flush(): Promise<void> {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.pending = true;
      if (!this.running) {
        if (this.timer) clearTimeout(this.timer);
        this.timer = null;
        this.run();
      }
    });
  }

  private start(): Worker | null {
    if (this.worker) return this.worker;
    try {
      const driver = createRequire(import.meta.url).resolve('better-sqlite3');
      // execArgv: none of the parent's (--input-type=module would make the CommonJS source fail)
      const w = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], workerData: { path: this.path, driver } });
      w.unref();
      w.on('message', (m: { ok: boolean; code?: string; log?: number; checkpointed?: number }) => this.done(m));
      w.on('error', (err) => this.fail((err as { code?: string }).code));
      this.worker = w;
      return w;
    } catch (err) {
      this.fail((err as { code?: string }).code);
      return null;
    }
  }

  private run(): void {
    if (this.closed || this.disabled || this.running || !this.pending) return this.release();
    const w = this.start();
    if (!w) return;
    this.pending = false;
    this.running = true;
    w.postMessage('checkpoint');
  }

  private done(m: { ok: boolean; code?: string; log?: number; checkpointed?: number }): void {
    this.running = false;
    this.lastRun = Date.now();
    this.stats.runs++;
    if (!m.ok) {
      this.stats.failures++;
      this.onError(m.code);
    } else {
      this.stats.log = m.log ?? 0;
      this.stats.checkpointed = m.checkpointed ?? 0;
    }
    this.release();
    if (this.pending) this.nudge();
  }

  private release(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** The worker is gone: back to SQLite's own checkpoints on the writer. */
  private fail(code: string | undefined): void {
    this.disabled = true;
    this.running = false;
    this.worker = null;
    this.onError(code);
    try {
      this.writer.pragma('wal_autocheckpoint = 1000');
    } catch {
      /* the writer is closed */
    }
    this.release();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const w = this.worker;
    this.worker = null;
    if (!w) return;
    const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
    w.postMessage('close');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
    await w.terminate().catch(() => {});
    this.release();
  }
}
