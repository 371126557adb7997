/**
 * `latchkey key status | rotate | rewrap` (through the API) and `key rekey` (offline: re-seals the
 * keyring under a new master key; servers must be stopped and restarted with the new key).
 */
import type { Command } from 'commander';
import { CliError, clientFor, EXIT, info, out, printJson, printTable, Progress, readStdin, usage } from './output.js';

const REWRAP_BATCH = 500;

/** `n thing(s)`, or '' for none. */
function plural(n: number, one: string, many = `${one}s`): string {
  return n ? `${n} ${n === 1 ? one : many}` : '';
}

export function keyCommand(program: Command, _setCode: (c: number) => void): void {
  const key = program.command('key').description('keys: status, KEK rotation, rewrap, offline rekey of the master key');

  key
    .command('status', { isDefault: true })
    .description('master key source, key-encryption key versions, what still needs a rewrap')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const s = await clientFor(cmd).keys();
      if (opts.json) return printJson(s);
      out(`master key:   ${s.master_key_source}${s.kdf ? ` (passphrase, ${s.kdf})` : ''}`);
      out(`current KEK:  version ${s.kek_version}`);
      const pending = typeof s.needs_rewrap === 'number' ? s.needs_rewrap : (s.needs_rewrap ? -1 : 0);
      const k = s.needs_rewrap_by_kind;
      const kinds = k ? [plural(k.secret_versions, 'secret version'), k.proxy_ca_key ? 'the proxy CA key' : '', plural(k.proposals, "pending proposal's values", "pending proposals' values")].filter(Boolean).join(', ') : '';
      out(`needs rewrap: ${pending === 0 ? 'no' : pending > 0 ? `${plural(pending, 'sealed item')}${kinds ? ` (${kinds})` : ''}; run \`latchkey key rewrap\`` : 'yes (run `latchkey key rewrap`)'}`);
      out('');
      printTable(['KEK', 'CREATED', 'SEALED_VERSIONS'], [...(s.keks ?? [])].sort((a, b) => b.version - a.version).map((k) => [
        `${k.version}${k.version === s.kek_version ? ' (current)' : ''}`, k.created_at, k.sealed_versions,
      ]));
    });

  key
    .command('rotate')
    .description('add a key-encryption key version used for new writes')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const r = await clientFor(cmd).rotateKey();
      if (opts.json) return printJson(r);
      out(`KEK version ${r.kek_version} is now used for new writes; run \`latchkey key rewrap\` to move older data keys onto it`);
    });

  key
    .command('rewrap')
    .description('re-wrap data keys sealed under older KEKs onto the newest one (values untouched), with progress')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const before = await client.keys();
      const pending = typeof before.needs_rewrap === 'number' ? before.needs_rewrap : 0;
      const progress = new Progress('rewrapped');
      let rewrapped = 0;
      let last = { rewrapped: 0, remaining: pending, kek_version: before.kek_version, done: pending === 0 };
      try {
        for (;;) {
          last = await client.rewrap({ limit: REWRAP_BATCH });
          rewrapped += last.rewrapped;
          if (rewrapped + last.remaining > 0) progress.update(rewrapped, rewrapped + last.remaining);
          if (last.done || last.remaining === 0) break;
          if (last.rewrapped === 0) throw new CliError(`rewrap made no progress with ${last.remaining} sealed item(s) remaining; check the server log`, EXIT.error);
        }
      } finally {
        progress.end();
      }
      const result = { rewrapped, remaining: last.remaining, kek_version: last.kek_version, done: last.done || last.remaining === 0 };
      if (opts.json) return printJson(result);
      if (rewrapped === 0 && result.remaining === 0) out(`nothing to rewrap: everything is sealed under KEK version ${result.kek_version}`);
      else out(`rewrapped ${plural(rewrapped, 'sealed item')} onto KEK version ${result.kek_version}; ${result.remaining} remaining`);
    });

  key
    .command('rekey')
    .description('offline: re-seal the keyring under a new master key (secrets untouched); stop servers first, restart them with the new key')
    .option('--new-key-stdin', 'read the new master key (32 bytes hex/base64) or passphrase from stdin; default: generate one')
    .option('--database-url <url>', 'PostgreSQL URL (default: $LATCHKEY_DATABASE_URL; unset = SQLite in the data dir)')
    .option('--json', 'machine-readable output')
    .action(async (opts: { newKeyStdin?: boolean; databaseUrl?: string; json?: boolean }) => {
      let newKey: string | undefined;
      if (opts.newKeyStdin) {
        // only the trailing newline is dropped: a passphrase is used exactly as LATCHKEY_MASTER_KEY would give it
        newKey = await readStdin('the new master key');
        if (!newKey.trim()) throw usage('the new key read from stdin is empty');
      }
      const { rekey, defaultHome } = await import('../core/bootstrap.js');
      const home = defaultHome();
      const r = await rekey({ home, databaseUrl: opts.databaseUrl ?? (process.env.LATCHKEY_DATABASE_URL || undefined), ...(newKey !== undefined ? { newKey } : {}) });
      if (opts.json) return printJson({ home, keys: r.keys, new_key_file: r.newKeyFile, new_key: r.newKey, restart_required: true });
      out(`re-sealed ${r.keys} key${r.keys === 1 ? '' : 's'} under the new master key (secrets untouched)`);
      if (r.newKey) {
        out('');
        out('New master key:');
        out('');
        out(`  ${r.newKey}`);
        out('');
        out('Set LATCHKEY_MASTER_KEY to it before restarting; the old key no longer opens this data.');
        if (r.newKeyFile) out(`It was saved to ${r.newKeyFile} (mode 0600) before the data was sealed under it: delete that file once the key is stored safely.`);
      } else if (r.newKeyFile) {
        out(`the new master key was written to ${r.newKeyFile} (mode 0600); back it up, the old key no longer opens this data`);
      } else if (newKey !== undefined && !r.newKeyFile) {
        out('Set LATCHKEY_MASTER_KEY to the new key before restarting; the old key no longer opens this data.');
        if (r.replacedKeyFile) out(`The old key file was moved to ${r.replacedKeyFile} (it opens nothing now; delete it).`);
      }
      info('Restart every running Latchkey server now (with the new key): they hold the keyring sealed under the old one.');
    });
}
