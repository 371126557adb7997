/**
 * `latchkey service add|list|show|remove`: how a credential is attached to outbound requests
 * (host matcher, auth rule, allowed methods and paths, quota, enabled flag). Values never appear:
 * a rule names credentials, the proxy injects them.
 */
import type { Command } from 'commander';
import { ApiError, type AuthRule, type Service, type ServiceSpec } from '../client/index.js';
import { SECRET_NAME_RE } from '../core/names.js';
import { CliError, clientFor, collect, EXIT, info, intArg, out, plain, printJson, printTable, usage } from './output.js';
import { vaultFor, withVault } from './scope.js';

interface AddOpts {
  vault?: string;
  host: string;
  bearer?: string;
  basic?: string;
  header?: string;
  prefix?: string;
  query?: string;
  template?: string[];
  method?: string[];
  pathPrefix?: string[];
  quota?: number;
  disabled?: boolean;
  description?: string;
  replace?: boolean;
  json?: boolean;
}

/** `LEFT:RIGHT` split at the first ':' (a header or parameter name has none; the key may be namespaced). */
function splitFirst(v: string, flag: string, what: string): [string, string] {
  const i = v.indexOf(':');
  if (i <= 0 || i === v.length - 1) throw usage(`${flag}: expected ${what}`);
  return [v.slice(0, i), v.slice(i + 1)];
}

/**
 * `USER_KEY[:PASS_KEY]`. Names are UPPER_SNAKE or `skill:<platform>:<key>`, so the split that
 * leaves two valid names is the only one; a single valid name is the user key alone.
 */
export function parseBasic(v: string): { username_key: string; password_key?: string } {
  if (SECRET_NAME_RE.test(v)) return { username_key: v };
  for (let i = v.indexOf(':'); i > 0; i = v.indexOf(':', i + 1)) {
    const a = v.slice(0, i);
    const b = v.slice(i + 1);
    if (SECRET_NAME_RE.test(a) && SECRET_NAME_RE.test(b)) return { username_key: a, password_key: b };
  }
  const i = v.indexOf(':');
  // not two valid names: let the server name the failing field
  return i > 0 ? { username_key: v.slice(0, i), password_key: v.slice(i + 1) } : { username_key: v };
}

/** `Header-Name: value with {{ KEY }}` (repeatable) → headers. */
function parseTemplates(list: string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const t of list) {
    const i = t.indexOf(':');
    if (i <= 0) throw usage(`--template: expected 'Header-Name: value with {{ KEY }}'`);
    const name = t.slice(0, i).trim();
    if (!name) throw usage(`--template: expected 'Header-Name: value with {{ KEY }}'`);
    if (name in headers) throw usage(`--template: header ${name} is given more than once`);
    headers[name] = t.slice(i + 1).replace(/^\s+/, '');
  }
  return headers;
}

export function authFromOpts(o: AddOpts): AuthRule {
  const given = (['bearer', 'basic', 'header', 'query'] as const).filter((k) => o[k] !== undefined);
  const kinds = [...given, ...(o.template?.length ? ['template'] : [])];
  if (kinds.length !== 1) throw usage('give exactly one auth rule: --bearer KEY, --basic USER_KEY[:PASS_KEY], --header NAME:KEY, --query PARAM:KEY or --template \'Header: … {{ KEY }}\'');
  if (o.prefix !== undefined && o.header === undefined) throw usage('--prefix goes with --header');
  if (o.bearer !== undefined) return { type: 'bearer', key: o.bearer };
  if (o.basic !== undefined) return { type: 'basic', ...parseBasic(o.basic) };
  if (o.header !== undefined) {
    const [name, key] = splitFirst(o.header, '--header', 'NAME:KEY (like X-Api-Key:STRIPE_KEY)');
    return { type: 'header', name, key, ...(o.prefix !== undefined ? { prefix: o.prefix } : {}) };
  }
  if (o.query !== undefined) {
    const [param, key] = splitFirst(o.query, '--query', 'PARAM:KEY (like api_key:MAPS_KEY)');
    return { type: 'query', param, key };
  }
  return { type: 'template', headers: parseTemplates(o.template!) };
}

export function describeAuth(a: AuthRule): string {
  switch (a.type) {
    case 'bearer': return `bearer ${a.key}`;
    case 'basic': return `basic ${a.username_key}${a.password_key ? `:${a.password_key}` : ''}`;
    case 'header': return `header ${a.name}: ${a.prefix ? `${a.prefix}` : ''}${a.key}`;
    case 'query': return `query ${a.param}=${a.key}`;
    case 'template': return `template ${Object.keys(a.headers).join(', ')}`;
  }
}

function serviceRow(s: Service): (string | number | null)[] {
  return [s.name, s.host, describeAuth(s.auth), s.enabled ? 'yes' : 'no', s.methods.length ? s.methods.join(',') : 'any', s.path_prefixes.length ? s.path_prefixes.join(',') : 'any', s.quota_per_minute ?? ''];
}

const methodList = (v: string, prev: string[] | undefined) => [...(prev ?? []), ...v.split(',').map((m) => m.trim().toUpperCase()).filter(Boolean)];

export function serviceCommand(program: Command, _setCode: (c: number) => void): void {
  const service = program.command('service').description('services: how a credential is attached to outbound requests');

  withVault(service.command('add'))
    .description('create a service (--replace: create or replace); every credential it names must exist')
    .argument('<name>', 'service name (lower case letters, digits, _ . -)')
    .requiredOption('--host <matcher>', 'host matcher: api.stripe.com, *.github.com, host:port, optionally with /path-prefix')
    .option('--bearer <key>', 'Authorization: Bearer <value of KEY>')
    .option('--basic <user_key[:pass_key]>', 'HTTP basic auth from one or two credentials')
    .option('--header <name:key>', 'a header set to the value of KEY (like X-Api-Key:STRIPE_KEY)')
    .option('--prefix <text>', "with --header: text before the value (like 'Token ')")
    .option('--query <param:key>', 'a query parameter set to the value of KEY')
    .option('--template <header>', "a header from a template, like 'Authorization: Bot {{ DISCORD_TOKEN }}' (repeatable)", collect)
    .option('--method <method>', 'an allowed method (repeatable or comma separated; default: any)', methodList)
    .option('--path-prefix <path>', 'an allowed path prefix (repeatable; default: any)', collect)
    .option('--quota <n>', 'at most this many requests per minute', intArg(1, 100_000))
    .option('--disabled', 'create it disabled (nothing is injected until enabled)')
    .option('--description <text>', 'what the service is')
    .option('--replace', 'replace a service of that name if it exists (PUT)')
    .option('--json', 'machine-readable output')
    .action(async (name: string, opts: AddOpts, cmd: Command) => {
      const spec: ServiceSpec = {
        name, host: opts.host, auth: authFromOpts(opts),
        ...(opts.method?.length ? { methods: opts.method } : {}),
        ...(opts.pathPrefix?.length ? { path_prefixes: opts.pathPrefix } : {}),
        ...(opts.quota !== undefined ? { quota_per_minute: opts.quota } : {}),
        ...(opts.disabled ? { enabled: false } : {}),
        ...(opts.description !== undefined ? { description: opts.description } : {}),
      };
      const client = clientFor(cmd);
      const vault = await vaultFor(client, opts.vault);
      let s: Service;
      try {
        s = opts.replace ? await client.putService(vault, spec) : await client.createService(vault, spec);
      } catch (err) {
        // the API's advice (PUT) in the CLI's words
        if (err instanceof ApiError && err.code === 'service_exists') throw new CliError(`service ${name} already exists in vault ${vault}; add --replace to replace it`, EXIT.error);
        throw err;
      }
      if (opts.json) return printJson(s);
      out(`service ${s.name} in vault ${vault}: ${s.host} (${describeAuth(s.auth)})${s.enabled ? '' : ', disabled'}`);
    });

  withVault(service.command('list'))
    .alias('ls')
    .description('list services')
    .option('--json', 'machine-readable output')
    .action(async (opts: { vault?: string; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const vault = await vaultFor(client, opts.vault);
      const { items } = await client.listServices(vault);
      if (opts.json) return printJson(items);
      if (!items.length) return info(`no services in vault '${vault}'`);
      printTable(['NAME', 'HOST', 'AUTH', 'ENABLED', 'METHODS', 'PATHS', 'QUOTA/MIN'], items.map(serviceRow));
    });

  withVault(service.command('show'))
    .description('one service')
    .argument('<name>', 'service name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, opts: { vault?: string; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const s = await client.getService(await vaultFor(client, opts.vault), name);
      if (opts.json) return printJson(s);
      printTable(['NAME', 'HOST', 'AUTH', 'ENABLED', 'METHODS', 'PATHS', 'QUOTA/MIN'], [serviceRow(s)]);
      if (s.description) out(`\n${plain(s.description)}`);
    });

  withVault(service.command('remove'))
    .aliases(['rm', 'delete'])
    .description('delete a service (its grants are revoked)')
    .argument('<name>', 'service name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, opts: { vault?: string; json?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const r = await client.deleteService(await vaultFor(client, opts.vault), name);
      if (opts.json) return printJson(r);
      out(`removed service ${r.deleted} from vault ${r.vault}${r.revoked_grants ? ` (${r.revoked_grants} grant${r.revoked_grants === 1 ? '' : 's'} revoked)` : ''}`);
    });
}
