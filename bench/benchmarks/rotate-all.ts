/**
 * rotate_all: POST /v1/vaults/default/rotate-all over 10,000 secrets (target ≤ 3 s), next to a bare
 * floor measured in the same run: the same envelope re-encryption (unwrap DEK, decrypt, new DEK,
 * encrypt, wrap) with plain better-sqlite3 UPDATEs in batches of 500 per durable (FULL) transaction.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { check, emptyResult, type Benchmark, type BenchOptions, type BenchResult } from '../lib/harness.js';
import { makeTempDir, removeTempDir } from '../lib/proc.js';
import { api, startLatchkey, type LatchkeyChild } from '../lib/servers.js';
import { CpuWindow, fmt, fmtPct } from '../lib/stats.js';

const BATCH = 500;

function seal(key: Buffer, plain: Buffer, aad: Buffer): Buffer {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(aad);
  const ct = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([Buffer.from([1]), iv, ct, c.getAuthTag()]);
}

function open(key: Buffer, sealed: Buffer, aad: Buffer): Buffer {
  const d = createDecipheriv('aes-256-gcm', key, sealed.subarray(1, 13));
  d.setAAD(aad);
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  return Buffer.concat([d.update(sealed.subarray(13, sealed.length - 16)), d.final()]);
}

/** The floor: envelope re-encryption of n rows with bare SQLite, batches of 500, synchronous=FULL in WAL. Returns ms. */
function bareRotateAll(dir: string, n: number): number {
  const db = new Database(join(dir, 'floor.db'));
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec('CREATE TABLE v (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, wrapped BLOB NOT NULL, ct BLOB NOT NULL, rotated_at TEXT)');
    const kek = randomBytes(32);
    const ins = db.prepare('INSERT INTO v (id, name, wrapped, ct) VALUES (?, ?, ?, ?)');
    db.transaction(() => {
      for (let i = 0; i < n; i++) {
        const id = randomBytes(12).toString('base64url');
        const dek = randomBytes(32);
        ins.run(id, `S${String(i).padStart(7, '0')}`, seal(kek, dek, Buffer.from(`dek:${id}`)), seal(dek, randomBytes(24), Buffer.from(`val:${id}`)));
      }
    })();
    const t0 = performance.now();
    const sel = db.prepare('SELECT id, name, wrapped, ct FROM v WHERE name > ? ORDER BY name LIMIT ?');
    const upd = db.prepare('UPDATE v SET wrapped = ?, ct = ?, rotated_at = ? WHERE id = ?');
    let cursor = '';
    for (;;) {
      const rows = sel.all(cursor, BATCH) as Array<{ id: string; name: string; wrapped: Buffer; ct: Buffer }>;
      if (!rows.length) break;
      const now = new Date().toISOString();
      db.transaction(() => {
        for (const r of rows) {
          const plain = open(open(kek, r.wrapped, Buffer.from(`dek:${r.id}`)), r.ct, Buffer.from(`val:${r.id}`));
          const dek = randomBytes(32);
          upd.run(seal(kek, dek, Buffer.from(`dek:${r.id}`)), seal(dek, plain, Buffer.from(`val:${r.id}`)), now, r.id);
        }
      })();
      cursor = rows.at(-1)!.name;
      if (rows.length < BATCH) break;
    }
    return performance.now() - t0;
  } finally {
    db.close();
  }
}

async function run(o: BenchOptions): Promise<BenchResult> {
  const res = emptyResult(rotateAll);
  const n = o.quick ? 2_000 : 10_000;
  const home = makeTempDir('rotate');
  let lk: LatchkeyChild | null = null;
  try {
    lk = await startLatchkey(home, { profileTag: 'rotate_all' });
    o.log(`rotate_all: creating ${n.toLocaleString('en-US')} secrets through the in-process core API (16 at a time)`);
    const seedMs = await lk.seed('ROT_', n, 16);
    const probe = `ROT_${String(Math.min(4242, n - 1)).padStart(7, '0')}`;
    const before = await api(lk.url, lk.token, 'GET', `/v1/vaults/default/secrets/${probe}/value`);
    if (before.status !== 200) throw new Error(`reading ${probe} before rotation: HTTP ${before.status}`);

    o.log('rotate_all: POST /v1/vaults/default/rotate-all');
    const cpu = new CpuWindow({ server: lk.pid }).start();
    const r = await api(lk.url, lk.token, 'POST', '/v1/vaults/default/rotate-all', {});
    const c = cpu.stop();
    const after = await api(lk.url, lk.token, 'GET', `/v1/vaults/default/secrets/${probe}/value`);
    const correct = r.status === 200 && r.json?.rotated === n && (r.json?.failed ?? 0) === 0 && after.status === 200 && after.json?.value === before.json?.value;
    if (!correct) res.notes.push(`rotate-all answered HTTP ${r.status} ${JSON.stringify(r.json).slice(0, 300)}; value after rotation ${after.json?.value === before.json?.value ? 'unchanged' : 'CHANGED or unreadable'}`);

    o.log('rotate_all: bare floor (crypto + better-sqlite3, same batches)');
    const floorMs = bareRotateAll(home, n);
    const sec = r.ms / 1000;
    res.tables.push({
      title: `Rotate-all of ${n.toLocaleString('en-US')} secrets (re-encrypt under fresh DEKs, batches of ${BATCH}, each a durable transaction)`,
      header: ['system', 'seconds', 'secrets/s', 'vs floor', 'server CPU', 'rotated', 'correct'],
      rows: [
        ['Latchkey POST /rotate-all', fmt(sec, 3), fmt(n / sec, 0), `${fmt(r.ms / floorMs, 2)}×`, fmtPct(c.server), String(r.json?.rotated ?? '–'), correct ? 'yes' : 'NO'],
        ['floor (bare crypto + SQLite)', fmt(floorMs / 1000, 3), fmt(n / (floorMs / 1000), 0), '1.00×', '–', String(n), '–'],
      ],
    });
    res.notes.push(`setup: creating ${n.toLocaleString('en-US')} secrets one audited transaction each took ${fmt(seedMs / 1000, 1)} s (${fmt(n / (seedMs / 1000), 0)}/s).`);
    const est = o.quick ? ' (quick: 2,000 secrets, extrapolated linearly to 10,000)' : '';
    const at10k = (sec * 10_000) / n;
    res.targets.push(check('rotate-all: 10,000 secrets', '≤ 3 s', correct ? at10k : null, (v) => v <= 3, `${fmt(at10k, 2)} s${est}, ${fmt(n / sec, 0)} secrets/s`, correct ? undefined : 'wrong answer'));
    res.data = { n, seconds: sec, secretsPerSec: n / sec, floorSeconds: floorMs / 1000, ratioToFloor: r.ms / floorMs, seedSeconds: seedMs / 1000, cpu: c, response: r.json, correct };
    return res;
  } finally {
    await lk?.stop();
    removeTempDir(home);
  }
}

export const rotateAll: Benchmark = {
  name: 'rotate_all',
  title: 'Rotate-all of 10,000 secrets',
  estimateSec: [25, 8],
  run,
};
