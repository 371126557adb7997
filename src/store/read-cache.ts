/**
 * The embedded store's read cache: the hot lookups of every request (token -> principal, vault +
 * secret + sealed version, membership, the proxy's token/vault/service/grant row) answered from
 * memory while nothing they depend on has changed.
 *
 * It is only as good as its knowledge of changes, so it learns of every one:
 * - this process's writes: every statement run on the writer connection is classified by its SQL
 *   (once per statement text); a statement that changes anything but the append-only audit log and
 *   the proxy's quota counters clears the cache when it runs, and again when its transaction ends
 *   (reads on the other connection may have refilled it meanwhile with the still-committed rows);
 * - other processes' writes to the same file (an offline `latchkey` command, a second server):
 *   SQLite's `PRAGMA data_version` on the writer connection changes exactly when another connection
 *   committed; it is checked before a lookup, at most once per FOREIGN_CHECK_MS (the pragma costs
 *   about as much as the lookup it guards), so another process's commit is seen within 1 ms.
 * So a revocation, a deleted secret or a changed grant is seen by the very next request, as
 * without the cache. Only reads outside transactions are cached; entries hold what the database
 * holds (sealed values and token hashes, never a plaintext); expiry times in them are compared
 * by the callers on every request. PostgreSQL has no cache: its replicas write
 * the same rows, and their commits are not visible to a per-process cache.
 */
export type StatementKind = 'read' | 'begin' | 'end' | 'log' | 'change';

/** Writes that never change what a cached lookup returns. */
const LOG_WRITE = /^\s*(?:insert\s+into|update|delete\s+from)\s+"?(?:audit_events|audit_head|proxy_quota)"?\s/i;

export function classify(sql: string): StatementKind {
  const s = sql.trimStart().toLowerCase();
  if (s.startsWith('select') || s.startsWith('pragma data_version') || s.startsWith('explain')) return 'read';
  if (s.startsWith('begin') || s.startsWith('savepoint')) return 'begin';
  if (s.startsWith('commit') || s.startsWith('rollback') || s.startsWith('release') || s.startsWith('end')) return 'end';
  if (LOG_WRITE.test(sql)) return 'log';
  return 'change';
}

const FOREIGN_CHECK_MS = 1;

export class ReadCache {
  private entries = new Map<string, { value: unknown }>();
  private changedInTx = false;
  private foreign: number;
  private checkedAt = performance.now();
  /** for tests and the bench */
  hits = 0;
  misses = 0;
  clears = 0;

  /** `max`: entries before the cache starts over (a secret row with its sealed value is about 1 KiB) */
  constructor(private readonly dataVersion: () => number, private readonly max = 10_000) {
    this.foreign = dataVersion();
  }

  /** Called after a statement ran on the writer connection. */
  ran(kind: StatementKind): void {
    if (kind === 'change') {
      this.changedInTx = true;
      this.clear();
    } else if (kind === 'end' && this.changedInTx) {
      this.changedInTx = false;
      this.clear();
    }
  }

  /** The cached answer for `key`, or undefined (then the caller queries and calls `set`). */
  get(key: string): { value: unknown } | undefined {
    const t = performance.now();
    if (t - this.checkedAt >= FOREIGN_CHECK_MS) {
      this.checkedAt = t;
      const v = this.dataVersion();
      if (v !== this.foreign) {
        this.foreign = v;
        this.clear();
        this.misses++;
        return undefined;
      }
    }
    const e = this.entries.get(key);
    if (!e) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    return e;
  }

  set(key: string, value: unknown): void {
    if (this.entries.size >= this.max) this.entries.clear();
    this.entries.set(key, { value });
  }

  clear(): void {
    this.entries.clear();
    this.clears++;
  }
}
