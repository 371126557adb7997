/** `latchkey status`, `whoami`, `login`, `logout`. */
import type { Command } from 'commander';
import { LatchkeyClient } from '../client/index.js';
import { readCliConfig, resolveAddr, writeCliConfig } from './config.js';
import { CliError, clientFor, EXIT, globals, info, interactive, out, printJson, prompt, readStdin, usage } from './output.js';

export function statusCommand(program: Command, _setCode: (c: number) => void): void {
  program
    .command('status')
    .description('server status: storage, counts by category, keys, last rotation, audit head')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const s = await client.status();
      if (opts.json) return printJson(s);
      const cats = Object.entries(s.by_category ?? {}).filter(([, n]) => n > 0).map(([c, n]) => `${c} ${n}`).join(', ');
      const rows: [string, string][] = [
        ['server', `${client.addr} (latchkey ${s.version})`],
        ['storage', `${s.backend}${s.location ? ` (${s.location})` : ''}`],
        ['vaults', String(s.vaults)],
        ['secrets', `${s.secrets}${cats ? ` (${cats})` : ''}`],
        ['last secret rotation', s.last_rotation ?? 'never'],
      ];
      if (s.key) rows.splice(rows.length - 1, 0, ['keys', `KEK version ${s.key.kek_version}, master key from ${s.key.master_key_source}`]);
      if (s.audit) rows.push(['audit', `${s.audit.events} events, head seq ${s.audit.seq} (${s.audit.hash.slice(0, 16)}…)`]);
      if (s.started_at) rows.splice(1, 0, ['started', s.started_at]);
      const w = Math.max(...rows.map(([k]) => k.length)) + 1;
      for (const [k, v] of rows) out(`${(k + ':').padEnd(w + 1)} ${v}`);
    });
}

export function whoamiCommand(program: Command, _setCode: (c: number) => void): void {
  program
    .command('whoami')
    .description('who the configured token belongs to')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const me = await clientFor(cmd).me();
      if (opts.json) return printJson(me);
      if (me.kind === 'user') out(`user ${me.email ?? '(no email yet)'} (${me.role})`);
      else out(`agent ${me.name}${me.session_vault ? ` (session for vault ${me.session_vault})` : ''}`);
    });
}

export function loginCommand(program: Command, _setCode: (c: number) => void): void {
  program
    .command('login')
    .description('log in with email and password (asked for on a terminal); saves a new API token for this CLI')
    .option('--email <email>', 'your email (asked for when not given, on a terminal)')
    .option('--password-stdin', 'read the password from stdin (otherwise asked for, without echo, on a terminal)')
    .option('--token-name <name>', 'a name for the API token', 'cli')
    .option('--json', 'machine-readable output')
    .action(async (opts: { email?: string; passwordStdin?: boolean; tokenName: string; json?: boolean }, cmd: Command) => {
      const ask = !opts.passwordStdin && interactive();
      let email = opts.email;
      if (email === undefined) {
        if (!ask) throw usage('--email: is required (give --email and --password-stdin, or run it in a terminal to be asked)');
        email = (await prompt('Email: ', { what: 'email' })).trim();
      }
      if (!email) throw usage('email: is required');
      let password: string;
      if (opts.passwordStdin) password = await readStdin('the password');
      else if (ask) password = await prompt('Password: ', { hidden: true, what: 'password' });
      else throw usage('give the password on stdin with --password-stdin (or run it in a terminal to be asked)');
      if (!password) throw usage('password: is required');
      const config = readCliConfig();
      const addr = resolveAddr(globals(cmd).addr, process.env, config);
      const anon = new LatchkeyClient({ addr });
      const login = await anon.login(email, password);
      if (!login.cookie) throw new CliError('the server did not return a session', EXIT.error);
      const token = await new LatchkeyClient({ addr, cookie: login.cookie }).createToken(opts.tokenName);
      // the token this one replaces (same server) is revoked, so logins do not pile up live tokens
      if (config.token && config.addr === addr) await new LatchkeyClient({ addr, token: config.token }).logout().catch(() => {});
      const path = writeCliConfig({ token: token.token, addr });
      if (opts.json) return printJson({ email, token_id: token.id, addr, config: path });
      out(`logged in as ${email}; API token '${token.name}' saved in ${path}`);
      if (process.env.LATCHKEY_TOKEN) info('note: LATCHKEY_TOKEN is set and takes precedence over the saved token');
    });
}

export function logoutCommand(program: Command, _setCode: (c: number) => void): void {
  program
    .command('logout')
    .description('revoke the saved API token and forget it')
    .action(async (_opts: unknown, cmd: Command) => {
      const config = readCliConfig();
      if (!config.token) {
        out('not logged in (no saved token)');
        return;
      }
      const addr = resolveAddr(globals(cmd).addr, process.env, config);
      try {
        await new LatchkeyClient({ addr, token: config.token }).logout();
      } catch (err) {
        const status = (err as { status?: number }).status;
        // an already revoked token is fine; anything else: keep the token so the user can retry
        if (status !== 401) throw err;
      }
      writeCliConfig({ token: null });
      out('logged out; the saved token was revoked and removed');
    });
}
