/**
 * `latchkey init` — offline: creates the data dir, master key, database and owner, prints the
 * owner's API token once and saves it for the CLI.
 */
import type { Command } from 'commander';
import { readCliConfig, writeCliConfig } from './config.js';
import { CliError, EXIT, globals, out, printJson, readStdin, usage } from './output.js';

export const MIN_PASSWORD = 12;

export function initCommand(program: Command, _setCode: (c: number) => void): void {
  program
    .command('init')
    .description('initialise the data dir, master key, database and owner (offline); prints an API token once')
    .option('--email <email>', "the owner's email (login for the web console)")
    .option('--password-stdin', "read the owner's password from stdin (at least 12 characters)")
    .option('--database-url <url>', 'PostgreSQL URL (default: $LATCHKEY_DATABASE_URL; unset = SQLite in the data dir)')
    .option('--json', 'machine-readable output')
    .action(async (opts: { email?: string; passwordStdin?: boolean; databaseUrl?: string; json?: boolean }, cmd: Command) => {
      if (opts.passwordStdin && !opts.email) throw usage('--password-stdin needs --email');
      if (opts.email !== undefined && !/^[^\s@]+@[^\s@]+$/.test(opts.email)) throw usage('--email: must be an email address');
      let password: string | null = null;
      if (opts.passwordStdin) {
        password = await readStdin('the password');
        if (password.length < MIN_PASSWORD) throw usage(`password: must be at least ${MIN_PASSWORD} characters`);
      }
      // the token is saved with the address this data dir's server will listen on (as `latchkey
      // server` starts it here, or --addr), never under an address saved earlier, nor $LATCHKEY_ADDR
      // (which may point at another server for this shell only): it must not go to another server
      const { defaultListen, localAddr } = await import('./server.js');
      const listen = defaultListen();
      const addr = globals(cmd).addr || localAddr(listen.host, listen.port);
      const { openCore, defaultHome } = await import('../core/bootstrap.js');
      const home = defaultHome();
      const { core, initialized } = await openCore({
        home,
        databaseUrl: opts.databaseUrl ?? (process.env.LATCHKEY_DATABASE_URL || undefined),
        allowInit: true,
        owner: { email: opts.email ?? null, password },
      });
      await core.close();
      if (!initialized) throw new CliError(`already initialised at ${home}`, EXIT.error);
      // an audit checkpoint remembered for that address belongs to the data there before: forgotten
      const { [addr]: _old, ...checkpoints } = readCliConfig().checkpoints ?? {};
      const configPath = writeCliConfig({ token: initialized.ownerToken, addr, checkpoints });
      if (opts.json) {
        printJson({ token: initialized.ownerToken, home, key_file: initialized.keyFile, email: opts.email ?? null, config: configPath, addr });
        return;
      }
      out(`Latchkey initialised in ${home}`);
      out('');
      out(`Owner API token (shown once; saved for this CLI, with the server address ${addr}, in ${configPath}):`);
      out('');
      out(`  ${initialized.ownerToken}`);
      out('');
      if (initialized.keyFile) {
        out(`Master key file: ${initialized.keyFile}`);
        out('  WARNING: back this file up somewhere safe. Without it the data cannot be decrypted, ever.');
      } else {
        out('Master key: from LATCHKEY_MASTER_KEY (keep it safe: without it the data cannot be decrypted).');
      }
      if (opts.email) out(`Owner: ${opts.email}${password ? '' : ' (no password yet: set one in the web console)'}`);
      else out('Owner: no email yet (the web console\'s first-run page sets one with this token)');
      out('');
      out('Next: `latchkey server`, then `latchkey secret set NAME=value`.');
    });
}
