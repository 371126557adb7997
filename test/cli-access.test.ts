/**
 * The access model through the real CLI (`node bin/latchkey.js …` as a child process) against a
 * real `latchkey server` on SQLite: an owner, a second person who logs in, two vaults, three
 * agents; grants from request to approval, revocation, denial and expiry as the agents see them;
 * proposals reviewed, approved and rejected; agents revoked and their tokens rotated; services.
 * Needs the build (beforeAll runs `tsc -p tsconfig.build.json`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, cleanEnv, freePort, ROOT, runInTerminal, type Result } from './helpers/cli.js';
import { parseBasic } from '../src/cli/service.js';

function run(args: string[], env: NodeJS.ProcessEnv, input?: string): Promise<Result> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', rej);
    child.on('close', (code) => res({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

/** The newest modification time of a .ts file under dir. */
function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestMtime(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** A failure: the exit code, and exactly one `latchkey: …` line on stderr. */
function expectFailure(r: Result, code: number): void {
  expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(code);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^latchkey: \S/);
}

function ok(r: Result): Result {
  expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0);
  return r;
}

const json = <T = any>(r: Result): T => JSON.parse(ok(r).stdout) as T; // eslint-disable-line @typescript-eslint/no-explicit-any

interface GrantJ { id: string; agent: string; secret?: string; service?: string; kind: string; mode: string; status: string; expires_at: string | null; decision_reason: string | null }

// independent CLI runs of a step go in parallel; on a loaded 2-core machine one takes up to a second
describe('CLI access model: people, agents, grants, proposals, services (child process, real server)', { timeout: 120_000 }, () => {
  let home: string;
  let addr: string;
  let server: ChildProcess | null = null;
  let serverLog = '';
  let base: NodeJS.ProcessEnv;
  let ownerToken = '';
  let bobApiToken = '';
  const bobConfig = () => join(home, 'bob', 'config.json');
  const agentTokens: Record<string, string> = {};

  const owner = (args: string[], input?: string) => run(args, { ...base, LATCHKEY_TOKEN: ownerToken }, input);
  /** Bob: no LATCHKEY_TOKEN; the CLI uses the token `latchkey login` saved in his config file. */
  const bob = (args: string[], input?: string) => run(args, { ...base, LATCHKEY_CONFIG: bobConfig() }, input);
  const agent = (name: string, args: string[], input?: string, token = agentTokens[name]!) =>
    run(args, { ...base, LATCHKEY_CONFIG: join(home, 'agents', `${name}.json`), LATCHKEY_TOKEN: token }, input);

  async function api(token: string, method: string, path: string, body?: unknown): Promise<Response> {
    return fetch(`${addr}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  beforeAll(async () => {
    // build dist/ unless it is newer than every source file (`npm test` has just built it); a type
    // error elsewhere still emits, so only a missing output fails here
    const built = join(ROOT, 'dist', 'src', 'cli', 'main.js');
    if (!existsSync(built) || newestMtime(join(ROOT, 'src')) > statSync(built).mtimeMs) {
      const build = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, encoding: 'utf8' });
      if (!existsSync(join(ROOT, 'dist', 'src', 'cli', 'grant.js'))) throw new Error(`the build did not produce dist/: ${build.stdout}${build.stderr}`);
    }
    home = mkdtempSync(join(tmpdir(), 'latchkey-cli-access-'));
    const port = await freePort();
    addr = `http://127.0.0.1:${port}`;
    base = cleanEnv({ LATCHKEY_HOME: home, LATCHKEY_ADDR: addr });

    // the owner initialises (offline), then the server starts on that data dir
    const init = await run(['init', '--email', 'owner@example.com', '--password-stdin', '--json'], base, 'owner password 123\n');
    ownerToken = json<{ token: string }>(init).token;
    expect(ownerToken).toMatch(/^lk_pat_/);
    server = spawn(process.execPath, [BIN, 'server', '--port', String(port), '--proxy-port', '0', '--log-level', 'warn'], { env: base, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    server.stdout!.setEncoding('utf8').on('data', (d) => (serverLog += d));
    server.stderr!.setEncoding('utf8').on('data', (d) => (serverLog += d));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (server.exitCode !== null) throw new Error(`server exited: ${serverLog}`);
      try {
        if ((await fetch(`${addr}/v1/health`)).ok) break;
      } catch { /* not yet */ }
      if (Date.now() > deadline) throw new Error(`server did not start: ${serverLog}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 120_000);

  afterAll(async () => {
    const s = server;
    server = null;
    if (s && s.exitCode === null) {
      const done = new Promise((r) => s.on('exit', r));
      s.kill('SIGTERM');
      await done;
    }
    if (home) rmSync(home, { recursive: true, force: true });
  });

  it('a second person is added, made admin of two vaults, and logs in (config 0600)', async () => {
    ok(await owner(['vault', 'create', 'team']));
    await Promise.all([
      owner(['secret', 'set', 'STRIPE_KEY=sk_live_stripe_value', 'SMTP_USER=mailer', 'SMTP_PASS=-'], 'smtp-pass-value\n').then(ok),
      owner(['secret', 'set', 'GITHUB_TOKEN=ghp_team_value', 'DEPLOY_KEY=deploy_team_value', '--vault', 'team']).then(ok),
    ]);

    const u = json<{ email: string; role: string; token: string }>(await owner(['user', 'add', 'bob@example.com', '--role', 'member', '--password-stdin', '--json'], 'bob password 1234\n'));
    expect(u).toMatchObject({ email: 'bob@example.com', role: 'member' });
    expect(u.token).toMatch(/^lk_pat_/);
    bobApiToken = u.token;
    const [dup, badRole, users] = await Promise.all([
      owner(['user', 'add', 'bob@example.com']),
      owner(['user', 'add', 'x@example.com', '--role', 'king']),
      owner(['user', 'list', '--json']),
      owner(['member', 'add', 'bob@example.com', '--role', 'admin']).then(ok),
      owner(['member', 'add', 'bob@example.com', '--role', 'admin', '--vault', 'team']).then(ok),
    ]);
    expectFailure(dup, 1); // 409
    expectFailure(badRole, 2);
    expect(json<{ email: string }[]>(users).map((x) => x.email).sort()).toEqual(['bob@example.com', 'owner@example.com']);
    const members = json<{ kind: string; email?: string; role: string }[]>(await owner(['member', 'list', '--vault', 'team', '--json']));
    expect(members).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'user', email: 'bob@example.com', role: 'admin' })]));

    // a wrong password: denied, nothing saved
    const bad = await bob(['login', '--email', 'bob@example.com', '--password-stdin'], 'not his password\n');
    expectFailure(bad, 4);
    expect(existsSync(bobConfig())).toBe(false);

    const login = ok(await bob(['login', '--email', 'bob@example.com', '--password-stdin'], 'bob password 1234\n'));
    expect(login.stdout).toContain(bobConfig());
    expect(statSync(bobConfig()).mode & 0o777).toBe(0o600);
    const saved = JSON.parse(readFileSync(bobConfig(), 'utf8')) as { token: string; addr: string };
    expect(saved.token).toMatch(/^lk_pat_/);
    expect(saved.addr).toBe(addr);
    expect(json(await bob(['whoami', '--json']))).toMatchObject({ kind: 'user', email: 'bob@example.com', role: 'member' });
  });

  it('login on a terminal asks for the email and, without echo, the password; without one it says what to give', async () => {
    const terminalLogin = (config: string, answers: Array<[RegExp, string]>) => runInTerminal(['login'], { ...base, LATCHKEY_CONFIG: config }, answers);
    const config = join(home, 'bob-terminal', 'config.json');
    // typed with a slip: Ctrl-U clears the line, an arrow key is ignored (not part of the password)
    const r = await terminalLogin(config, [[/Email: $/, 'bob@example.com'], [/Password: $/, 'garbage\u0015bob pass\u001b[Dword 1234']]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('bob@example.com'); // the email is echoed
    expect(r.stdout).not.toContain('bob password 1234'); // the password never is
    expect(r.stdout).toContain(`logged in as bob@example.com; API token 'cli' saved in ${config}`);
    const first = JSON.parse(readFileSync(config, 'utf8')).token as string;
    expect(first).toMatch(/^lk_pat_/);
    // logging in again replaces the saved token and revokes the one it replaces
    expect((await terminalLogin(config, [[/Email: $/, 'bob@example.com'], [/Password: $/, 'bob password 1234']])).code).toBe(0);
    const second = JSON.parse(readFileSync(config, 'utf8')).token as string;
    expect(second).not.toBe(first);
    expect((await api(first, 'GET', '/v1/auth/me')).status).toBe(401);
    expect((await api(second, 'GET', '/v1/auth/me')).status).toBe(200);

    // a wrong password typed on the terminal: denied, nothing saved
    const badConfig = join(home, 'bob-terminal-bad', 'config.json');
    const bad = await terminalLogin(badConfig, [[/Email: $/, 'bob@example.com'], [/Password: $/, 'not his password']]);
    expect(bad.code, bad.stdout).toBe(4);
    expect(existsSync(badConfig)).toBe(false);

    // Ctrl-C at a question gives up: exit 1, one line, nothing saved
    const interrupted = await terminalLogin(badConfig, [[/Email: $/, '\u0003']]);
    expect(interrupted.code, interrupted.stdout).toBe(1);
    expect(interrupted.stdout).toContain('latchkey: interrupted');
    expect(existsSync(badConfig)).toBe(false);
    // no terminal and no flags: a usage error naming what to give
    const piped = await bob(['login']);
    expectFailure(piped, 2);
    expect(piped.stderr).toContain('--email');
    const noPassword = await bob(['login', '--email', 'bob@example.com']);
    expectFailure(noPassword, 2);
    expect(noPassword.stderr).toContain('--password-stdin');
  });

  it('three agents: one per vault, one in both; tokens printed once', async () => {
    const specs = [['a1', ['default']], ['a2', ['team']], ['a3', ['default', 'team']]] as const;
    const created = await Promise.all(specs.map(([name, vaults]) => owner(['agent', 'create', name, ...vaults.flatMap((v) => ['--vault', v]), '--json'])));
    specs.forEach(([name, vaults], i) => {
      const a = json<{ name: string; token: string; vaults: string[] }>(created[i]!);
      expect(a.name).toBe(name);
      expect(a.vaults).toEqual([...vaults]);
      expect(a.token).toMatch(/^lk_agent_/);
      agentTokens[name] = a.token;
    });
    const [h, dup, badName, list, table] = await Promise.all([
      owner(['agent', 'create', 'scratch']),
      owner(['agent', 'create', 'a1']),
      owner(['agent', 'create', 'Bad Name']),
      bob(['agent', 'list', '--json']),
      bob(['agent', 'list']),
    ]);
    // human output: the token alone on stdout, the rest on stderr
    expect(ok(h).stdout.trim()).toMatch(/^lk_agent_\S+$/);
    expect(h.stderr).toContain('created agent scratch in vault default');
    expectFailure(dup, 1); // exists
    expectFailure(badName, 2);
    expect(json<{ name: string; status: string; vaults: string[] }[]>(list).find((a) => a.name === 'a3')).toMatchObject({ status: 'active', vaults: ['default', 'team'] });
    expect(ok(table).stdout.split('\n')[0]).toMatch(/^NAME\s+STATUS\s+VAULTS/);
    expect(table.stdout).not.toMatch(/lk_agent_/);
  });

  it('agents list names in their vaults only; reading a value is denied with grant state none', async () => {
    const [names, a1Team, a2Team, a2Default, a3Default, a3Team, get, getVersion, a2Get, a1Set] = await Promise.all([
      agent('a1', ['secret', 'list', '--json']),
      agent('a1', ['secret', 'list', '--vault', 'team']),
      agent('a2', ['secret', 'list', '--vault', 'team', '--json']),
      agent('a2', ['secret', 'list']),
      agent('a3', ['secret', 'list', '--json']),
      agent('a3', ['secret', 'list', '--vault', 'team', '--json']),
      agent('a1', ['secret', 'get', 'STRIPE_KEY']),
      agent('a1', ['secret', 'get', 'STRIPE_KEY', '--version', '1']),
      agent('a2', ['secret', 'get', 'STRIPE_KEY']),
      agent('a1', ['secret', 'set', 'STRIPE_KEY=x']),
    ]);
    expect(json<{ name: string }[]>(names).map((s) => s.name).sort()).toEqual(['SMTP_PASS', 'SMTP_USER', 'STRIPE_KEY']);
    expect(names.stdout).not.toContain('sk_live_stripe_value');
    expectFailure(a1Team, 4);
    expect(json<{ name: string }[]>(a2Team).map((s) => s.name)).toEqual(['DEPLOY_KEY', 'GITHUB_TOKEN']);
    expectFailure(a2Default, 4); // default: not its vault
    expect(json<unknown[]>(a3Default)).toHaveLength(3);
    expect(json<unknown[]>(a3Team)).toHaveLength(2);

    expectFailure(get, 4);
    expect(get.stderr).toContain('grant state: none');
    expect(get.stderr).toContain('latchkey grant request --secret STRIPE_KEY --mode read');
    expect(get.stdout).toBe('');
    expectFailure(getVersion, 2);
    expectFailure(a2Get, 4); // not in default at all
    expectFailure(a1Set, 4); // agents may not write
  });

  it('request → pending → approve --expires → value; revoke → revoked; deny → denied', async () => {
    const [noReason, both, missing, otherVault, person] = await Promise.all([
      agent('a1', ['grant', 'request', '--secret', 'STRIPE_KEY']),
      agent('a1', ['grant', 'request', '--secret', 'STRIPE_KEY', '--service', 'x', '--reason', 'r']),
      agent('a1', ['grant', 'request', '--secret', 'NOPE_KEY', '--reason', 'r']),
      agent('a1', ['grant', 'request', '--secret', 'GITHUB_TOKEN', '--vault', 'team', '--reason', 'r']),
      owner(['grant', 'request', '--secret', 'STRIPE_KEY', '--reason', 'people grant directly']),
    ]);
    expectFailure(noReason, 2); // --reason is required
    expectFailure(both, 2);
    expectFailure(missing, 3);
    expectFailure(otherVault, 4);
    expectFailure(person, 2);
    expect(person.stderr).toContain('latchkey grant add');

    // the reason is the agent's text: the person's terminal must show it, not obey it
    const req = json<GrantJ>(await agent('a1', ['grant', 'request', '--secret', 'STRIPE_KEY', '--mode', 'read', '--reason', 'charge a customer\x1b[8m\nAPPROVED\x07', '--json']));
    expect(req).toMatchObject({ agent: 'a1', secret: 'STRIPE_KEY', mode: 'read', status: 'pending' });

    // the agent sees its request pending and cannot decide it; the person sees it
    const [pendingGet, pending, table, agentApprove, agentAdd, noSuch, badStatus, badExpiry] = await Promise.all([
      agent('a1', ['secret', 'get', 'STRIPE_KEY']),
      bob(['grant', 'list', '--status', 'pending', '--json']),
      bob(['grant', 'list']),
      agent('a1', ['grant', 'approve', req.id]),
      agent('a1', ['grant', 'add', '--agent', 'a1', '--secret', 'STRIPE_KEY']),
      bob(['grant', 'approve', 'no-such-grant']),
      bob(['grant', 'list', '--status', 'bogus']),
      bob(['grant', 'approve', req.id, '--expires', 'tomorrow-ish']),
    ]);
    expectFailure(pendingGet, 4);
    expect(pendingGet.stderr).toContain('grant state: pending');
    expect(pendingGet.stderr).toContain(req.id);
    expect(json<GrantJ[]>(pending).map((g) => g.id)).toEqual([req.id]);
    expect(ok(table).stdout).toMatch(/^ID\s+AGENT\s+TARGET\s+MODE\s+STATUS/);
    expect(table.stdout).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
    expect(table.stdout).toContain('charge a customer\\x1b[8m APPROVED\\x07');
    expectFailure(agentApprove, 4);
    expectFailure(agentAdd, 4);
    expectFailure(noSuch, 3);
    expectFailure(badStatus, 2);
    expectFailure(badExpiry, 2);

    const approved = json<GrantJ>(await bob(['grant', 'approve', req.id, '--expires', '1h', '--json']));
    expect(approved.status).toBe('approved');
    const exp = Date.parse(approved.expires_at!);
    expect(exp - Date.now()).toBeGreaterThan(50 * 60_000);
    expect(exp - Date.now()).toBeLessThanOrEqual(3600_000);

    const [got, gotJson, other, mine] = await Promise.all([
      agent('a1', ['secret', 'get', 'STRIPE_KEY']),
      agent('a1', ['secret', 'get', 'STRIPE_KEY', '--json']),
      agent('a1', ['secret', 'get', 'SMTP_PASS']),
      agent('a1', ['grant', 'list', '--json']),
    ]);
    expect(ok(got).stdout).toBe('sk_live_stripe_value\n');
    expect(json(gotJson)).toMatchObject({ name: 'STRIPE_KEY', vault: 'default', value: 'sk_live_stripe_value', grant: { id: req.id } });
    expect(other.stderr).toContain('grant state: none'); // a read grant for one secret reads that one only
    expect(json<GrantJ[]>(mine).map((g) => [g.id, g.status])).toEqual([[req.id, 'approved']]); // its own grants

    ok(await bob(['grant', 'revoke', req.id]));
    const [revoked, reapprove] = await Promise.all([agent('a1', ['secret', 'get', 'STRIPE_KEY']), bob(['grant', 'approve', req.id])]);
    expectFailure(revoked, 4);
    expect(revoked.stderr).toContain('grant state: revoked');
    expect(revoked.stderr).not.toContain('sk_live_stripe_value');
    expectFailure(reapprove, 1); // 409: no longer pending

    const again = json<GrantJ>(await agent('a1', ['grant', 'request', '--secret', 'STRIPE_KEY', '--reason', 'please, once more', '--json']));
    expect(again.status).toBe('pending');
    const denied = json<GrantJ>(await bob(['grant', 'deny', again.id, '--reason', 'use the proxy instead', '--json']));
    expect(denied).toMatchObject({ status: 'denied', decision_reason: 'use the proxy instead' });
    const [d, deniedList] = await Promise.all([agent('a1', ['secret', 'get', 'STRIPE_KEY']), bob(['grant', 'list', '--status', 'denied', '--json'])]);
    expectFailure(d, 4);
    expect(d.stderr).toContain('grant state: denied');
    expect(json<GrantJ[]>(deniedList).map((g) => g.id)).toEqual([again.id]);
  });

  it('expiry → expired; a session token is scoped to its vault; a person grants directly', async () => {
    // approve with a short expiry and read at once. A read that ends before the expiry must get the
    // value; on a machine too slow to finish one CLI run in time, try again with a longer expiry.
    let approved: GrantJ | null = null;
    for (let seconds = 8; !approved; seconds *= 2) {
      const req = json<GrantJ>(await agent('a3', ['grant', 'request', '--secret', 'DEPLOY_KEY', '--vault', 'team', '--reason', 'deploy', '--json']));
      const g = json<GrantJ>(await bob(['grant', 'approve', req.id, '--vault', 'team', '--expires', `${seconds}s`, '--json']));
      const r = await agent('a3', ['secret', 'get', 'DEPLOY_KEY', '--vault', 'team']);
      if (r.code === 0) {
        expect(r.stdout).toBe('deploy_team_value\n');
        approved = g;
      } else {
        expect(r.stderr).toContain('grant state: expired');
        expect(Date.now(), `read failed before the grant expired: ${r.stderr}`).toBeGreaterThanOrEqual(Date.parse(g.expires_at!));
        expect(seconds, 'the machine is too slow for any expiry').toBeLessThan(128);
      }
    }

    // meanwhile: a person grants directly (a3 may read GITHUB_TOKEN for an hour)
    const direct = json<GrantJ>(await bob(['grant', 'add', '--agent', 'a3', '--secret', 'GITHUB_TOKEN', '--mode', 'read', '--expires', '1h', '--vault', 'team', '--json']));
    expect(direct).toMatchObject({ agent: 'a3', secret: 'GITHUB_TOKEN', status: 'approved', mode: 'read' });
    expect(Date.parse(direct.expires_at!) - Date.now()).toBeGreaterThan(50 * 60_000);

    // a session for vault team: --vault may be left out everywhere
    const sess = json<{ token: string; vault: string; agent: string }>(await agent('a3', ['agent', 'session', '--vault', 'team', '--ttl', '10m', '--json']));
    expect(sess).toMatchObject({ vault: 'team', agent: 'a3' });
    expect(sess.token).toMatch(/^lk_sess_/);
    const viaSession = (args: string[]) => agent('a3', args, undefined, sess.token);
    const [sList, sGet, sOther, sMint, human, forA1, shortTtl, noTarget, badMode] = await Promise.all([
      viaSession(['secret', 'list', '--json']),
      viaSession(['secret', 'get', 'GITHUB_TOKEN']),
      viaSession(['secret', 'list', '--vault', 'default']),
      viaSession(['agent', 'session', '--vault', 'team']),
      agent('a3', ['agent', 'session', '--vault', 'default']),
      bob(['agent', 'session', '--agent', 'a1', '--ttl', '5m', '--json']), // a person mints one for a named agent
      bob(['agent', 'session', '--agent', 'a1', '--ttl', '1m']),
      bob(['grant', 'add', '--agent', 'a2', '--vault', 'team']),
      bob(['grant', 'add', '--agent', 'a2', '--service', 'x', '--mode', 'write', '--vault', 'team']),
    ]);
    expect(json<{ name: string }[]>(sList).map((s) => s.name)).toEqual(['DEPLOY_KEY', 'GITHUB_TOKEN']);
    expect(ok(sGet).stdout).toBe('ghp_team_value\n');
    expectFailure(sOther, 4);
    expectFailure(sMint, 4); // a session cannot mint another (denied)
    expect(ok(human).stdout.trim()).toMatch(/^lk_sess_\S+$/);
    expect(json<{ agent: string }>(forA1).agent).toBe('a1');
    expectFailure(shortTtl, 2);
    expectFailure(noTarget, 2);
    expectFailure(badMode, 2);

    const wait = Date.parse(approved.expires_at!) - Date.now() + 300;
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const [e, es, expiredList] = await Promise.all([
      agent('a3', ['secret', 'get', 'DEPLOY_KEY', '--vault', 'team']),
      viaSession(['secret', 'get', 'DEPLOY_KEY']),
      bob(['grant', 'list', '--vault', 'team', '--status', 'expired', '--json']),
    ]);
    expectFailure(e, 4);
    expect(e.stderr).toContain('grant state: expired');
    expect(e.stderr).toContain(approved.id);
    expect(es.stderr).toContain('grant state: expired');
    expect(json<GrantJ[]>(expiredList).map((g) => g.id)).toContain(approved.id);
  });

  it('services: add (every auth rule), list --json, show, remove; agents list but cannot manage', async () => {
    const [stripe] = await Promise.all([
      bob(['service', 'add', 'stripe', '--host', 'api.stripe.com', '--bearer', 'STRIPE_KEY', '--method', 'GET', '--method', 'post,delete', '--path-prefix', '/v1/charges', '--quota', '100', '--json']),
      bob(['service', 'add', 'smtp', '--host', 'mail.example.com', '--basic', 'SMTP_USER:SMTP_PASS', '--disabled']).then(ok),
      bob(['service', 'add', 'hdr', '--host', '*.example.org', '--header', 'Authorization:STRIPE_KEY', '--prefix', 'Token ']).then(ok),
      bob(['service', 'add', 'maps', '--host', 'maps.example.com', '--query', 'key:STRIPE_KEY']).then(ok),
      bob(['service', 'add', 'bot', '--host', 'discord.com', '--template', 'Authorization: Bot {{ STRIPE_KEY }}', '--template', 'X-User: {{ SMTP_USER }}', '--description', 'a bot']).then(ok),
    ]);
    expect(json(stripe!)).toMatchObject({ name: 'stripe', host: 'api.stripe.com', auth: { type: 'bearer', key: 'STRIPE_KEY' }, methods: ['GET', 'POST', 'DELETE'], path_prefixes: ['/v1/charges'], quota_per_minute: 100, enabled: true });

    const [listR, table, show] = await Promise.all([bob(['service', 'list', '--json']), bob(['service', 'list']), bob(['service', 'show', 'smtp', '--json'])]);
    const list = json<{ name: string; auth: unknown; enabled: boolean }[]>(listR);
    const by = Object.fromEntries(list.map((s) => [s.name, s]));
    expect(Object.keys(by).sort()).toEqual(['bot', 'hdr', 'maps', 'smtp', 'stripe']);
    expect(by.smtp).toMatchObject({ auth: { type: 'basic', username_key: 'SMTP_USER', password_key: 'SMTP_PASS' }, enabled: false });
    expect(by.hdr).toMatchObject({ auth: { type: 'header', name: 'Authorization', key: 'STRIPE_KEY', prefix: 'Token ' } });
    expect(by.maps).toMatchObject({ auth: { type: 'query', param: 'key', key: 'STRIPE_KEY' } });
    expect(by.bot).toMatchObject({ auth: { type: 'template', headers: { Authorization: 'Bot {{ STRIPE_KEY }}', 'X-User': '{{ SMTP_USER }}' } } });
    expect(listR.stdout).not.toContain('sk_live_stripe_value');
    expect(ok(table).stdout.split('\n')[0]).toMatch(/^NAME\s+HOST\s+AUTH\s+ENABLED/);
    expect(table.stdout).toMatch(/stripe\s+api\.stripe\.com\s+bearer STRIPE_KEY\s+yes/);
    expect(json(show)).toMatchObject({ name: 'smtp', enabled: false });

    // usage errors and server-side validation, one line each
    const x = ['service', 'add', 'x', '--host', 'x.example.com'];
    const [noAuth, twoAuth, prefixAlone, headerNoKey, quota0, missing, exists] = await Promise.all([
      bob(x),
      bob([...x, '--bearer', 'STRIPE_KEY', '--query', 'k:STRIPE_KEY']),
      bob([...x, '--bearer', 'STRIPE_KEY', '--prefix', 'Bearer ']),
      bob([...x, '--header', 'NoKey']),
      bob([...x, '--quota', '0', '--bearer', 'STRIPE_KEY']),
      bob([...x, '--bearer', 'NO_SUCH_KEY']),
      bob(['service', 'add', 'stripe', '--host', 'api.stripe.com', '--bearer', 'STRIPE_KEY']),
    ]);
    for (const r of [noAuth, twoAuth, prefixAlone, headerNoKey, quota0]) expectFailure(r, 2);
    expect(missing.code).not.toBe(0);
    expectFailure(missing, missing.code!);
    expect(missing.stderr).toContain('NO_SUCH_KEY');
    expectFailure(exists, 1); // 409
    expect(exists.stderr).toContain('add --replace to replace it');
    const replaced = json(await bob(['service', 'add', 'stripe', '--host', 'api.stripe.com', '--bearer', 'STRIPE_KEY', '--replace', '--json']));
    expect(replaced).toMatchObject({ methods: [], path_prefixes: [], quota_per_minute: null });

    // agents see names and hosts, manage nothing
    const [aList, aAdd, aRm] = await Promise.all([
      agent('a3', ['service', 'list', '--json']),
      agent('a3', ['service', 'add', 'evil', '--host', 'evil.example.com', '--bearer', 'STRIPE_KEY']),
      agent('a3', ['service', 'remove', 'stripe']),
    ]);
    expect(json<{ name: string }[]>(aList).map((s) => s.name).sort()).toEqual(['bot', 'hdr', 'maps', 'smtp', 'stripe']);
    expectFailure(aAdd, 4);
    expectFailure(aRm, 4);

    expect(json(await bob(['service', 'remove', 'maps', '--json']))).toMatchObject({ deleted: 'maps', vault: 'default' });
    const [after, again] = await Promise.all([bob(['service', 'list', '--json']), bob(['service', 'remove', 'maps'])]);
    expect(json<{ name: string }[]>(after).map((s) => s.name)).not.toContain('maps');
    expectFailure(again, 3);
  });

  it('proposals: show prints the diff and new-host warnings; approve KEY=- grants use; reject', async () => {
    ok(await bob(['service', 'add', 'github', '--host', 'api.github.com', '--bearer', 'GITHUB_TOKEN', '--vault', 'team']));
    const created = await api(agentTokens.a2!, 'POST', '/v1/vaults/team/proposals', {
      message: 'I need OpenAI and GitHub',
      services: [
        { name: 'github', host: 'api.github.com', auth: { type: 'bearer', key: 'GITHUB_TOKEN' }, methods: ['GET'] },
        { name: 'openai', host: 'api.openai.com', auth: { type: 'bearer', key: 'OPENAI_KEY' } },
        { name: 'gh-mirror', host: 'mirror.example.net', auth: { type: 'bearer', key: 'GITHUB_TOKEN' } },
      ],
      credentials: [{ action: 'set', key: 'OPENAI_KEY', description: 'an OpenAI API key', obtain: 'https://platform.openai.com/api-keys' }],
    });
    expect(created.status).toBe(201);
    const { id } = (await created.json()) as { id: string };

    const [listed, show, viewR, agentApprove, agentReject, noValue, noEq] = await Promise.all([
      bob(['proposal', 'list', '--vault', 'team', '--json']),
      bob(['proposal', 'show', id, '--vault', 'team']),
      bob(['proposal', 'show', id, '--vault', 'team', '--json']),
      // the agent can neither approve nor reject
      agent('a2', ['proposal', 'approve', id, 'OPENAI_KEY=sk-agent', '--vault', 'team']),
      agent('a2', ['proposal', 'reject', id, '--vault', 'team']),
      // a missing value is refused, naming the slot
      bob(['proposal', 'approve', id, '--vault', 'team']),
      bob(['proposal', 'approve', id, 'OPENAI_KEY', '--vault', 'team']),
    ]);
    expect(json<unknown[]>(listed)).toEqual([expect.objectContaining({ id, status: 'pending', agent: 'a2' })]);
    ok(show);
    expect(show.stdout).toContain(`proposal ${id} in vault team: pending`);
    expect(show.stdout).toMatch(/~ github\s+api\.github\.com\s+bearer GITHUB_TOKEN.*\[update\]/);
    expect(show.stdout).toContain('methods: [] → ["GET"]');
    expect(show.stdout).toMatch(/\+ openai\s+api\.openai\.com\s+bearer OPENAI_KEY\s+\[add\]/);
    expect(show.stdout).toContain('set OPENAI_KEY: NEEDS A VALUE');
    expect(show.stdout).toContain('obtain: https://platform.openai.com/api-keys');
    expect(show.stdout).toMatch(/WARNINGS \(1\):\n\s+! service gh-mirror would send the existing credential GITHUB_TOKEN to mirror\.example\.net \(now sent only to: api\.github\.com\)/);
    expect(show.stdout).toContain(`approve: latchkey proposal approve ${id} --vault team OPENAI_KEY=-`);
    const view = json<{ services: { name: string; change: string }[]; warnings: { service: string; credential: string }[] }>(viewR);
    expect(view.services.map((s) => [s.name, s.change])).toEqual([['github', 'update'], ['openai', 'add'], ['gh-mirror', 'add']]);
    expect(view.warnings).toEqual([expect.objectContaining({ service: 'gh-mirror', credential: 'GITHUB_TOKEN' })]);
    expectFailure(agentApprove, 4);
    expectFailure(agentReject, 4);
    expectFailure(noValue, 2);
    expect(noValue.stderr).toContain('credentials.OPENAI_KEY');
    expectFailure(noEq, 2);

    const approved = ok(await bob(['proposal', 'approve', id, 'OPENAI_KEY=-', '--vault', 'team'], 'sk-openai-from-stdin\n'));
    expect(approved.stdout).toContain(`approved proposal ${id} in vault team`);
    expect(approved.stdout).toContain('credentials set: OPENAI_KEY');
    expect(approved.stdout).not.toContain('sk-openai-from-stdin');

    const [value, twice, grantsR, servicesR] = await Promise.all([
      owner(['secret', 'get', 'OPENAI_KEY', '--vault', 'team']),
      bob(['proposal', 'approve', id, '--vault', 'team']),
      agent('a2', ['grant', 'list', '--vault', 'team', '--json']),
      bob(['service', 'list', '--vault', 'team', '--json']),
    ]);
    expect(ok(value).stdout).toBe('sk-openai-from-stdin\n');
    expectFailure(twice, 1); // once only
    // the proposing agent now holds `use` grants on the proposed services
    const use = json<GrantJ[]>(grantsR).filter((g) => g.kind === 'service').map((g) => [g.service, g.mode, g.status]).sort();
    expect(use).toEqual([['gh-mirror', 'use', 'approved'], ['github', 'use', 'approved'], ['openai', 'use', 'approved']]);
    expect(json<{ name: string }[]>(servicesR).map((s) => s.name).sort()).toEqual(['gh-mirror', 'github', 'openai']);

    // a second proposal, raised with the CLI (stdin), is rejected
    const p2 = json<{ id: string; approval_url: string }>(await agent('a2', ['proposal', 'create', '--vault', 'team', '--json'],
      JSON.stringify({ message: 'also Slack', credentials: [{ action: 'set', key: 'SLACK_TOKEN', description: 'a bot token' }] })));
    expect(p2.approval_url).toMatch(new RegExp(`^${addr}/approve\\?token=lk_appr_`));
    const rej = json<{ status: string; decision_reason: string }>(await bob(['proposal', 'reject', p2.id, '--vault', 'team', '--reason', 'not now', '--json']));
    expect(rej).toMatchObject({ status: 'rejected', decision_reason: 'not now' });
    const [mine, rejected, noSuch, notJson] = await Promise.all([
      agent('a2', ['proposal', 'list', '--vault', 'team', '--json']),
      bob(['proposal', 'list', '--vault', 'team', '--status', 'rejected', '--json']),
      bob(['proposal', 'show', 'no-such-id', '--vault', 'team']),
      agent('a2', ['proposal', 'create', '--vault', 'team'], 'not json'),
    ]);
    expect(Object.fromEntries(json<{ id: string; status: string }[]>(mine).map((p) => [p.id, p.status]))).toEqual({ [id]: 'approved', [p2.id]: 'rejected' });
    expect(json<unknown[]>(rejected)).toHaveLength(1);
    expectFailure(noSuch, 3);
    expectFailure(notJson, 2);
  });

  it('agent revoke: its next command is refused (exit 4); rotate-token: old token refused, new works', async () => {
    ok(await agent('a1', ['secret', 'list']));
    expect(json<{ revoked: string }>(await bob(['agent', 'revoke', 'a1', '--json'])).revoked).toBe('a1');
    const [after, list, rotateRevoked, noSuch] = await Promise.all([
      agent('a1', ['secret', 'list']),
      bob(['agent', 'list', '--json']),
      bob(['agent', 'rotate-token', 'a1']),
      bob(['agent', 'revoke', 'no-such-agent']),
    ]);
    expectFailure(after, 4);
    expect(after.stderr).not.toContain(agentTokens.a1!);
    expect(json<{ name: string; status: string }[]>(list).find((a) => a.name === 'a1')!.status).toBe('revoked');
    expectFailure(rotateRevoked, 1); // a revoked agent gets no new token
    expectFailure(noSuch, 3);

    const old = agentTokens.a2!;
    const rot = json<{ name: string; token: string }>(await owner(['agent', 'rotate-token', 'a2', '--json']));
    expect(rot.token).toMatch(/^lk_agent_/);
    expect(rot.token).not.toBe(old);
    const [oldR, newList, newGrants] = await Promise.all([
      agent('a2', ['secret', 'list', '--vault', 'team'], undefined, old),
      agent('a2', ['secret', 'list', '--vault', 'team', '--json'], undefined, rot.token),
      agent('a2', ['grant', 'list', '--vault', 'team', '--json'], undefined, rot.token),
    ]);
    expectFailure(oldR, 4);
    ok(newList);
    expect(json<GrantJ[]>(newGrants).filter((g) => g.status === 'approved')).toHaveLength(3); // its grants stay with the agent
  });

  it('member remove, user remove; logout revokes the saved token', async () => {
    ok(await owner(['member', 'remove', 'bob@example.com', '--vault', 'team']));
    const [notAdmin, again] = await Promise.all([bob(['grant', 'list', '--vault', 'team']), owner(['member', 'remove', 'bob@example.com', '--vault', 'team'])]);
    expectFailure(notAdmin, 4);
    expectFailure(again, 3);

    const token = (JSON.parse(readFileSync(bobConfig(), 'utf8')) as { token: string }).token;
    ok(await bob(['logout']));
    expect(JSON.parse(readFileSync(bobConfig(), 'utf8')).token).toBeUndefined();
    expect(statSync(bobConfig()).mode & 0o777).toBe(0o600);
    expect((await api(token, 'GET', '/v1/auth/me')).status).toBe(401);
    expectFailure(await bob(['whoami']), 4);

    ok(await owner(['user', 'remove', 'bob@example.com']));
    expect((await api(bobApiToken, 'GET', '/v1/auth/me')).status).toBe(401); // the token `user add` printed
    expectFailure(await owner(['user', 'remove', 'owner@example.com']), 1); // the last owner stays
  });

  it('--basic splits namespaced credential names unambiguously', () => {
    expect(parseBasic('SMTP_USER')).toEqual({ username_key: 'SMTP_USER' });
    expect(parseBasic('SMTP_USER:SMTP_PASS')).toEqual({ username_key: 'SMTP_USER', password_key: 'SMTP_PASS' });
    expect(parseBasic('skill:smtp:user:skill:smtp:pass')).toEqual({ username_key: 'skill:smtp:user', password_key: 'skill:smtp:pass' });
    expect(parseBasic('skill:smtp:user')).toEqual({ username_key: 'skill:smtp:user' });
    expect(parseBasic('USER:skill:smtp:pass')).toEqual({ username_key: 'USER', password_key: 'skill:smtp:pass' });
  });
});
