/**
 * `latchkey user add|list|remove|set-role`: people of the instance (owner | admin | member).
 * `add` prints the new person's API token once; they can also `latchkey login` with a password.
 */
import { Argument, Option, type Command } from 'commander';
import { clientFor, info, out, printJson, printTable, readStdin, usage } from './output.js';
import { MIN_PASSWORD } from './init.js';

type Role = 'owner' | 'admin' | 'member';
const ROLES: Role[] = ['owner', 'admin', 'member'];

export function userCommand(program: Command, _setCode: (c: number) => void): void {
  const user = program.command('user').description('people of this instance (owner | admin | member)');

  user
    .command('add')
    .description('add a person; prints an API token for them once')
    .argument('<email>', 'their email (their login)')
    .addOption(new Option('--role <role>', 'instance role').choices(ROLES).default('member'))
    .option('--password-stdin', `read their password from stdin (at least ${MIN_PASSWORD} characters) so they can log in`)
    .option('--json', 'machine-readable output (includes the token)')
    .action(async (email: string, opts: { role: Role; passwordStdin?: boolean; json?: boolean }, cmd: Command) => {
      let password: string | undefined;
      if (opts.passwordStdin) {
        password = await readStdin('the password');
        if (password.length < MIN_PASSWORD) throw usage(`password: must be at least ${MIN_PASSWORD} characters`);
      }
      const u = await clientFor(cmd).createUser({ email, role: opts.role, ...(password !== undefined ? { password } : {}) });
      if (opts.json) return printJson(u);
      info(`added ${u.email ?? email} (${u.role})${password ? '; they can log in with `latchkey login`' : ''}`);
      info('their API token (shown once):');
      out(u.token);
    });

  user
    .command('list')
    .alias('ls')
    .description('list people')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { items } = await clientFor(cmd).listUsers();
      if (opts.json) return printJson(items);
      printTable(['EMAIL', 'ROLE', 'CREATED'], items.map((u) => [u.email, u.role, u.created_at]));
    });

  user
    .command('set-role')
    .description("change a person's instance role (the last owner stays)")
    .argument('<email>', 'their email')
    .addArgument(new Argument('<role>', 'owner | admin | member').choices(ROLES))
    .option('--json', 'machine-readable output')
    .action(async (email: string, role: Role, opts: { json?: boolean }, cmd: Command) => {
      const u = await clientFor(cmd).setUserRole(email, role);
      if (opts.json) return printJson(u);
      out(`${u.email ?? email} is now ${u.role}`);
    });

  user
    .command('remove')
    .alias('rm')
    .description('remove a person (their tokens stop working; not the last owner)')
    .argument('<email>', 'their email')
    .option('--json', 'machine-readable output')
    .action(async (email: string, opts: { json?: boolean }, cmd: Command) => {
      const r = await clientFor(cmd).removeUser(email);
      if (opts.json) return printJson(r);
      out(`removed ${r.removed}`);
    });
}
