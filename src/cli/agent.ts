/**
 * `latchkey agent create|list|revoke|rotate-token|session|join|leave`. Tokens are printed once,
 * on stdout (alone on their line, or in --json), never anywhere else.
 */
import { InvalidArgumentError, type Command } from 'commander';
import type { Agent } from '../client/index.js';
import { clientFor, collect, defaultVault, info, out, printJson, printTable } from './output.js';
import { vaultFor, withVault } from './scope.js';

const TTL_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** `90s`, `30m`, `1h`, `7d` or plain seconds → seconds. */
export function ttlArg(v: string): number {
  const m = /^(\d{1,7})([smhd]?)$/i.exec(v.trim());
  if (!m) throw new InvalidArgumentError('must be a duration like 30m, 1h, 7d (or seconds)');
  return Number(m[1]) * TTL_UNITS[(m[2] || 's').toLowerCase()]!;
}

function agentRow(a: Agent): (string | null)[] {
  return [a.name, a.status, (a.vaults ?? []).join(','), a.created_at, a.description];
}

export function agentCommand(program: Command, _setCode: (c: number) => void): void {
  const agent = program.command('agent').description('agents: create (token shown once), list, revoke, rotate-token, session');

  agent
    .command('create')
    .description('create an agent and add it (role proxy) to vaults; prints its token once')
    .argument('<name>', 'agent name (lower case letters, digits, . _ -)')
    .option('--vault <name>', 'a vault to add it to (repeatable; default: $LATCHKEY_VAULT or default)', collect)
    .option('--description <text>', 'what the agent is')
    .option('--json', 'machine-readable output (includes the token)')
    .action(async (name: string, opts: { vault?: string[]; description?: string; json?: boolean }, cmd: Command) => {
      const vaults = opts.vault?.length ? opts.vault : [defaultVault()];
      const a = await clientFor(cmd).createAgent({ name, vaults, ...(opts.description !== undefined ? { description: opts.description } : {}) });
      if (opts.json) return printJson(a);
      info(`created agent ${a.name} in vault${(a.vaults ?? []).length === 1 ? '' : 's'} ${(a.vaults ?? []).join(', ') || '(none)'}`);
      info('agent token (shown once; give it to the agent as LATCHKEY_TOKEN):');
      out(a.token);
    });

  agent
    .command('list')
    .alias('ls')
    .description('list agents (people see the agents of the vaults they administer)')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { items } = await clientFor(cmd).listAgents();
      if (opts.json) return printJson(items);
      if (!items.length) return info('no agents');
      printTable(['NAME', 'STATUS', 'VAULTS', 'CREATED', 'DESCRIPTION'], items.map(agentRow));
    });

  agent
    .command('revoke')
    .description('revoke an agent: its token and sessions stop working on the next request')
    .argument('<name>', 'agent name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
      const r = await clientFor(cmd).revokeAgent(name);
      if (opts.json) return printJson(r);
      out(`revoked agent ${r.revoked} (${r.tokens} token${r.tokens === 1 ? '' : 's'})`);
    });

  agent
    .command('rotate-token')
    .description("replace an agent's token (the old one stops working); prints the new one once")
    .argument('<name>', 'agent name')
    .option('--json', 'machine-readable output (includes the token)')
    .action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
      const r = await clientFor(cmd).rotateAgentToken(name);
      if (opts.json) return printJson(r);
      info(`new token for agent ${r.name} (shown once; the old one no longer works):`);
      out(r.token);
    });

  withVault(agent.command('session'))
    .description('mint a short-lived session token (lk_sess_) scoped to one vault: an agent for itself, a person for --agent')
    .option('--agent <name>', 'the agent (when a person mints it)')
    .option('--ttl <duration>', 'lifetime: 5m to 7d (default 1h)', ttlArg)
    .option('--json', 'machine-readable output (includes the token)')
    .action(async (opts: { vault?: string; agent?: string; ttl?: number; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const vault = await vaultFor(client, opts.vault);
      const s = await client.createSession({ vault, ...(opts.ttl !== undefined ? { ttl: opts.ttl } : {}), ...(opts.agent ? { agent: opts.agent } : {}) });
      if (opts.json) return printJson(s);
      info(`session for agent ${s.agent} in vault ${s.vault}, until ${s.expires_at}:`);
      out(s.token);
    });

  withVault(agent.command('join'))
    .description('add an existing agent to a vault (role proxy)')
    .argument('<name>', 'agent name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, opts: { vault?: string; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const r = await client.addVaultAgent(await vaultFor(client, opts.vault), name);
      if (opts.json) return printJson(r);
      out(`agent ${name} is in vault ${r.vault ?? ''} (role proxy)`);
    });

  withVault(agent.command('leave'))
    .description('remove an agent from a vault')
    .argument('<name>', 'agent name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, opts: { vault?: string; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const r = await client.removeVaultAgent(await vaultFor(client, opts.vault), name);
      if (opts.json) return printJson(r);
      out(`removed agent ${r.removed} from vault ${r.vault}`);
    });
}
