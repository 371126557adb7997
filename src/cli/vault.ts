/** `latchkey vault create|list|delete|set`. */
import type { Command } from 'commander';
import { CliError, clientFor, EXIT, interactive, listArg, out, printJson, printTable, prompt, usage } from './output.js';

export function vaultCommand(program: Command, _setCode: (c: number) => void): void {
  const vault = program.command('vault').description('vaults: the unit of isolation');

  vault
    .command('create')
    .description('create a vault')
    .argument('<name>', 'vault name (lower case letters, digits, - and _)')
    .option('--fallback <vaults>', 'ordered fallback chain, comma separated (e.g. builder,platform)', listArg)
    .option('--description <text>', 'what the vault is for')
    .option('--json', 'machine-readable output')
    .action(async (name: string, opts: { fallback?: string[]; description?: string; json?: boolean }, cmd: Command) => {
      const v = await clientFor(cmd).createVault({
        name,
        ...(opts.description !== undefined ? { description: opts.description } : {}),
        ...(opts.fallback ? { fallback: opts.fallback } : {}),
      });
      if (opts.json) return printJson(v);
      out(`created vault ${v.name}${v.fallback?.length ? ` (fallback: ${v.fallback.join(' → ')})` : ''}`);
    });

  vault
    .command('list')
    .alias('ls')
    .description('list vaults')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { items } = await clientFor(cmd).listVaults();
      if (opts.json) return printJson(items);
      printTable(['NAME', 'SECRETS', 'FALLBACK', 'DESCRIPTION'], items.map((v) => [v.name, v.secrets ?? '', (v.fallback ?? []).join(','), v.description ?? '']));
    });

  vault
    .command('delete')
    .alias('rm')
    .description('delete a vault and every secret in it (permanent; on a terminal, asks first when it holds secrets)')
    .argument('<name>', 'vault name')
    .option('-y, --yes', 'do not ask on a terminal')
    .option('--json', 'machine-readable output')
    .action(async (name: string, opts: { yes?: boolean; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      // on a terminal, what the person confirmed (that many secrets, or none) is what may be deleted:
      // the server refuses (409 vault_changed) if secrets were added or removed since the question
      let expect: number | undefined;
      if (!opts.yes && interactive()) {
        expect = (await client.listVaults()).items.find((v) => v.name === name)?.secrets ?? 0;
        if (expect > 0) {
          const answer = await prompt(`vault '${name}' holds ${expect} secret${expect === 1 ? '' : 's'}, deleted with it for good; type its name to go on: `, { what: 'the vault name' });
          if (answer.trim() !== name) throw new CliError(`vault '${name}' was not deleted (the answer was not its name)`, EXIT.error);
        }
      }
      const r = await client.deleteVault(name, expect);
      if (opts.json) return printJson(r);
      out(`deleted vault ${name} (${r.secrets} secret${r.secrets === 1 ? '' : 's'})`);
    });

  vault
    .command('set')
    .description("change a vault's fallback chain, description or forward-proxy passthrough")
    .argument('<name>', 'vault name')
    .option('--fallback <vaults>', "ordered fallback chain, comma separated ('' clears it)", listArg)
    .option('--description <text>', 'what the vault is for')
    .option('--passthrough <on|off>', 'forward proxy: tunnel hosts no service matches without interception (on) or refuse them with 403 (off, the default)')
    .option('--json', 'machine-readable output')
    .action(async (name: string, opts: { fallback?: string[]; description?: string; passthrough?: string; json?: boolean }, cmd: Command) => {
      const body: { fallback?: string[]; description?: string; passthrough?: boolean } = {};
      if (opts.fallback) body.fallback = opts.fallback;
      if (opts.description !== undefined) body.description = opts.description;
      if (opts.passthrough !== undefined) {
        const p = opts.passthrough.toLowerCase();
        if (!['on', 'off', 'true', 'false'].includes(p)) throw usage('--passthrough must be on or off');
        body.passthrough = p === 'on' || p === 'true';
      }
      if (!Object.keys(body).length) throw usage('give --fallback, --description and/or --passthrough');
      const v = await clientFor(cmd).updateVault(name, body);
      if (opts.json) return printJson(v);
      out(`vault ${v.name}: fallback ${v.fallback?.length ? v.fallback.join(' → ') : '(none)'}, passthrough ${v.passthrough ? 'on' : 'off'}`);
    });
}
