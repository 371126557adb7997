/**
 * Rotate-all is crash-safe (SPEC §2): the real server runs as a child process
 * (`node bin/latchkey.js server`), a vault holds 3,000 secrets (300 of them with two versions),
 * and rotate-all is killed with SIGKILL at random moments spread over its duration. After every
 * kill, with the process gone, the data is opened afresh and:
 *   - every secret decrypts to its original value, current and old versions alike;
 *   - every secret keeps its versions (count and current version unchanged);
 *   - the audit chain verifies, and the `vault.rotate_all` events that committed account for
 *     exactly the secrets whose seal changed since the run began (data and audit commit together);
 * then the server restarts on the same data. At the end an uninterrupted rotate-all finishes,
 * values read back through the API, and `latchkey audit verify` (the CLI) reports ok.
 * At least one kill must land mid-run (some secrets rotated, not all), or the test proves nothing.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openCore } from '../src/core/bootstrap.js';
import type { Core } from '../src/core/core.js';
import { systemContext } from '../src/core/principal.js';
import { describeBackends } from './helpers/backends.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const BIN = join(ROOT, 'bin', 'latchkey.js');
const MASTER = 'c4'.repeat(32);
const N = 3000;
const TWO_VERSIONS = 300;
const KILLS = 5;

// ---- dist/ must be current: bin/latchkey.js runs the build

function newestSource(dir: string): { file: string; mtime: number } {
  let best = { file: '', mtime: 0 };
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name === 'console') continue;
      const b = newestSource(p);
      if (b.mtime > best.mtime) best = b;
    } else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) {
      const m = statSync(p).mtimeMs;
      if (m > best.mtime) best = { file: p, mtime: m };
    }
  }
  return best;
}

function distIsStale(): boolean {
  const main = join(ROOT, 'dist', 'src', 'cli', 'main.js');
  if (!existsSync(main)) return true;
  const stale = (dir: string): boolean => readdirSync(dir, { withFileTypes: true }).some((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name !== 'console' && stale(p);
    if (!e.name.endsWith('.ts') || e.name.endsWith('.d.ts')) return false;
    const out = join(ROOT, 'dist', relative(ROOT, p)).replace(/\.ts$/, '.js');
    return !existsSync(out) || statSync(out).mtimeMs < statSync(p).mtimeMs;
  });
  return stale(join(ROOT, 'src'));
}

let built: Promise<void> | null = null;
function ensureBuilt(): Promise<void> {
  built ??= (async () => {
    if (!distIsStale()) return;
    // type errors elsewhere in the tree still emit; only a missing entry point is fatal
    const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, encoding: 'utf8' });
    if (!existsSync(join(ROOT, 'dist', 'src', 'cli', 'main.js'))) throw new Error(`build failed: ${r.stdout}${r.stderr}`);
    if (distIsStale()) process.stderr.write(`crash-rotate-all: dist/ still older than ${newestSource(join(ROOT, 'src')).file} after the build (edited meanwhile?)\n`);
  })();
  return built;
}

// ---- the server as a child process

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => res(port));
    });
  });
}

function childEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('LATCHKEY_')) delete env[k];
  return { ...env, LATCHKEY_HOME: home, LATCHKEY_MASTER_KEY: MASTER, LATCHKEY_RATE_LIMIT: 'off', ...extra };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeBackends('rotate-all survives SIGKILL at any moment', (ctx) => {
  let port: number;
  let addr: string;
  let token: string;
  let child: ChildProcess | null = null;
  let childLog = '';
  /** name -> [value of v1, value of v2?] */
  const expected = new Map<string, string[]>();
  let baselineMs = 0;

  const open = async (): Promise<Core> => (await openCore({ home: ctx.home, databaseUrl: ctx.databaseUrl, env: { LATCHKEY_MASTER_KEY: MASTER } })).core;

  /** Starts the server; when its port was taken meanwhile (a shared machine), on a new one. */
  async function startChild(attempt = 0): Promise<void> {
    try {
      await startChildOn();
    } catch (err) {
      if (attempt < 3 && /already in use/.test(String((err as Error).message))) {
        port = await freePort();
        addr = `http://127.0.0.1:${port}`;
        return startChild(attempt + 1);
      }
      throw err;
    }
  }

  async function startChildOn(): Promise<void> {
    childLog = '';
    const args = [BIN, 'server', '--port', String(port), '--proxy-port', '0', '--log-level', 'warn', ...(ctx.databaseUrl ? ['--database-url', ctx.databaseUrl] : [])];
    const c = spawn(process.execPath, args, { cwd: ROOT, env: childEnv(ctx.home), stdio: ['ignore', 'pipe', 'pipe'] });
    c.stdout!.setEncoding('utf8').on('data', (d) => (childLog += d));
    c.stderr!.setEncoding('utf8').on('data', (d) => (childLog += d));
    child = c;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`server exited (${c.exitCode ?? c.signalCode}): ${childLog}`);
      try {
        if ((await fetch(`${addr}/v1/health`)).ok) return;
      } catch { /* not listening yet */ }
      await sleep(50);
    }
    throw new Error(`server did not become healthy: ${childLog}`);
  }

  async function stopChild(signal: NodeJS.Signals): Promise<void> {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill(signal);
    await gone;
  }

  const rotateAll = () => fetch(`${addr}/v1/vaults/default/rotate-all`, {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{}',
  });

  /**
   * With the server down: every value, every version, the audit chain, and the audit events of the
   * interrupted run against the seals that changed since `since`. Returns how many were re-sealed.
   */
  async function verifyAtRest(since: string): Promise<number> {
    const core = await open();
    try {
      const vault = await core.vaults.require('default');
      expect(await core.store.countVaultSecrets(vault.id)).toBe(N);
      let cursor: string | null = null;
      let seen = 0;
      let resealed = 0;
      for (;;) {
        const rows = await core.store.listCurrentVersions(vault.id, cursor, 1000);
        if (!rows.length) break;
        for (const row of rows) {
          const want = expected.get(row.secret.name);
          expect(want, row.secret.name).toBeDefined();
          expect(row.secret.current_version, row.secret.name).toBe(want!.length);
          expect(row.version.version).toBe(want!.length);
          const plain = await core.secrets.open(vault.id, row.version);
          expect(plain.toString('utf8'), row.secret.name).toBe(want!.at(-1));
          if (row.version.rotated_at && row.version.rotated_at >= since) resealed++;
          if (want!.length === 2) {
            const old = await core.store.getSecretValueRow(vault.id, row.secret.name, 1);
            expect((await core.secrets.open(vault.id, old!.version)).toString('utf8'), `${row.secret.name} v1`).toBe(want![0]);
            expect((await core.store.listVersions(row.secret.id)).map((v) => v.version)).toEqual([2, 1]);
          }
          seen++;
        }
        cursor = rows.at(-1)!.secret.name;
      }
      expect(seen).toBe(N);
      const verify = await core.audit.verify(core.store);
      expect(verify.ok, JSON.stringify(verify)).toBe(true);
      // data and audit commit together: the committed batches' events count exactly the re-sealed secrets
      const events = await core.audit.query(core.store, { action: 'vault.rotate_all', since, limit: 1000 });
      const counted = events.items.reduce((n, e) => n + Number((e.details as { rotated?: number }).rotated ?? 0), 0);
      expect(counted).toBe(resealed);
      expect(events.items.every((e) => e.outcome === 'ok')).toBe(true);
      return resealed;
    } finally {
      await core.close();
    }
  }

  beforeAll(async () => {
    await ensureBuilt();
    // initialise and fill in-process (one transaction), then hand the data to the child
    const opened = await openCore({ home: ctx.home, databaseUrl: ctx.databaseUrl, allowInit: true, env: { LATCHKEY_MASTER_KEY: MASTER } });
    token = opened.initialized!.ownerToken;
    const core = opened.core;
    try {
      const vault = await core.vaults.require('default');
      for (let i = 0; i < N; i++) {
        const name = `CRASH_${String(i).padStart(5, '0')}`;
        const v1 = `v1-${i}-${randomBytes(12).toString('base64url')}`;
        expected.set(name, i < TWO_VERSIONS ? [v1, `v2-${i}-${randomBytes(12).toString('base64url')}`] : [v1]);
      }
      await core.write(systemContext(), async (s, ev) => {
        for (const [name, values] of expected) for (const v of values) await core.secrets.putIn(s, systemContext(), vault, name, v, ev);
      });
    } finally {
      await core.close();
    }
    port = await freePort();
    addr = `http://127.0.0.1:${port}`;
    await startChild();
  }, 240_000);

  afterAll(async () => {
    await stopChild('SIGKILL');
  });

  it(`an uninterrupted rotate-all re-seals all ${N} (the baseline duration)`, async () => {
    const since = new Date().toISOString();
    const t = performance.now();
    const r = await rotateAll();
    baselineMs = performance.now() - t;
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ rotated: N, failed: 0, total: N, done: true });
    await stopChild('SIGKILL');
    expect(await verifyAtRest(since)).toBe(N);
    await startChild();
  }, 60_000);

  it(`SIGKILL at ${KILLS} random moments loses nothing; the server restarts on the data`, async () => {
    expect(baselineMs).toBeGreaterThan(0);
    const outcomes: Array<{ delayMs: number; resealed: number }> = [];
    const killAfter = async (delayMs: number) => {
      const since = new Date().toISOString();
      const pending = rotateAll().then((r) => r.status, () => 'killed');
      await sleep(delayMs);
      await stopChild('SIGKILL');
      await pending;
      const resealed = await verifyAtRest(since);
      outcomes.push({ delayMs: Math.round(delayMs), resealed });
      await startChild();
      return resealed;
    };
    // spread over the run: kill k lands at a random moment in the k-th fifth of the baseline duration
    for (let k = 0; k < KILLS; k++) await killAfter((baselineMs * (k + Math.random())) / KILLS);
    // a loaded machine can stretch or shrink a run past every kill: then aim at the middle until one lands there
    const partial = () => outcomes.filter((o) => o.resealed > 0 && o.resealed < N).length;
    let aim = baselineMs / 2;
    for (let extra = 0; extra < 4 && partial() === 0; extra++) aim *= (await killAfter(aim * (0.8 + 0.4 * Math.random()))) === 0 ? 1.7 : 0.5;
    expect(partial(), `kills landed at ${JSON.stringify(outcomes)} (baseline ${Math.round(baselineMs)} ms)`).toBeGreaterThanOrEqual(1);
  }, 180_000);

  it('after the kills: rotate-all completes, values read back over the API, `latchkey audit verify` is ok', async () => {
    const r = await rotateAll();
    expect(await r.json()).toMatchObject({ rotated: N, failed: 0, done: true });
    const names = [...expected.keys()];
    for (let i = 0; i < 40; i++) {
      const name = names[Math.floor(Math.random() * names.length)]!;
      const want = expected.get(name)!;
      const got = await fetch(`${addr}/v1/vaults/default/secrets/${name}/value`, { headers: { authorization: `Bearer ${token}` } });
      expect(((await got.json()) as { value: string }).value).toBe(want.at(-1));
      if (want.length === 2) {
        const old = await fetch(`${addr}/v1/vaults/default/secrets/${name}/value?version=1`, { headers: { authorization: `Bearer ${token}` } });
        expect(((await old.json()) as { value: string }).value).toBe(want[0]);
      }
    }
    const cli = spawnSync(process.execPath, [BIN, 'audit', 'verify'], { cwd: ROOT, encoding: 'utf8', env: childEnv(ctx.home, { LATCHKEY_ADDR: addr, LATCHKEY_TOKEN: token }) });
    expect(cli.status, `${cli.stdout}${cli.stderr}`).toBe(0);
    expect(cli.stdout).toMatch(/ok/i);
    await stopChild('SIGTERM');
  }, 60_000);
});
