/** `latchkey audit` (query, newest first), `audit verify [--checkpoint FILE]`, `audit checkpoint [-o FILE]`. */
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { AuditQuery, Checkpoint } from '../client/index.js';
import { readCliConfig, writeCliConfig } from './config.js';
import { CliError, clientFor, collectPages, EXIT, info, intArg, out, parseTime, printError, printJson, printTable, usage } from './output.js';

interface QueryOpts {
  action?: string;
  actor?: string;
  agent?: string;
  secret?: string;
  vault?: string;
  allVaults?: boolean;
  outcome?: string;
  since?: string;
  until?: string;
  search?: string;
  limit: number;
  json?: boolean;
}

const OUTCOMES = ['ok', 'denied', 'error'];

function readCheckpoint(file: string): Checkpoint {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read the checkpoint file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, EXIT.error);
  }
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw usage(`${file} is not a checkpoint (not JSON); make one with \`latchkey audit checkpoint -o FILE\``);
  }
  const c = j as Partial<Checkpoint>;
  if (!c || typeof c.seq !== 'number' || typeof c.hash !== 'string' || typeof c.ts !== 'string' || typeof c.mac !== 'string') {
    throw usage(`${file} is not a checkpoint (needs seq, hash, ts, mac); make one with \`latchkey audit checkpoint -o FILE\``);
  }
  return { seq: c.seq, hash: c.hash, ts: c.ts, mac: c.mac };
}

/** `--actor bot` / `--actor me@example.com` mean agent:bot / user:me@example.com; a prefixed actor or `system` stays as given. */
function actorFilter(a: string | undefined): string | undefined {
  if (!a || a.includes(':') || a === 'system') return a;
  return `${a.includes('@') ? 'user' : 'agent'}:${a}`;
}

export function auditCommand(program: Command, setCode: (c: number) => void): void {
  const audit = program.command('audit').description('the tamper-evident audit log: query, verify, checkpoint');

  audit
    .command('list', { isDefault: true })
    .description('query events, newest first; `latchkey audit [options]` is this command (every action unless --action says which)')
    .option('--action <action>', 'an action (secret.read) or a prefix ending in a dot (secret.)')
    .option('--actor <actor>', 'user:<email>, agent:<name> or system')
    .option('--agent <name>', 'events by or about this agent (its actions, creation, token, revocation, grants)')
    .option('--secret <name>', 'events about this secret')
    .option('--vault <name>', 'events in this vault (default: $LATCHKEY_VAULT when set)')
    .option('--all-vaults', 'every vault, even when LATCHKEY_VAULT is set')
    .option('--outcome <outcome>', 'ok | denied | error')
    .option('--since <time>', 'ISO time or a duration back from now (30m, 1h, 7d)', (v) => parseTime(v))
    .option('--until <time>', 'ISO time or a duration back from now (30m, 1h, 7d)', (v) => parseTime(v))
    .option('--search <text>', 'free text')
    .option('--limit <n>', 'at most this many events', intArg(1), 50)
    .option('--json', 'machine-readable output')
    .action(async (opts: QueryOpts, cmd: Command) => {
      if (opts.outcome && !OUTCOMES.includes(opts.outcome)) throw usage(`--outcome must be one of ${OUTCOMES.join(', ')}`);
      if (opts.actor && opts.agent) throw usage('give either --actor or --agent, not both');
      if (opts.vault && opts.allVaults) throw usage('give either --vault or --all-vaults, not both');
      const client = clientFor(cmd);
      // like every command's --vault, it defaults to LATCHKEY_VAULT (here only when that is set)
      const vault = opts.allVaults ? undefined : opts.vault || process.env.LATCHKEY_VAULT || undefined;
      if (vault && !opts.vault) info(`(vault ${vault}, from LATCHKEY_VAULT; --all-vaults for every vault)`);
      const q: AuditQuery = {
        action: opts.action, actor: actorFilter(opts.actor), agent: opts.agent, secret: opts.secret, vault,
        outcome: opts.outcome, since: opts.since, until: opts.until, q: opts.search,
      };
      const items = await collectPages((cursor, limit) => client.audit({ ...q, limit, cursor }), opts.limit);
      if (opts.json) return printJson(items);
      if (!items.length) {
        info('no matching audit events');
        return;
      }
      printTable(['SEQ', 'TIME', 'ACTOR', 'ACTION', 'VAULT', 'TARGET', 'OUTCOME'],
        items.map((e) => [e.seq, e.ts, e.actor, e.action, e.vault ?? '', e.target ?? '', e.outcome]));
      if (items.length === opts.limit) info(`(the newest ${items.length}; more with --limit ${Math.min(items.length * 10, 100_000)})`);
    });

  audit
    .command('verify')
    .description('verify the hash chain, and that nothing after the last exported checkpoint was cut off')
    .option('--checkpoint <file>', 'a checkpoint exported by `latchkey audit checkpoint -o FILE` (default: the last one exported)')
    .option('--json', 'machine-readable output')
    .action(async (opts: { checkpoint?: string; json?: boolean }, cmd: Command) => {
      // SPEC §4: truncation of the tail is found against the last checkpoint exported from this server
      const client = clientFor(cmd);
      let file = opts.checkpoint;
      let note: string | null = null;
      const saved = readCliConfig().checkpoints?.[client.addr];
      if (!file && saved) {
        if (existsSync(saved)) {
          file = saved;
          note = `against the last checkpoint exported from ${client.addr}: ${saved}`;
        } else note = `the last checkpoint exported from ${client.addr} (${saved}) is gone: truncation of the tail was not checked`;
      }
      const cp = file ? readCheckpoint(file) : null;
      const r = await client.verifyAudit(cp);
      if (opts.json) printJson(note ? { ...r, note } : r);
      else {
        if (note) out(note);
        if (r.first_bad) out(`audit chain BROKEN at seq ${r.first_bad.seq}: ${r.first_bad.reason}`);
        else out(`audit chain OK: ${r.checked} event${r.checked === 1 ? '' : 's'} checked, head seq ${r.head.seq}${r.anchor?.seq ? ` (anchored at seq ${r.anchor.seq} after pruning)` : ''}`);
        if (r.checkpoint) out(`checkpoint at seq ${r.checkpoint.seq}: ${r.checkpoint.ok ? 'OK' : 'FAILED'}${r.checkpoint.reason ? ` (${r.checkpoint.reason})` : ''}`);
      }
      if (!r.ok) {
        if (r.first_bad) printError(`audit chain BROKEN at seq ${r.first_bad.seq}: ${r.first_bad.reason}`);
        else if (r.checkpoint && !r.checkpoint.ok) printError(`audit checkpoint at seq ${r.checkpoint.seq} FAILED: ${r.checkpoint.reason ?? 'does not match'}`);
        else printError('audit verification failed');
        setCode(EXIT.error);
      }
    });

  audit
    .command('checkpoint')
    .description('export a signed checkpoint of the chain head (keep it somewhere else; verify --checkpoint uses it)')
    .option('-o, --output <file>', 'write it to this file (mode 0600) instead of stdout')
    .action(async (opts: { output?: string }, cmd: Command) => {
      const cp = await clientFor(cmd).auditCheckpoint();
      const text = JSON.stringify(cp, null, 2) + '\n';
      if (!opts.output) {
        process.stdout.write(text);
        return;
      }
      writeFileSync(opts.output, text, { mode: 0o600 });
      chmodSync(opts.output, 0o600);
      out(`checkpoint at seq ${cp.seq} written to ${opts.output}`);
      // remembered per server: `audit verify` against this server checks against it from now on
      try {
        const addr = clientFor(cmd).addr;
        writeCliConfig({ checkpoints: { ...(readCliConfig().checkpoints ?? {}), [addr]: resolve(opts.output) } });
      } catch (err) {
        info(`latchkey: the checkpoint was written, but could not be remembered for audit verify (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); pass --checkpoint ${opts.output}`);
      }
    });
}
