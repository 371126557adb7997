/**
 * `latchkey proposal list|show|approve|reject`: review what an agent proposed (services with their
 * diff against the current ones, credential slots, warnings when an existing credential would go
 * to a new host) and approve it, supplying values (KEY=VALUE, KEY=- from stdin), or reject it.
 */
import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import type { ProposalCreate, ProposalStatus, ProposalView } from '../client/index.js';
import { clientFor, info, out, plain, printJson, printTable, readStdin, usage } from './output.js';
import { parsePairs } from './secret.js';
import { describeAuth } from './service.js';
import { vaultFor, withVault } from './scope.js';

const STATUSES: ProposalStatus[] = ['pending', 'approved', 'rejected', 'expired'];
const MARK = { add: '+', update: '~', unchanged: '=' } as const;

const show = (v: unknown): string => (v === undefined ? '-' : JSON.stringify(v));

/** The review: header, services with their diff, slots, warnings, and how to decide. */
export function printProposal(p: ProposalView): void {
  out(`proposal ${p.id} in vault ${p.vault}: ${p.status}`);
  out(`  agent ${p.agent ?? '?'}, created ${p.created_at}, expires ${p.expires_at}`);
  if (p.decided_by) out(`  decided by ${p.decided_by} at ${p.decided_at ?? '?'}${p.decision_reason ? `: ${plain(p.decision_reason)}` : ''}`);
  if (p.message) out(`  message: ${plain(p.message)}`);
  out('');
  out(`services (${p.services.length}):`);
  if (!p.services.length) out('  (none)');
  for (const s of p.services) {
    const limits = [
      s.methods?.length ? `methods ${s.methods.join(',')}` : '',
      s.path_prefixes?.length ? `paths ${s.path_prefixes.join(',')}` : '',
      s.quota_per_minute ? `quota ${s.quota_per_minute}/min` : '',
      s.enabled === false ? 'disabled' : '',
    ].filter(Boolean).join(', ');
    out(`  ${MARK[s.change] ?? '?'} ${s.name}  ${s.host}  ${describeAuth(s.auth)}${limits ? `  (${limits})` : ''}  [${s.change}]`);
    for (const [field, c] of Object.entries(s.changes ?? {})) out(`      ${field}: ${show(c.from)} → ${show(c.to)}`);
  }
  out('');
  out(`credentials (${p.credentials.length}):`);
  if (!p.credentials.length) out('  (none)');
  for (const c of p.credentials) {
    let state = '';
    if (c.action === 'set') state = c.has_value ? 'value supplied by the agent' : c.exists ? 'exists (kept unless you give a value)' : 'NEEDS A VALUE';
    else state = c.exists ? 'will be deleted' : 'does not exist';
    out(`  ${c.action} ${c.key}: ${state}`);
    if (c.description) out(`      ${plain(c.description)}`);
    if (c.obtain) out(`      obtain: ${plain(c.obtain)}`);
    if (c.obtain_instructions) out(`      how: ${plain(c.obtain_instructions)}`);
  }
  if (p.warnings.length) {
    out('');
    out(`WARNINGS (${p.warnings.length}):`);
    for (const w of p.warnings) {
      out(`  ! service ${w.service} would send the existing credential ${w.credential} to ${w.new_host}` +
        ` (now sent only to: ${w.current_hosts.length ? w.current_hosts.join(', ') : 'no host'}): ${plain(w.message)}`);
    }
  }
  if (p.status === 'pending') {
    const missing = p.credentials.filter((c) => c.action === 'set' && c.missing_value).map((c) => `${c.key}=-`);
    out('');
    out(`approve: latchkey proposal approve ${p.id} --vault ${p.vault}${missing.length ? ' ' + missing.join(' ') : ''}`);
    out(`reject:  latchkey proposal reject ${p.id} --vault ${p.vault} --reason "…"`);
  }
}

export function proposalCommand(program: Command, _setCode: (c: number) => void): void {
  const proposal = program.command('proposal').description("proposals: review and approve or reject agents' proposed services and credentials");

  withVault(proposal.command('list'))
    .alias('ls')
    .description('list proposals (an agent sees its own)')
    .addOption(new Option('--status <status>', 'only this state').choices(STATUSES))
    .option('--json', 'machine-readable output')
    .action(async (opts: { vault?: string; status?: ProposalStatus; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const vault = await vaultFor(client, opts.vault);
      const { items } = await client.listProposals(vault, opts.status ? { status: opts.status } : {});
      if (opts.json) return printJson(items);
      if (!items.length) return info(`no proposals in vault '${vault}'${opts.status ? ` that are ${opts.status}` : ''}`);
      printTable(['ID', 'STATUS', 'AGENT', 'SERVICES', 'CREDENTIALS', 'CREATED', 'MESSAGE'],
        items.map((p) => [p.id, p.status, p.agent, p.services.join(','), p.credentials.map((c) => `${c.action === 'delete' ? '-' : ''}${c.key}`).join(','), p.created_at, p.message]));
    });

  withVault(proposal.command('create'))
    .description('propose services and credential slots (an agent token): JSON {message?, services?, credentials?} from --file or stdin')
    .option('--file <path>', "the proposal as JSON ('-' or absent: stdin)")
    .option('--json', 'machine-readable output')
    .action(async (opts: { vault?: string; file?: string; json?: boolean }, cmd: Command) => {
      const text = !opts.file || opts.file === '-' ? await readStdin('the proposal JSON') : readFileSync(opts.file, 'utf8');
      let body: ProposalCreate;
      try {
        body = JSON.parse(text) as ProposalCreate;
      } catch {
        throw usage('the proposal is not valid JSON');
      }
      if (!body || typeof body !== 'object' || Array.isArray(body)) throw usage('the proposal must be a JSON object {message?, services?, credentials?}');
      const client = clientFor(cmd);
      const r = await client.createProposal(await vaultFor(client, opts.vault), body);
      if (opts.json) return printJson({ ...r, approval_url: new URL(r.approval_url, client.addr + '/').toString() });
      out(`proposal ${r.id} in vault ${r.vault} is pending; a person approves it at:`);
      out(new URL(r.approval_url, client.addr + '/').toString());
    });

  withVault(proposal.command('show'))
    .description('one proposal: services with their diff, credential slots, new-host warnings')
    .argument('<id>', 'proposal id')
    .option('--json', 'machine-readable output')
    .action(async (id: string, opts: { vault?: string; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const p = await client.getProposal(await vaultFor(client, opts.vault), id);
      if (opts.json) return printJson(p);
      printProposal(p);
    });

  withVault(proposal.command('approve'))
    .description('approve (a person): KEY=VALUE supplies a value (KEY=- reads it from stdin); applies every change at once and grants the agent use of the proposed services')
    .argument('<id>', 'proposal id')
    .argument('[pairs...]', 'KEY=VALUE values for the credential slots')
    .option('--json', 'machine-readable output')
    .action(async (id: string, pairs: string[], opts: { vault?: string; json?: boolean }, cmd: Command) => {
      const parsed = await parsePairs(pairs ?? []);
      const credentials: Record<string, string> = {};
      for (const p of parsed) credentials[p.key] = p.value;
      const client = clientFor(cmd);
      const r = await client.approveProposal(await vaultFor(client, opts.vault), id, credentials);
      if (opts.json) return printJson(r);
      const a = r.applied;
      out(`approved proposal ${r.id} in vault ${r.vault}`);
      if (a.secrets_set.length) out(`  credentials set: ${a.secrets_set.join(', ')}`);
      if (a.secrets_deleted.length) out(`  credentials deleted: ${a.secrets_deleted.join(', ')}`);
      if (a.services.length) out(`  services: ${a.services.join(', ')}`);
      if (a.grants.length) out(`  agent ${r.agent ?? '?'} may now use: ${r.services.join(', ')} (${a.grants.length} grant${a.grants.length === 1 ? '' : 's'})`);
    });

  withVault(proposal.command('reject'))
    .description('reject (a person)')
    .argument('<id>', 'proposal id')
    .option('--reason <text>', 'why (the agent sees it)')
    .option('--json', 'machine-readable output')
    .action(async (id: string, opts: { vault?: string; reason?: string; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const r = await client.rejectProposal(await vaultFor(client, opts.vault), id, opts.reason !== undefined ? { reason: opts.reason } : {});
      if (opts.json) return printJson(r);
      out(`rejected proposal ${r.id} in vault ${r.vault}${r.decision_reason ? `: ${plain(r.decision_reason)}` : ''}`);
    });
}
