/**
 * `latchkey member add|list|remove`: people in a vault (role admin | member). A vault-scoped noun
 * like `secret` and `service`, so it takes --vault. Agents join vaults with `latchkey agent
 * create --vault` or `latchkey agent join`; `member list` shows both.
 */
import { Option, type Command } from 'commander';
import { clientFor, info, out, printJson, printTable } from './output.js';
import { vaultFor, withVault } from './scope.js';

export function memberCommand(program: Command, _setCode: (c: number) => void): void {
  const member = program.command('member').description('vault members: people (admin | member) and agents (proxy)');

  withVault(member.command('add'))
    .description('add a person to a vault, or change their role there')
    .argument('<email>', "the person's email (see `latchkey user add`)")
    .addOption(new Option('--role <role>', 'admin manages members, agents, grants and services; member reads and writes secrets').choices(['admin', 'member']).default('member'))
    .option('--json', 'machine-readable output')
    .action(async (email: string, opts: { vault?: string; role: 'admin' | 'member'; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const vault = await vaultFor(client, opts.vault);
      const m = await client.addMember(vault, { email, role: opts.role });
      if (opts.json) return printJson({ ...m, vault });
      out(`${m.email ?? email} is ${m.role} of vault ${vault}`);
    });

  withVault(member.command('list'))
    .alias('ls')
    .description('people and agents of a vault')
    .option('--json', 'machine-readable output')
    .action(async (opts: { vault?: string; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const vault = await vaultFor(client, opts.vault);
      const { items } = await client.listMembers(vault);
      if (opts.json) return printJson(items);
      if (!items.length) return info(`no members in vault '${vault}'`);
      printTable(['KIND', 'NAME', 'ROLE', 'ADDED'], items.map((m) => [m.kind === 'user' ? 'person' : 'agent', m.kind === 'user' ? m.email : m.name, m.role, m.added_at]));
    });

  withVault(member.command('remove'))
    .alias('rm')
    .description('remove a person from a vault')
    .argument('<email>', "the person's email")
    .option('--json', 'machine-readable output')
    .action(async (email: string, opts: { vault?: string; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const r = await client.removeMember(await vaultFor(client, opts.vault), email);
      if (opts.json) return printJson(r);
      out(`removed ${r.removed} from vault ${r.vault}`);
    });
}
