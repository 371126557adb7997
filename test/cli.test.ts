/**
 * The real CLI as a child process (`node bin/latchkey.js …`) against a real server started by
 * `latchkey server`, on a temp LATCHKEY_HOME and a free port. Needs the build (`npm test` builds).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, cleanEnv, freePort, ROOT, runInTerminal, type Result } from './helpers/cli.js';

function run(args: string[], opts: { env: NodeJS.ProcessEnv; input?: string; cwd?: string; cmd?: string[] }): Promise<Result> {
  return new Promise((res, rej) => {
    const [exe, ...pre] = opts.cmd ?? [process.execPath, BIN];
    const child = spawn(exe!, [...pre, ...args], { env: opts.env, cwd: opts.cwd ?? ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', rej);
    child.on('close', (code) => res({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

async function waitForHealth(addr: string, server: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (server.exitCode !== null) throw new Error(`server exited with ${server.exitCode}: ${log()}`);
    try {
      const r = await fetch(`${addr}/v1/health`);
      if (r.ok) return;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server did not become healthy: ${log()}`);
}

describe('latchkey CLI (child process, real server)', () => {
  let home: string;
  let port: number;
  let addr: string;
  let token: string;
  let server: ChildProcess | null = null;
  let serverLog = '';
  let baseEnv: NodeJS.ProcessEnv;
  let env: NodeJS.ProcessEnv;

  const cli = (args: string[], o: { input?: string; env?: Record<string, string | undefined> } = {}) =>
    run(args, { env: o.env ? { ...env, ...o.env } : env, input: o.input });

  async function startServer(): Promise<ChildProcess> {
    serverLog = '';
    const child = spawn(process.execPath, [BIN, 'server', '--port', String(port), '--proxy-port', '0', '--log-level', 'warn'], { env: baseEnv, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.setEncoding('utf8').on('data', (d) => (serverLog += d));
    child.stderr!.setEncoding('utf8').on('data', (d) => (serverLog += d));
    await waitForHealth(addr, child, () => serverLog);
    return child;
  }

  async function stopServer(): Promise<number | null> {
    const s = server;
    server = null;
    if (!s || s.exitCode !== null) return s?.exitCode ?? null;
    const done = new Promise<number | null>((r) => s.on('exit', (code) => r(code)));
    s.kill('SIGTERM');
    const timer = setTimeout(() => s.kill('SIGKILL'), 10_000);
    const code = await done;
    clearTimeout(timer);
    return code;
  }

  async function api(method: string, path: string, body?: unknown): Promise<Response> {
    return fetch(`${addr}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  beforeAll(async () => {
    if (!existsSync(join(ROOT, 'dist', 'src', 'cli', 'main.js'))) throw new Error('build first: npm run build');
    home = mkdtempSync(join(tmpdir(), 'latchkey-cli-'));
    port = await freePort();
    addr = `http://127.0.0.1:${port}`;
    baseEnv = cleanEnv({ LATCHKEY_HOME: home });
    env = baseEnv;
  });

  afterAll(async () => {
    await stopServer();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  it('prints help (exit 0) and refuses an unknown command with one line (exit 2)', async () => {
    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/secret/);
    const bad = await cli(['frobnicate']);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/^latchkey: .*frobnicate/);
    const badOpt = await cli(['secret', 'list', '--no-such-flag']);
    expect(badOpt.code).toBe(2);
    const missingArg = await cli(['secret', 'rollback', 'A']);
    expect(missingArg.code).toBe(2);
    expect((await cli(['help', 'secret'])).code).toBe(0);
    expect((await cli(['secret', 'get', '--help'])).stdout).toMatch(/--version <n>/);
    // the bundled CLI reads the version from the package's own package.json (not a 0.0.0 fallback)
    expect((await cli(['--version'])).stdout.trim()).toBe((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version);
    expect((await cli(['vault'])).code).toBe(2);
  });

  it('init: a short password is a usage error', async () => {
    const r = await cli(['init', '--email', 'a@b.c', '--password-stdin'], { input: 'short\n' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^latchkey: password/);
    expect(existsSync(join(home, 'config.json'))).toBe(false);
  });

  it('init --json prints the owner token once, saves it 0600 with this server\'s address (not one saved before); a second init exits 1', async () => {
    // an address saved by an earlier `login` elsewhere: the new owner token must not be sent there
    // (and a checkpoint remembered for this address belongs to data that was there before); $LATCHKEY_ADDR
    // set in the shell is not saved either
    writeFileSync(join(home, 'config.json'), JSON.stringify({ addr: 'http://other-server.example:7470', checkpoints: { [addr]: '/old/cp.json', 'http://other-server.example:7470': '/other/cp.json' } }), { mode: 0o600 });
    const r = await cli(['init', '--email', 'a@b.c', '--password-stdin', '--json'], { input: 'correct horse battery staple\n', env: { LATCHKEY_PORT: String(port), LATCHKEY_ADDR: 'http://elsewhere.example:7470' } });
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.token).toMatch(/^lk_pat_/);
    expect(j.home).toBe(home);
    expect(j.email).toBe('a@b.c');
    expect(j.key_file).toBe(join(home, 'master.key'));
    token = j.token;
    const cfgPath = join(home, 'config.json');
    expect(statSync(cfgPath).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(cfgPath, 'utf8')).token).toBe(token);
    expect(j.addr).toBe(addr); // where `latchkey server` listens with this environment
    expect(JSON.parse(readFileSync(cfgPath, 'utf8')).addr).toBe(j.addr);
    expect(JSON.parse(readFileSync(cfgPath, 'utf8')).checkpoints).toEqual({ 'http://other-server.example:7470': '/other/cp.json' });

    const again = await cli(['init', '--json']);
    expect(again.code).toBe(1);
    expect(again.stderr.trim()).toBe(`latchkey: already initialised at ${home}`);
  });

  it('server starts in the background and answers /v1/health', async () => {
    server = await startServer();
    expect(serverLog).toContain(`Latchkey listening on ${addr}`);
    env = { ...baseEnv, LATCHKEY_TOKEN: token, LATCHKEY_ADDR: addr };
  });

  it('status and whoami', async () => {
    const s = await cli(['status', '--json']);
    expect(s.code, s.stderr).toBe(0);
    expect(JSON.parse(s.stdout)).toMatchObject({ backend: 'sqlite', vaults: 1 });
    const human = await cli(['status']);
    expect(human.stdout).toMatch(/storage:\s+sqlite/);
    const w = await cli(['whoami', '--json']);
    expect(JSON.parse(w.stdout)).toMatchObject({ kind: 'user', email: 'a@b.c', role: 'owner' });
    // the saved token (config.json) is used when LATCHKEY_TOKEN is not set; --addr after the verb works
    const saved = await run(['whoami', '--addr', addr], { env: baseEnv });
    expect(saved.code, saved.stderr).toBe(0);
    expect(saved.stdout.trim()).toBe('user a@b.c (owner)');
  });

  it('vault create / list --json / set / delete', async () => {
    const c = await cli(['vault', 'create', 'team', '--description', 'the team']);
    expect(c.code, c.stderr).toBe(0);
    const c2 = await cli(['vault', 'create', 'child', '--fallback', 'team', '--json']);
    expect(JSON.parse(c2.stdout)).toMatchObject({ name: 'child', fallback: ['team'] });
    const l = await cli(['vault', 'list', '--json']);
    expect(l.code).toBe(0);
    const names = (JSON.parse(l.stdout) as { name: string }[]).map((v) => v.name);
    expect(names).toEqual(expect.arrayContaining(['default', 'team', 'child']));
    const s = await cli(['vault', 'set', 'child', '--fallback', '', '--json']);
    expect(s.code, s.stderr).toBe(0);
    expect(JSON.parse(s.stdout).fallback).toEqual([]);
    const d = await cli(['vault', 'delete', 'child']);
    expect(d.code, d.stderr).toBe(0);
    // on a terminal, a vault that holds secrets is deleted only when its name is typed back (or with --yes)
    const doom = async () => {
      for (const args of [['vault', 'create', 'doomed'], ['secret', 'set', 'DOOMED_KEY=v', '--vault', 'doomed']]) {
        const r = await cli(args);
        expect(r.code, r.stderr).toBe(0);
      }
    };
    await doom();
    const termEnv = env;
    const asked = /type its name to go on: $/;
    const refused = await runInTerminal(['vault', 'delete', 'doomed'], termEnv, [[asked, 'doome']]);
    expect(refused.code, refused.stdout).toBe(1);
    expect(refused.stdout).toContain("vault 'doomed' holds 1 secret, deleted with it for good");
    expect(refused.stdout).toContain("vault 'doomed' was not deleted");
    expect((JSON.parse((await cli(['vault', 'list', '--json'])).stdout) as { name: string }[]).map((v) => v.name)).toContain('doomed');
    const confirmed = await runInTerminal(['vault', 'delete', 'doomed'], termEnv, [[asked, 'doomed']]);
    expect(confirmed.code, confirmed.stdout).toBe(0);
    expect(confirmed.stdout).toContain('deleted vault doomed (1 secret)');
    // a secret added while the question waits: what was confirmed is no longer what would go
    await doom();
    const raced = await runInTerminal(['vault', 'delete', 'doomed'], termEnv, [[asked, async () => {
      const add = await cli(['secret', 'set', 'LATE_ARRIVAL=v', '--vault', 'doomed']);
      expect(add.code, add.stderr).toBe(0);
      return 'doomed';
    }]]);
    expect(raced.code, raced.stdout).toBe(1);
    expect(raced.stdout).toContain("vault 'doomed' holds 2 secrets, not the 1 expected; nothing was deleted");
    expect((JSON.parse((await cli(['vault', 'list', '--json'])).stdout) as { name: string; secrets: number }[]).find((v) => v.name === 'doomed')?.secrets).toBe(2);
    const yes = await runInTerminal(['vault', 'delete', 'doomed', '--yes'], termEnv, []);
    expect(yes.code, yes.stdout).toBe(0);
    expect(yes.stdout).not.toContain('type its name');
    const dup = await cli(['vault', 'create', 'team']);
    expect(dup.code).toBe(1);
  });

  it('secret set KEY=VALUE…, KEY=- from stdin, get, get --version', async () => {
    const s = await cli(['secret', 'set', 'A=1', 'B=2']);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stdout).toBe('A: created, version 1\nB: created, version 1\n');
    const stdin = await cli(['secret', 'set', 'C=-', '--category', 'api_key'], { input: 'value from stdin\n' });
    expect(stdin.code, stdin.stderr).toBe(0);
    expect(stdin.stdout).not.toContain('value from stdin');
    const g = await cli(['secret', 'get', 'C']);
    expect(g.stdout).toBe('value from stdin\n');
    const two = await cli(['secret', 'set', 'X=-', 'Y=-'], { input: 'v' });
    expect(two.code).toBe(2);

    const up = await cli(['credential', 'set', 'A=3']);
    expect(up.stdout).toBe('A: version 2\n');
    expect((await cli(['creds', 'get', 'A'])).stdout).toBe('3\n');
    expect((await cli(['secret', 'get', 'A', '--version', '1'])).stdout).toBe('1\n');
    const j = await cli(['secret', 'get', 'A', '--json']);
    expect(JSON.parse(j.stdout)).toMatchObject({ name: 'A', vault: 'default', version: 2, value: '3' });

    const cas = await cli(['secret', 'set', 'A=4', '--cas', '1']);
    expect(cas.code).toBe(1);
    expect(cas.stderr).toMatch(/^latchkey: /);
    const noEq = await cli(['secret', 'set', 'sk-looks-like-a-value']);
    expect(noEq.code).toBe(2);
    expect(noEq.stderr).not.toContain('sk-looks-like-a-value');
  });

  it('secret list --json, --reveal, filters', async () => {
    const l = await cli(['secret', 'list', '--json']);
    expect(l.code, l.stderr).toBe(0);
    const items = JSON.parse(l.stdout) as { name: string; version: number; category: string; value?: string }[];
    expect(items.map((i) => i.name).sort()).toEqual(['A', 'B', 'C']);
    expect(items.find((i) => i.name === 'A')!.version).toBe(2);
    expect(items.every((i) => i.value === undefined)).toBe(true);
    const r = await cli(['secret', 'list', '--reveal', '--json']);
    expect((JSON.parse(r.stdout) as { name: string; value: string }[]).find((i) => i.name === 'B')!.value).toBe('2');
    const cat = await cli(['secret', 'list', '--category', 'api_key', '--json']);
    expect((JSON.parse(cat.stdout) as { name: string }[]).map((i) => i.name)).toEqual(['C']);
    const human = await cli(['secret', 'list']);
    expect(human.stdout.split('\n')[0]).toMatch(/^NAME\s+CATEGORY\s+VERSION\s+UPDATED$/);
    expect(human.stdout).not.toContain('value from stdin');
    const lim = await cli(['secret', 'list', '--limit', '2', '--json']);
    expect(JSON.parse(lim.stdout)).toHaveLength(2);
  });

  it('history, rollback, rotate', async () => {
    const h = await cli(['secret', 'history', 'A', '--json']);
    expect(h.code, h.stderr).toBe(0);
    expect(JSON.parse(h.stdout).versions).toHaveLength(2);
    const hh = await cli(['secret', 'history', 'A']);
    expect(hh.stdout).toMatch(/VERSION\s+CURRENT/);

    const rb = await cli(['secret', 'rollback', 'A', '--to', '1']);
    expect(rb.code, rb.stderr).toBe(0);
    expect(rb.stdout).toMatch(/A: version 3/);
    expect((await cli(['secret', 'get', 'A'])).stdout).toBe('1\n');

    const rot = await cli(['secret', 'rotate', 'A', '--json']);
    expect(rot.code, rot.stderr).toBe(0);
    expect(JSON.parse(rot.stdout).last_rotated_at).toBeTruthy();
    expect((await cli(['secret', 'get', 'A'])).stdout).toBe('1\n');
    expect((await cli(['secret', 'rotate'])).code).toBe(2);
    expect((await cli(['secret', 'rotate', 'A', '--all'])).code).toBe(2);
  });

  it('rotate --all over 1,200 secrets shows progress per batch and correct counts', async () => {
    expect((await api('POST', '/v1/vaults', { name: 'bulk' })).status).toBe(201);
    const names = Array.from({ length: 1200 }, (_, i) => `BULK_${String(i).padStart(4, '0')}`);
    for (let i = 0; i < names.length; i += 50) {
      const rs = await Promise.all(names.slice(i, i + 50).map((n) => api('PUT', `/v1/vaults/bulk/secrets/${n}`, { value: `v-${n}` })));
      for (const r of rs) expect(r.status).toBe(201);
    }
    const r = await cli(['secret', 'rotate', '--all', '--vault', 'bulk']);
    expect(r.code, r.stderr).toBe(0);
    // stderr is not a TTY here: one line per batch
    expect(r.stderr).toContain('rotated 500/1200');
    expect(r.stderr).toContain('rotated 1000/1200');
    expect(r.stderr).toContain('rotated 1200/1200');
    expect(r.stdout.trim()).toBe('rotated 1200 of 1200, failed 0');

    const j = await run(['secret', 'rotate', '--all', '--json'], { env: { ...env, LATCHKEY_VAULT: 'bulk' } });
    expect(j.code, j.stderr).toBe(0);
    expect(JSON.parse(j.stdout)).toMatchObject({ vault: 'bulk', rotated: 1200, failed: 0, total: 1200 });
    expect((await cli(['secret', 'get', 'BULK_0999', '--vault', 'bulk'])).stdout).toBe('v-BULK_0999\n');
    const all = await cli(['secret', 'list', '--vault', 'bulk', '--json']);
    expect(JSON.parse(all.stdout)).toHaveLength(1200);

    // Ctrl-C after the first batch: the batch in flight finishes, then it says how far it got (exit 1)
    const child = spawn(process.execPath, [BIN, 'secret', 'rotate', '--all', '--vault', 'bulk'], { env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('rotated 500/1200') && !child.killed) child.kill('SIGINT');
    });
    const [code] = (await once(child, 'exit')) as [number];
    expect(code, err).toBe(1);
    expect(err).toMatch(/stopped after rotating (500|1000) of 1200; already rotated secrets stay rotated/);
  }, 180_000);

  it('delete; a deleted secret is not found (exit 3)', async () => {
    // several names: one that is not there leaves none of the others in place, and is named (exit 3)
    await cli(['secret', 'set', 'DEL_1=a', 'DEL_2=b']);
    const many = await cli(['secret', 'delete', 'DEL_1', 'NOPE_NOT_HERE', 'DEL_2']);
    expect(many.code).toBe(3);
    expect(many.stdout).toMatch(/deleted DEL_1[\s\S]*deleted DEL_2/);
    expect(many.stderr.trim()).toBe('latchkey: not found in vault default: NOPE_NOT_HERE (deleted 2 of 3)');
    const d = await cli(['secret', 'delete', 'B']);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout).toMatch(/deleted B/);
    const g = await cli(['secret', 'get', 'B']);
    expect(g.code).toBe(3);
    expect(g.stderr.trim().split('\n')).toHaveLength(1);
    expect((await cli(['secret', 'get', 'A', '--vault', 'nope'])).code).toBe(3);
  });

  it('a bad token is denied (exit 4); a bad name is a usage error naming the field (exit 2)', async () => {
    const bad = await cli(['secret', 'list'], { env: { LATCHKEY_TOKEN: 'lk_pat_not-a-real-token' } });
    expect(bad.code).toBe(4);
    expect(bad.stderr).toMatch(/^latchkey: /);
    expect(bad.stderr).not.toContain('lk_pat_not-a-real-token');
    const name = await cli(['secret', 'set', 'bad name=1']);
    expect(name.code).toBe(2);
    expect(name.stderr).toMatch(/^latchkey: name: /);
    expect(name.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('cannot reach a server: exit 1 naming the address', async () => {
    const other = await freePort();
    const r = await cli(['secret', 'list', '--addr', `http://127.0.0.1:${other}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`http://127.0.0.1:${other}`);
    expect(r.stderr).not.toContain(token);
  });

  it('presets: a bad OpenAI key exits 2 naming fields.access_token; a good one is created', async () => {
    const bad = await cli(['secret', 'set', '--preset', 'openai', 'access_token=not-a-key']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('fields.access_token');
    expect(bad.stderr).not.toContain('not-a-key');
    const good = await cli(['secret', 'set', '--preset', 'openai', 'access_token=-'], { input: 'sk-abcdefghijklmnopqrstuvwxyz\n' });
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout).toBe('skill:openai:access_token: created, version 1\n');
    expect((await cli(['secret', 'get', 'skill:openai:access_token'])).stdout).toBe('sk-abcdefghijklmnopqrstuvwxyz\n');
    const again = await cli(['secret', 'set', '--preset', 'openai', 'access_token=sk-zyxwvutsrqponmlkjihgfedcba']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toBe('skill:openai:access_token: version 2\n');
    const badAgain = await cli(['secret', 'set', '--preset', 'openai', 'access_token=nope']);
    expect(badAgain.code).toBe(2);
    expect(badAgain.stderr).toContain('fields.access_token');
  });

  it('audit: --json has secret.create rows, filters, relative --since', async () => {
    const a = await cli(['audit', '--json']);
    expect(a.code, a.stderr).toBe(0);
    const rows = JSON.parse(a.stdout) as { seq: number; action: string; target: string }[];
    expect(rows.length).toBe(50);
    for (let i = 1; i < rows.length; i++) expect(rows[i - 1]!.seq).toBeGreaterThan(rows[i]!.seq);
    const creates = await cli(['audit', '--action', 'secret.create', '--vault', 'default', '--since', '1h', '--limit', '1000', '--json']);
    const cr = JSON.parse(creates.stdout) as { action: string; target: string }[];
    expect(cr.length).toBeGreaterThanOrEqual(3);
    expect(cr.every((e) => e.action === 'secret.create')).toBe(true);
    expect(cr.map((e) => e.target)).toEqual(expect.arrayContaining(['A', 'B', 'C']));
    const prefix = await cli(['audit', '--action', 'secret.', '--secret', 'A', '--limit', '200', '--json']);
    const pr = JSON.parse(prefix.stdout) as { action: string; target: string }[];
    expect(new Set(pr.map((e) => e.action))).toEqual(new Set(['secret.create', 'secret.update', 'secret.read', 'secret.rollback', 'secret.rotate']));
    // following cursors: more than one page
    const events = JSON.parse((await cli(['status', '--json'])).stdout).audit.events as number;
    expect(events).toBeGreaterThan(1000);
    const many = await cli(['audit', '--limit', '5000', '--json']);
    const manyRows = JSON.parse(many.stdout) as { seq: number }[];
    expect(manyRows.length).toBe(events);
    expect(new Set(manyRows.map((e) => e.seq)).size).toBe(events);
    const capped = await cli(['audit', '--limit', '1001', '--json']);
    expect(JSON.parse(capped.stdout)).toHaveLength(1001);
    const future = await cli(['audit', '--until', '2000-01-01T00:00:00Z', '--json']);
    expect(JSON.parse(future.stdout)).toEqual([]);
    const human = await cli(['audit', '--limit', '3']);
    expect(human.stdout.split('\n')[0]).toMatch(/^SEQ\s+TIME\s+ACTOR\s+ACTION\s+VAULT\s+TARGET\s+OUTCOME$/);
    expect(human.stderr).toMatch(/the newest 3; more with --limit 30/);
    // --actor takes the email (or agent name) without its user:/agent: prefix too
    const byEmail = JSON.parse((await cli(['audit', '--actor', 'a@b.c', '--limit', '5', '--json'])).stdout) as { actor: string }[];
    expect(byEmail.length).toBe(5);
    expect(byEmail.every((e) => e.actor === 'user:a@b.c')).toBe(true);
    expect((await cli(['audit', '--since', 'yesterday'])).code).toBe(2);
    // --vault defaults to LATCHKEY_VAULT when that is set; --all-vaults looks past it
    const vaultsOf = async (args: string[], extra: Record<string, string | undefined>) =>
      new Set((JSON.parse((await cli(['audit', '--limit', '1000', '--json', ...args], { env: extra })).stdout) as { vault: string | null }[]).map((e) => e.vault));
    expect(await vaultsOf([], { LATCHKEY_VAULT: 'default' })).toEqual(new Set(['default']));
    expect((await vaultsOf(['--all-vaults'], { LATCHKEY_VAULT: 'default' })).size).toBeGreaterThan(1);
    expect((await vaultsOf([], { LATCHKEY_VAULT: undefined })).size).toBeGreaterThan(1);
    expect((await cli(['audit', '--vault', 'default', '--all-vaults'])).code).toBe(2);
  });

  it('audit verify; checkpoint -o FILE (0600) then verify --checkpoint FILE; a forged checkpoint fails', async () => {
    const v = await cli(['audit', 'verify']);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toMatch(/audit chain OK/);
    const file = join(home, 'audit.checkpoint');
    const c = await cli(['audit', 'checkpoint', '-o', file]);
    expect(c.code, c.stderr).toBe(0);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const cp = JSON.parse(readFileSync(file, 'utf8'));
    expect(cp).toMatchObject({ seq: expect.any(Number), hash: expect.any(String), ts: expect.any(String), mac: expect.any(String) });
    const vc = await cli(['audit', 'verify', '--checkpoint', file, '--json']);
    expect(vc.code, vc.stderr).toBe(0);
    expect(JSON.parse(vc.stdout)).toMatchObject({ ok: true, checkpoint: { seq: cp.seq, ok: true } });
    const forged = join(home, 'forged.checkpoint');
    writeFileSync(forged, JSON.stringify({ ...cp, mac: '0'.repeat(64) }));
    const vf = await cli(['audit', 'verify', '--checkpoint', forged]);
    expect(vf.code).toBe(1);
    expect(vf.stdout).toMatch(/checkpoint at seq \d+: FAILED/);
    // plain `audit verify` checks against the last checkpoint exported with -o (SPEC §4)
    const vd = await cli(['audit', 'verify', '--json']);
    expect(vd.code, vd.stderr).toBe(0);
    expect(JSON.parse(vd.stdout)).toMatchObject({ ok: true, checkpoint: { seq: cp.seq, ok: true }, note: expect.stringContaining(file) });
    writeFileSync(file, JSON.stringify({ ...cp, mac: '0'.repeat(64) }));
    const bad = await cli(['audit', 'verify']);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1); // one line on stderr (SPEC §7)
    // remembered per server: another address does not use it
    const other = await cli(['audit', 'verify', '--json'], { env: { LATCHKEY_ADDR: addr.replace('127.0.0.1', 'localhost') } });
    expect(other.code, other.stderr).toBe(0);
    expect(JSON.parse(other.stdout).checkpoint).toBeNull();
    writeFileSync(file, JSON.stringify(cp));
    const stdout = await cli(['audit', 'checkpoint']);
    expect(JSON.parse(stdout.stdout).seq).toBeGreaterThanOrEqual(cp.seq);
    // `| head -1`: a reader that leaves early is no error and no stack trace
    const piped = spawnSync('sh', ['-c', `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} audit --limit 200 | head -1`], { env, cwd: ROOT, encoding: 'utf8' });
    expect(piped.stdout).toMatch(/^SEQ/);
    expect(piped.stderr).not.toMatch(/EPIPE|at /);
  });

  it('key status / rotate / rewrap', async () => {
    const s = await cli(['key', 'status', '--json']);
    expect(s.code, s.stderr).toBe(0);
    expect(JSON.parse(s.stdout)).toMatchObject({ kek_version: 1, master_key_source: 'file' });
    const r = await cli(['key', 'rotate', '--json']);
    expect(JSON.parse(r.stdout)).toEqual({ kek_version: 2 });
    const s2 = JSON.parse((await cli(['key', 'status', '--json'])).stdout);
    expect(Number(s2.needs_rewrap)).toBeGreaterThan(1000);
    expect(s2.needs_rewrap_by_kind.secret_versions + s2.needs_rewrap_by_kind.proxy_ca_key + s2.needs_rewrap_by_kind.proposals).toBe(s2.needs_rewrap);
    expect((await cli(['key', 'status'])).stdout).toMatch(new RegExp(`needs rewrap: ${s2.needs_rewrap} sealed items \\(${s2.needs_rewrap_by_kind.secret_versions} secret versions`));
    const w = await cli(['key', 'rewrap']);
    expect(w.code, w.stderr).toBe(0);
    expect(w.stderr).toMatch(/rewrapped 500\//);
    expect(w.stdout).toMatch(/onto KEK version 2; 0 remaining/);
    const s3 = JSON.parse((await cli(['key', 'status', '--json'])).stdout);
    expect(Number(s3.needs_rewrap)).toBe(0);
    expect((await cli(['key', 'rewrap'])).stdout).toBe('nothing to rewrap: everything is sealed under KEK version 2\n');
    expect((await cli(['secret', 'get', 'A'])).stdout).toBe('1\n');
  }, 60_000);

  it('server stops on SIGTERM with exit 0; key rekey offline; the data opens again with the new key', async () => {
    expect(await stopServer()).toBe(0);
    const before = readFileSync(join(home, 'master.key'), 'utf8');
    const rk = await cli(['key', 'rekey', '--json']);
    expect(rk.code, rk.stderr).toBe(0);
    const j = JSON.parse(rk.stdout);
    expect(j.new_key_file).toBe(join(home, 'master.key'));
    expect(j.new_key).toBeNull();
    expect(readFileSync(join(home, 'master.key'), 'utf8')).not.toBe(before);
    server = await startServer();
    expect((await cli(['secret', 'get', 'A'])).stdout).toBe('1\n');
    expect((await cli(['audit', 'verify'])).code).toBe(0);
  }, 60_000);

  /**
   * A fresh server of its own with `--audit-file -` (stdout: audit lines); `body` gets its base URL
   * and owner token (read from the banner on stderr). Stopped and its data dir removed afterwards.
   */
  async function withSinkServer(prefix: string, body: (o: { child: ChildProcess; base: string; token: string; stdout: () => string; stderr: () => string }) => Promise<void>): Promise<void> {
    const home = mkdtempSync(join(tmpdir(), prefix));
    const port = await freePort();
    const env = cleanEnv({ LATCHKEY_HOME: home, LATCHKEY_CONFIG: join(home, 'cli.json') });
    const child = spawn(process.execPath, [BIN, 'server', '--port', String(port), '--proxy-port', '0', '--audit-file', '-'], { env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d) => (stderr += d));
    const base = `http://127.0.0.1:${port}`;
    try {
      await waitForHealth(base, child, () => stderr);
      const token = /lk_pat_\S+/.exec(stderr)?.[0];
      expect(token, stderr).toBeTruthy();
      await body({ child, base, token: token!, stdout: () => stdout, stderr: () => stderr });
    } finally {
      child.kill('SIGTERM');
      await once(child, 'exit');
      rmSync(home, { recursive: true, force: true });
    }
  }

  const createVault = (base: string, token: string, name: string) =>
    fetch(`${base}/v1/vaults`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ name }) });

  it('server --audit-file -: stdout carries audit events as JSON lines and nothing else (banner and log on stderr)', async () => {
    let stdout = '';
    let stderr = '';
    await withSinkServer('lk-sink-', async (o) => {
      const r = await createVault(o.base, o.token, 'sink-test');
      expect(r.status).toBe(201);
      for (let i = 0; i < 50 && !o.stdout().includes('vault.create'); i++) await new Promise((res) => setTimeout(res, 50));
      stdout = o.stdout();
      stderr = o.stderr();
    });
    const lines = stdout.split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(JSON.parse(l)).toMatchObject({ action: expect.any(String), hash: expect.any(String) });
    expect(lines.some((l) => JSON.parse(l).action === 'vault.create')).toBe(true);
    expect(stderr).toContain('listening on');
  }, 60_000);

  it('a server whose stdout reader goes away keeps serving (EPIPE ends commands, not the server)', async () => {
    await withSinkServer('lk-epipe-', async ({ child, base, token }) => {
      child.stdout!.destroy(); // the reader leaves: the next audit line written to stdout meets EPIPE
      for (let i = 0; i < 5; i++) {
        const r = await createVault(base, token, `pipe-${i}`);
        expect(r.status).toBe(201);
      }
      await new Promise((r) => setTimeout(r, 200));
      expect(child.exitCode).toBeNull();
      expect((await fetch(`${base}/v1/health`)).status).toBe(200);
    });
  }, 60_000);

  it('npx latchkey --help works from the repository root', async () => {
    const r = await run(['latchkey', '--help'], { env: baseEnv, cmd: [process.platform === 'win32' ? 'npx.cmd' : 'npx'] });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Usage: latchkey/);
  }, 60_000);
});
