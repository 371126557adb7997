/**
 * `latchkey grant add|request|list|approve|deny|revoke`: an agent asks for `use` or `read` of a
 * secret or a service; a person approves (optionally until an expiry), denies, revokes, or grants
 * directly.
 */
import { Option, type Command } from 'commander';
import type { Grant, GrantStatus } from '../client/index.js';
import { CliError, clientFor, EXIT, info, out, printJson, printTable, usage } from './output.js';
import { isAgentToken, tokenKind, vaultFor, withVault } from './scope.js';

const STATUSES: GrantStatus[] = ['pending', 'approved', 'denied', 'revoked', 'expired'];

export const grantTarget = (g: Grant) => (g.kind === 'service' ? `service:${g.service ?? ''}` : `secret:${g.secret ?? ''}`);

function describe(g: Grant): string {
  const exp = g.status === 'approved' && g.expires_at ? ` until ${g.expires_at}` : '';
  return `grant ${g.id}: ${g.mode} of ${grantTarget(g)} for agent ${g.agent ?? '?'} in vault ${g.vault ?? '?'} is ${g.status}${exp}`;
}

/** Exactly one of --secret / --service. */
function target(opts: { secret?: string; service?: string }): { secret: string } | { service: string } {
  if ((opts.secret === undefined) === (opts.service === undefined)) throw usage('give exactly one of --secret KEY or --service NAME');
  return opts.secret !== undefined ? { secret: opts.secret } : { service: opts.service! };
}

const modeOption = () => new Option('--mode <mode>', 'use (injection through the proxy) or read (the raw value; secrets only); default: read for a secret, use for a service').choices(['use', 'read']);

export function grantCommand(program: Command, _setCode: (c: number) => void): void {
  const grant = program.command('grant').description('grants: access requests, approvals, direct grants, revocation');

  withVault(grant.command('add'))
    .description('grant an agent access directly (a person; approved at once)')
    .requiredOption('--agent <name>', 'the agent')
    .option('--secret <key>', 'a secret')
    .option('--service <name>', 'a service')
    .addOption(modeOption())
    .option('--expires <when>', 'expiry: a duration (45s, 30m, 1h, 7d) or an ISO time')
    .option('--reason <text>', 'why (recorded with the grant)')
    .option('--json', 'machine-readable output')
    .action(async (opts: { vault?: string; agent: string; secret?: string; service?: string; mode?: 'use' | 'read'; expires?: string; reason?: string; json?: boolean }, cmd: Command) => {
      const t = target(opts);
      // the API takes an agent's POST as a request: say so instead of a confusing validation error
      if (isAgentToken()) throw new CliError('agents cannot grant access; ask a person with `latchkey grant request`', EXIT.denied);
      const client = clientFor(cmd);
      const g = await client.createGrant(await vaultFor(client, opts.vault), {
        agent: opts.agent, ...t,
        ...(opts.mode ? { mode: opts.mode } : {}),
        ...(opts.expires ? { expires: opts.expires } : {}),
        ...(opts.reason ? { reason: opts.reason } : {}),
      });
      if (opts.json) return printJson(g);
      out(describe(g));
    });

  withVault(grant.command('request'))
    .description('ask for access (an agent token); a person approves or denies it')
    .option('--secret <key>', 'a secret')
    .option('--service <name>', 'a service')
    .addOption(modeOption())
    .requiredOption('--reason <text>', 'why the agent needs it (shown to the person who decides)')
    .option('--json', 'machine-readable output')
    .action(async (opts: { vault?: string; secret?: string; service?: string; mode?: 'use' | 'read'; reason: string; json?: boolean }, cmd: Command) => {
      const t = target(opts);
      // the API takes a person's POST as a direct grant
      if (tokenKind() === 'user') throw usage('grant request is for agent tokens; a person grants directly with `latchkey grant add --agent NAME …`');
      const client = clientFor(cmd);
      const vault = await vaultFor(client, opts.vault);
      const g = await client.requestGrant(vault, { ...t, ...(opts.mode ? { mode: opts.mode } : {}), reason: opts.reason });
      if (opts.json) return printJson(g);
      out(describe(g) + (g.duplicate ? ' (the same request was already pending)' : ''));
      if (g.status === 'pending') info(`a person approves it with: latchkey grant approve ${g.id} --vault ${vault}`);
    });

  withVault(grant.command('list'))
    .alias('ls')
    .description('list grants (an agent sees its own)')
    .addOption(new Option('--status <status>', 'only this state').choices(STATUSES))
    .option('--agent <name>', "only this agent's (people)")
    .option('--json', 'machine-readable output')
    .action(async (opts: { vault?: string; status?: GrantStatus; agent?: string; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const vault = await vaultFor(client, opts.vault);
      const { items } = await client.listGrants(vault, { ...(opts.status ? { status: opts.status } : {}), ...(opts.agent ? { agent: opts.agent } : {}) });
      if (opts.json) return printJson(items);
      if (!items.length) return info(`no grants in vault '${vault}'${opts.status || opts.agent ? ' matching the filters' : ''}`);
      printTable(['ID', 'AGENT', 'TARGET', 'MODE', 'STATUS', 'EXPIRES', 'REASON'],
        items.map((g) => [g.id, g.agent, grantTarget(g), g.mode, g.status, g.expires_at, g.decision_reason ? `${g.reason ?? ''} (decision: ${g.decision_reason})` : g.reason]));
    });

  withVault(grant.command('approve'))
    .description('approve a pending request (a person), optionally until an expiry')
    .argument('<id>', 'grant id')
    .option('--expires <when>', 'expiry: a duration (45s, 30m, 1h, 7d) or an ISO time')
    .option('--json', 'machine-readable output')
    .action(async (id: string, opts: { vault?: string; expires?: string; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const g = await client.approveGrant(await vaultFor(client, opts.vault), id, opts.expires ? { expires: opts.expires } : {});
      if (opts.json) return printJson(g);
      out(describe(g));
    });

  withVault(grant.command('deny'))
    .description('deny a pending request (a person)')
    .argument('<id>', 'grant id')
    .option('--reason <text>', 'why (the agent sees it)')
    .option('--json', 'machine-readable output')
    .action(async (id: string, opts: { vault?: string; reason?: string; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const g = await client.denyGrant(await vaultFor(client, opts.vault), id, opts.reason !== undefined ? { reason: opts.reason } : {});
      if (opts.json) return printJson(g);
      out(describe(g));
    });

  withVault(grant.command('revoke'))
    .description('revoke a grant (a person); takes effect on the very next request')
    .argument('<id>', 'grant id')
    .option('--json', 'machine-readable output')
    .action(async (id: string, opts: { vault?: string; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const g = await client.revokeGrant(await vaultFor(client, opts.vault), id);
      if (opts.json) return printJson(g);
      out(describe(g));
    });
}
