/**
 * SQLite durability without blocking the event loop (src/store/sqlite-durable.ts): the writer runs
 * with synchronous=NORMAL and every commit is followed by an fdatasync of the WAL, off the event
 * loop, BEFORE the caller goes on. These tests prove the fsync happens after each commit (in a
 * transaction and for a lone statement), that concurrent commits share fsyncs (group commit), that
 * reads never wait for one, and that the data survives the process being killed.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type KyselyStore } from '../src/store/index.js';

interface Internals { durable: { syncs: number } }

describe('SQLite durable commits', () => {
  let dir: string;
  let store: KyselyStore;
  const syncs = () => (store as unknown as Internals).durable.syncs;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lk-durable-'));
    store = await openStore({ sqlitePath: join(dir, 'latchkey.db') });
    await store.migrate();
  });
  afterAll(async () => {
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('the database file is private (0600) and in WAL mode with synchronous=NORMAL', () => {
    expect(statSync(join(dir, 'latchkey.db')).mode & 0o777).toBe(0o600);
    const raw = (store as unknown as { raw: { writer: { pragma(s: string, o?: object): unknown } } }).raw.writer;
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(raw.pragma('synchronous', { simple: true })).toBe(1);
  });

  it('a transaction is fsynced before tx() returns', async () => {
    const before = syncs();
    await store.tx((s) => s.setMeta('durable.a', '1'));
    expect(syncs()).toBe(before + 1);
    expect(await store.getMeta('durable.a')).toBe('1');
  });

  it('a lone write outside a transaction is fsynced before it returns', async () => {
    const before = syncs();
    await store.setMeta('durable.b', '2');
    expect(syncs()).toBeGreaterThan(before);
  });

  it('plain reads cause no fsync', async () => {
    const before = syncs();
    for (let i = 0; i < 50; i++) await store.getMeta('durable.a');
    expect(syncs()).toBe(before);
  });

  it('concurrent commits share fsyncs (group commit) and each waits for one that started after it', async () => {
    const before = syncs();
    await Promise.all(Array.from({ length: 200 }, (_, i) => store.tx((s) => s.setMeta(`durable.c${i}`, String(i)))));
    const used = syncs() - before;
    expect(used).toBeGreaterThanOrEqual(1);
    expect(used).toBeLessThan(200);
    for (let i = 0; i < 200; i += 37) expect(await store.getMeta(`durable.c${i}`)).toBe(String(i));
  });

  it('no commit is answered before an fsync that started after it, also while other transactions begin meanwhile (200 concurrent transactions)', async () => {
    // seen from outside: commits are counted as they run, fsyncs note the commit count when they start
    const inner = store as unknown as { durable: { fsync(): Promise<void> }; raw: { cache: { ran(kind: string): void } } };
    const cache = inner.raw.cache;
    const durable = inner.durable;
    let commits = 0;
    let covered = 0;
    const ran = cache.ran.bind(cache);
    const fsync = durable.fsync.bind(durable);
    cache.ran = (kind: string) => {
      if (kind === 'end') commits++;
      ran(kind);
    };
    durable.fsync = async () => {
      const at = commits;
      await fsync();
      covered = Math.max(covered, at);
    };
    const early: number[] = [];
    try {
      await Promise.all(Array.from({ length: 200 }, async (_, i) => {
        let mine = 0;
        // the transaction holds the connection: the next commit to run is its own
        await store.tx(async (t) => {
          await t.setMeta(`durable.race${i}`, String(i));
          mine = commits + 1;
        });
        if (covered < mine) early.push(i);
      }));
    } finally {
      delete (cache as { ran?: unknown }).ran;
      delete (durable as { fsync?: unknown }).fsync;
    }
    expect(early, 'transactions answered before their commit was fsynced').toEqual([]);
  });

  it('a commit survives kill -9 right after tx() returns', async () => {
    const path = join(dir, 'killed.db');
    const script = `
      const { openStore } = await import(${JSON.stringify(new URL('../dist/src/store/index.js', import.meta.url).href)});
      const s = await openStore({ sqlitePath: ${JSON.stringify(path)} });
      await s.migrate();
      await s.tx((t) => t.setMeta('killed', 'kept'));
      process.kill(process.pid, 'SIGKILL');`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.signal).toBe('SIGKILL');
    const again = await openStore({ sqlitePath: path });
    try {
      expect(await again.getMeta('killed')).toBe('kept');
    } finally {
      await again.close();
    }
  });
});
