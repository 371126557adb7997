/**
 * `latchkey secret …` (aliases `credential`, `creds`): set, get, list, delete, rotate (one or
 * --all), history, rollback, migrate, presets. Values are printed only by `get` and `list --reveal`.
 */
import type { Command } from 'commander';
import { ApiError, type LatchkeyClient, type Preset, type RotateAllResult, type SecretMeta, type VendResult } from '../client/index.js';
import { CliError, clientFor, collect, collectPages, defaultVault, EXIT, info, intArg, out, plain, printError, printJson, printTable, Progress, readStdin, usage } from './output.js';
import { explicitVault, isAgentToken, vaultFor } from './scope.js';

interface VaultOpt { vault?: string }

const vaultOption = (c: Command) => c.option('--vault <name>', 'vault (default: $LATCHKEY_VAULT or default)');

const ROTATE_BATCH = 500;

function describeWrite(m: SecretMeta): string {
  return m.version === 1 ? `${m.name}: created, version 1` : `${m.name}: version ${m.version}`;
}

/** KEY=VALUE pairs; `KEY=-` reads that one value from stdin. */
export async function parsePairs(pairs: string[]): Promise<Array<{ key: string; value: string }>> {
  const parsed = pairs.map((p, n) => {
    const i = p.indexOf('=');
    // the argument is not echoed: it may be a value typed without its KEY=
    if (i < 0) throw usage(`expected KEY=VALUE pairs: argument ${n + 1} has no '='`);
    if (i === 0) throw usage(`expected KEY=VALUE pairs: argument ${n + 1} has no KEY before '='`);
    return { key: p.slice(0, i), value: p.slice(i + 1) };
  });
  const keys = new Set<string>();
  for (const { key } of parsed) {
    if (keys.has(key)) throw usage(`${key} is given more than once`);
    keys.add(key);
  }
  const fromStdin = parsed.filter((p) => p.value === '-');
  if (fromStdin.length > 1) throw usage('only one value may be read from stdin (KEY=-)');
  if (fromStdin.length === 1) {
    const v = await readStdin(`the value of ${fromStdin[0]!.key}`);
    fromStdin[0]!.value = v;
  }
  return parsed;
}

/** Local check of a preset's fields with the server's own table (used when updating existing preset secrets). */
function checkPresetFields(preset: Preset, fields: Record<string, string>): void {
  for (const k of Object.keys(fields)) {
    if (!preset.fields.some((f) => f.key === k)) throw usage(`fields.${k}: is not a field of the ${preset.label} preset (fields: ${preset.fields.map((f) => f.key).join(', ')})`);
  }
  for (const f of preset.fields) {
    const v = fields[f.key];
    if (v === undefined || v === '') continue;
    if (f.pattern && !new RegExp(f.pattern).test(v)) {
      throw usage(`fields.${f.key}: does not look like a ${preset.label} ${f.label}${f.hint ? ` (expected ${f.hint})` : ''}`);
    }
  }
}

async function setPreset(client: LatchkeyClient, vault: string, presetId: string, fields: Record<string, string>, opts: SetOpts): Promise<SecretMeta[]> {
  const extra = {
    ...(opts.category ? { category: opts.category } : {}),
    ...(opts.description !== undefined ? { description: opts.description } : {}),
    ...(opts.tag ? { tags: opts.tag } : {}),
  };
  try {
    const r = await client.createSecret(vault, { preset: presetId, fields, ...extra });
    return r.items;
  } catch (err) {
    if (!(err instanceof ApiError) || err.code !== 'secret_exists') throw err;
  }
  // the preset's secrets exist: validate with the server's preset table, then add a version of each given field
  const { items } = await client.presets();
  const preset = items.find((p) => p.id === presetId);
  if (!preset) throw usage(`preset: unknown preset '${presetId}'`);
  checkPresetFields(preset, fields);
  const written: SecretMeta[] = [];
  for (const f of preset.fields) {
    const v = fields[f.key];
    if (v === undefined || v === '') continue;
    written.push(await client.putSecret(vault, `skill:${preset.id}:${f.key}`, { value: v, category: opts.category ?? preset.category, ...(opts.description !== undefined ? { description: opts.description } : {}), ...(opts.tag ? { tags: opts.tag } : {}) }));
  }
  return written;
}

interface SetOpts extends VaultOpt { category?: string; preset?: string; description?: string; tag?: string[]; cas?: number; json?: boolean }

async function rotateAll(client: LatchkeyClient, vault: string): Promise<{ result: Omit<RotateAllResult, 'next_cursor' | 'done'>; code: number; stopped: boolean }> {
  const progress = new Progress('rotated');
  let after: string | undefined;
  let rotated = 0;
  let failed = 0;
  let total = 0;
  const failedNames: string[] = [];
  const seen = new Set<string>();
  let finished = false;
  // Ctrl-C: the batch in flight completes on the server (each is one transaction); stop after it
  // and say how far it got. A second Ctrl-C quits at once.
  let interrupted = false;
  const onInterrupt = () => {
    if (interrupted) process.exit(EXIT.error);
    interrupted = true;
    info('latchkey: stopping after the batch in flight (Ctrl-C again to quit at once)');
  };
  process.on('SIGINT', onInterrupt);
  try {
    for (;;) {
      const r = await client.rotateAll(vault, { limit: ROTATE_BATCH, ...(after ? { after } : {}) });
      rotated += r.rotated;
      failed += r.failed;
      total = Math.max(total, r.total, rotated + failed);
      for (const n of r.failed_names ?? []) if (failedNames.length < 50) failedNames.push(n);
      progress.update(rotated + failed, total);
      if (r.done || !r.next_cursor || seen.has(r.next_cursor)) {
        finished = true;
        break;
      }
      seen.add(r.next_cursor);
      after = r.next_cursor;
      if (interrupted) break;
    }
  } finally {
    process.off('SIGINT', onInterrupt);
    progress.end();
    if (!finished && (rotated || failed)) info(`latchkey: stopped after rotating ${rotated} of ${total}; already rotated secrets stay rotated, run it again to finish`);
  }
  // interrupted before the end: an error (1), with the line saying how far it got
  return { result: { vault, rotated, failed, failed_names: failedNames, total }, code: failed || !finished ? EXIT.error : EXIT.ok, stopped: !finished };
}

/**
 * Vending for agent tokens. A refusal for want of a grant says the grant's state and how to ask
 * (exit 4); the vault is the one named, else the server's choice (a session's own, or default).
 */
async function vend(client: LatchkeyClient, key: string, vault: string | undefined): Promise<VendResult> {
  try {
    return await client.vendSecret(key, vault);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 403 || err.code !== 'grant_required') throw err;
    const state = typeof err.body?.grant_state === 'string' ? err.body.grant_state : 'none';
    const id = typeof err.body?.grant_id === 'string' ? err.body.grant_id : null;
    const where = vault ?? (/in vault ([a-z0-9_-]+)/.exec(err.detail)?.[1] ?? 'default');
    const hint = state === 'pending'
      ? `request ${id ?? ''} is waiting for a person: latchkey grant approve ${id ?? 'ID'} --vault ${where}`
      : `ask for access: latchkey grant request --secret ${key} --mode read --reason "…" --vault ${where}`;
    throw new CliError(`no approved read grant for ${key} in vault ${where} (grant state: ${state}${id ? `, grant ${id}` : ''}); ${hint}`, EXIT.denied);
  }
}

export function secretCommand(program: Command, setCode: (c: number) => void): void {
  const secret = program.command('secret').aliases(['credential', 'creds']).description('secrets: set, get, list, rotate, history (aliases: credential, creds)');

  vaultOption(secret.command('set'))
    .description('create a secret or add a new version: KEY=VALUE (KEY=- reads the value from stdin); with --preset the pairs are the preset\'s fields')
    .argument('<pairs...>', 'KEY=VALUE pairs')
    .option('--category <category>', 'deploy_credential | skill_credential | cloud_storage | api_key | custom')
    .option('--preset <preset>', 'platform preset (openai, anthropic, github, stripe, aws, …): the pairs are its fields, validated by the server')
    .option('--description <text>', 'what the secret is for')
    .option('--tag <tag>', 'a tag (repeatable)', collect)
    .option('--cas <version>', 'check-and-set: the expected current version (0 = must not exist yet)', intArg(0))
    .option('--json', 'machine-readable output')
    .action(async (pairs: string[], opts: SetOpts, cmd: Command) => {
      const vault = defaultVault(opts.vault);
      const parsed = await parsePairs(pairs);
      const client = clientFor(cmd);
      let written: SecretMeta[] = [];
      if (opts.preset) {
        if (opts.cas !== undefined) throw usage('--cas cannot be used with --preset');
        const fields: Record<string, string> = {};
        for (const p of parsed) fields[p.key] = p.value;
        written = await setPreset(client, vault, opts.preset, fields, opts);
        if (!opts.json) for (const m of written) out(describeWrite(m));
      } else {
        if (opts.cas !== undefined && parsed.length > 1) throw usage('--cas applies to one KEY=VALUE at a time');
        for (const p of parsed) {
          const m = await client.putSecret(vault, p.key, {
            value: p.value,
            ...(opts.cas !== undefined ? { cas: opts.cas } : {}),
            ...(opts.category ? { category: opts.category } : {}),
            ...(opts.description !== undefined ? { description: opts.description } : {}),
            ...(opts.tag ? { tags: opts.tag } : {}),
          });
          written.push(m);
          if (!opts.json) out(describeWrite(m));
        }
      }
      if (opts.json) printJson(written);
    });

  vaultOption(secret.command('get'))
    .description('print the value of a secret (audited as secret.read)')
    .argument('<key>', 'secret name')
    .option('--version <n>', 'an older version', intArg(1))
    .option('--json', 'print the whole object (name, vault, version, value)')
    .action(async (key: string, opts: VaultOpt & { version?: number; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      if (isAgentToken()) {
        // an agent reads through vending: only under an approved `read` grant
        if (opts.version !== undefined) throw usage('--version: an agent reads the current version only');
        const r = await vend(client, key, explicitVault(opts.vault));
        if (opts.json) return printJson(r);
        process.stdout.write(r.value + '\n');
        return;
      }
      const r = await client.readSecret(defaultVault(opts.vault), key, opts.version);
      if (opts.json) return printJson(r);
      process.stdout.write(r.value + '\n');
    });

  vaultOption(secret.command('list'))
    .alias('ls')
    .description('list secrets (metadata only; --reveal also decrypts each value, audited)')
    .option('--reveal', 'also fetch and show each value (every read is audited)')
    .option('--category <category>', 'only this category')
    .option('--prefix <prefix>', 'only names starting with this')
    .option('--search <text>', 'search names, descriptions and tags (any part, any case)')
    .option('--limit <n>', 'at most this many (default: all)', intArg(1))
    .option('--json', 'machine-readable output')
    .action(async (opts: VaultOpt & { reveal?: boolean; category?: string; prefix?: string; search?: string; limit?: number; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const vault = await vaultFor(client, opts.vault);
      const items: Array<SecretMeta & { value?: string }> = await collectPages(
        (cursor, limit) => client.listSecrets(vault, { category: opts.category, prefix: opts.prefix, q: opts.search, limit, cursor }),
        opts.limit ?? Infinity,
      );
      if (opts.reveal) {
        let next = 0;
        const worker = async () => {
          while (next < items.length) {
            const it = items[next++]!;
            it.value = (await client.readSecret(vault, it.name)).value;
          }
        };
        await Promise.all(Array.from({ length: Math.min(8, items.length) }, worker));
      }
      if (opts.json) return printJson(items);
      if (!items.length) {
        info(`no secrets in vault '${vault}'${opts.category || opts.prefix || opts.search ? ' matching the filters' : ''}`);
        return;
      }
      const headers = ['NAME', 'CATEGORY', 'VERSION', 'UPDATED', ...(opts.reveal ? ['VALUE'] : [])];
      printTable(headers, items.map((m) => [m.name, m.category, m.version, m.updated_at, ...(opts.reveal ? [m.value ?? ''] : [])]));
    });

  vaultOption(secret.command('delete'))
    .alias('rm')
    .description('delete secrets permanently, every version')
    .argument('<keys...>', 'secret names')
    .option('--json', 'machine-readable output')
    .action(async (keys: string[], opts: VaultOpt & { json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const vault = defaultVault(opts.vault);
      const done: Array<{ deleted: string; vault: string; versions: number }> = [];
      // every name is tried: one that is not there does not leave the others in place
      const missing: string[] = [];
      for (const k of keys) {
        let r;
        try {
          r = await client.deleteSecret(vault, k);
        } catch (err) {
          if (err instanceof ApiError && err.status === 404 && err.code === 'secret_not_found') {
            missing.push(k);
            continue;
          }
          throw err;
        }
        done.push(r);
        if (!opts.json) out(`deleted ${r.deleted ?? k} (${r.versions} version${r.versions === 1 ? '' : 's'})`);
      }
      if (opts.json) printJson(done);
      if (missing.length) {
        printError(`not found in vault ${vault}: ${missing.join(', ')} (deleted ${done.length} of ${keys.length})`);
        setCode(EXIT.notFound);
      }
    });

  vaultOption(secret.command('rotate'))
    .description('re-encrypt a secret under a fresh data key (the value does not change); --all for every secret in the vault')
    .argument('[key]', 'secret name')
    .option('--all', 'every secret in the vault, in batches, with progress')
    .option('--json', 'machine-readable output')
    .action(async (key: string | undefined, opts: VaultOpt & { all?: boolean; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const vault = defaultVault(opts.vault);
      if (opts.all && key) throw usage('give a KEY or --all, not both');
      if (!opts.all && !key) throw usage('give a KEY to rotate, or --all');
      if (key) {
        const m = await client.rotateSecret(vault, key);
        if (opts.json) return printJson(m);
        out(`${m.name}: rotated (version ${m.version}, re-encrypted ${m.last_rotated_at ?? 'now'})`);
        return;
      }
      const { result, code, stopped } = await rotateAll(client, vault);
      if (opts.json) printJson(result);
      else {
        out(`rotated ${result.rotated} of ${result.total}, failed ${result.failed}`);
        if (result.failed_names.length) out(`failed: ${result.failed_names.join(', ')}${result.failed > result.failed_names.length ? ', …' : ''}`);
      }
      if (stopped) setCode(code); // interrupted: the one line saying how far it got is printed
      else if (code) {
        printError(`${result.failed} of ${result.total} secret${result.total === 1 ? '' : 's'} failed to rotate (they keep their previous encryption)`);
        setCode(code);
      }
    });

  vaultOption(secret.command('history'))
    .description('a secret\'s metadata and versions')
    .argument('<key>', 'secret name')
    .option('--json', 'machine-readable output')
    .action(async (key: string, opts: VaultOpt & { json?: boolean }, cmd: Command) => {
      const d = await clientFor(cmd).getSecret(defaultVault(opts.vault), key);
      if (opts.json) return printJson(d);
      out(`${d.name} in vault ${d.vault}: version ${d.version}, ${d.category}${d.preset ? `, preset ${d.preset}` : ''}`);
      if (d.description) out(`  ${plain(d.description)}`);
      if (d.tags?.length) out(`  tags: ${d.tags.join(', ')}`);
      out(`  created ${d.created_at}, updated ${d.updated_at}, last rotated ${d.last_rotated_at ?? 'never'}`);
      out('');
      const versions = [...(d.versions ?? [])].sort((a, b) => b.version - a.version);
      printTable(['VERSION', 'CURRENT', 'CREATED', 'CREATED_BY', 'KEK', 'ROTATED'],
        versions.map((v) => [v.version, v.current ? '*' : '', v.created_at, v.created_by, v.kek_version, v.rotated_at ?? '']));
    });

  vaultOption(secret.command('rollback'))
    .description('make a new version holding the value of an older one')
    .argument('<key>', 'secret name')
    .requiredOption('--to <version>', 'the version whose value to restore', intArg(1))
    .option('--json', 'machine-readable output')
    .action(async (key: string, opts: VaultOpt & { to: number; json?: boolean }, cmd: Command) => {
      const m = await clientFor(cmd).rollbackSecret(defaultVault(opts.vault), key, opts.to);
      if (opts.json) return printJson(m);
      out(`${m.name}: version ${m.version} (the value of version ${opts.to})`);
    });

  vaultOption(secret.command('migrate'))
    .description('move a secret, every version, to another vault (re-sealed there; grants to it here are revoked)')
    .argument('<key>', 'secret name')
    .requiredOption('--to <vault>', 'the vault to move it to')
    .option('--json', 'machine-readable output')
    .action(async (key: string, opts: VaultOpt & { to: string; json?: boolean }, cmd: Command) => {
      const m = await clientFor(cmd).migrateSecret(defaultVault(opts.vault), key, opts.to);
      if (opts.json) return printJson(m);
      out(`${m.name}: moved from vault ${m.from} to vault ${m.vault} (${m.versions} version${m.versions === 1 ? '' : 's'}${m.revoked_grants ? `; ${m.revoked_grants} grant${m.revoked_grants === 1 ? '' : 's'} revoked` : ''})`);
    });

  secret
    .command('presets')
    .description('platform presets and their fields (for set --preset)')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { items } = await clientFor(cmd).presets();
      if (opts.json) return printJson(items);
      printTable(['PRESET', 'LABEL', 'CATEGORY', 'FIELDS'], items.map((p) => [p.id, p.label, p.category, p.fields.map((f) => f.key + (f.optional ? '?' : '')).join(' ')]));
    });
}
