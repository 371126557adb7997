/**
 * `latchkey run [--vault V] -- CMD [ARGS...]`: runs a command with its HTTP(S) traffic going through
 * the Latchkey forward proxy, so credentials are injected on the way out and never enter the
 * command's environment.
 *
 * 1. Mints a short-lived agent session for the vault (POST /v1/sessions): with an agent token for
 *    that agent itself; with a person's token for the agent named by --agent. A session token is
 *    used as it is (a session cannot mint another).
 * 2. Finds the proxy: --proxy, else $LATCHKEY_PROXY_ADDR, else the control plane's host with the
 *    port the server reports (GET /v1/proxy).
 * 3. Fetches the CA (GET /v1/ca.pem) into a private temp dir, plus a bundle of the system roots and
 *    the CA for tools whose variable replaces the trust store (SSL_CERT_FILE, REQUESTS_CA_BUNDLE,
 *    CURL_CA_BUNDLE, GIT_SSL_CAINFO); NODE_EXTRA_CA_CERTS gets the CA alone (it adds to Node's roots).
 * 4. Runs the child with HTTPS_PROXY/HTTP_PROXY (both cases) = http://<session>:<vault>@host:port,
 *    NO_PROXY=localhost,127.0.0.1, without LATCHKEY_TOKEN (nor the master key or database URL),
 *    and for Node children NODE_USE_ENV_PROXY=1 plus the fetch preload (bin/fetch-proxy-preload.cjs);
 *    forwards SIGINT/SIGTERM/SIGHUP; exits with the child's code (a signal n gives 128+n).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { rootCertificates } from 'node:tls';
import type { Command } from 'commander';
import { LatchkeyClient } from '../client/index.js';
import { packageRoot } from '../package.js';
import { ttlArg } from './agent.js';
import { readCliConfig, resolveToken } from './config.js';
import { CliError, clientFor, EXIT, printError, usage } from './output.js';
import { tokenKind, vaultFor } from './scope.js';

const PROXY_VARS = ['HTTPS_PROXY', 'HTTP_PROXY', 'https_proxy', 'http_proxy'];
/** bundles (system roots + the Latchkey CA): the SPEC's four, and the other tools' own that would else keep pointing at a bundle without our CA */
const BUNDLE_VARS = ['SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO', 'PIP_CERT', 'AWS_CA_BUNDLE', 'HTTPLIB2_CA_CERTS', 'NIX_SSL_CERT_FILE', 'CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE', 'GRPC_DEFAULT_SSL_ROOTS_FILE_PATH'];
/** never handed to the child: the caller's own credentials and the server's secrets */
const STRIPPED_VARS = ['LATCHKEY_TOKEN', 'LATCHKEY_MASTER_KEY', 'LATCHKEY_DATABASE_URL', 'LATCHKEY_REDIS_URL'];
const NO_PROXY_BASE = ['localhost', '127.0.0.1'];
const SYSTEM_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/ca-bundle.pem', '/etc/ssl/cert.pem'];
const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

interface RunFlags {
  vault?: string;
  agent?: string;
  ttl?: number;
  proxy?: string;
}

/** `host:port` or `http://host:port` → { host, port }. */
export function parseProxyAddr(v: string): { host: string; port: number } {
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(v) ? v : `http://${v}`;
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw usage(`the proxy address '${v}' is not host:port or http://host:port`);
  }
  if (u.protocol !== 'http:') throw usage('the forward proxy is spoken to over http:// (the tunnel inside is TLS)');
  if (!u.port) throw usage(`the proxy address '${v}' needs a port`);
  return { host: u.hostname, port: Number(u.port) };
}

async function proxyAddress(client: LatchkeyClient, flag: string | undefined): Promise<{ host: string; port: number }> {
  const explicit = flag || process.env.LATCHKEY_PROXY_ADDR;
  if (explicit) return parseProxyAddr(explicit);
  const p = await client.proxyInfo();
  if (!p.enabled || !p.port) throw new CliError('the server runs no forward proxy (it was started with --proxy-port 0); start it with a proxy port, or give --proxy / LATCHKEY_PROXY_ADDR', EXIT.error);
  return { host: new URL(client.addr).hostname, port: p.port };
}

/** The system's trust store as PEM text (the bundle file tools would use), else Node's bundled roots. */
function systemRoots(): string {
  const own = process.env.SSL_CERT_FILE;
  for (const f of [...(own ? [own] : []), ...SYSTEM_BUNDLES]) {
    try {
      if (existsSync(f)) return readFileSync(f, 'utf8');
    } catch {
      /* next */
    }
  }
  return rootCertificates.join('\n');
}

/**
 * Node before 24 ignores HTTP(S)_PROXY in `fetch`: this preload (shipped in the package, so a
 * child's own descendants that outlive `latchkey run` still find it) points fetch at the proxy on
 * its first call. Null when the file is missing.
 */
function preloadPath(): string | null {
  const root = packageRoot();
  const file = root ? join(root, 'bin', 'fetch-proxy-preload.cjs') : null;
  return file && existsSync(file) ? file : null;
}

/** The child's environment: ours, minus credentials, plus the proxy and CA variables (and the fetch preload for Node). */
export function childEnv(base: NodeJS.ProcessEnv, proxyUrl: string, vault: string, caFile: string, bundleFile: string, preloadFile: string | null = null): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  for (const k of STRIPPED_VARS) delete env[k];
  for (const k of PROXY_VARS) env[k] = proxyUrl;
  // exactly the loopback names (SPEC §6): an inherited NO_PROXY (`*`, or an API's host) would
  // send the child's requests around the proxy
  const noProxy = NO_PROXY_BASE.join(',');
  env.NO_PROXY = noProxy;
  env.no_proxy = noProxy;
  env.NODE_EXTRA_CA_CERTS = caFile;
  for (const k of BUNDLE_VARS) env[k] = bundleFile;
  // Node >= 24 honours HTTP(S)_PROXY in fetch and http when this is set; older ones get the preload
  env.NODE_USE_ENV_PROXY = '1';
  if (preloadFile) env.NODE_OPTIONS = [base.NODE_OPTIONS, `--require ${JSON.stringify(preloadFile)}`].filter(Boolean).join(' ');
  env.LATCHKEY_VAULT = vault;
  // and not the token saved for this user's CLI either: without this, `latchkey` run by the child
  // found no LATCHKEY_TOKEN and fell back to the saved config's (a person's, the owner's after init)
  env.LATCHKEY_CONFIG = join(dirname(caFile), 'no-cli-config.json');
  return env;
}

export function runCommand(program: Command, setCode: (c: number) => void): void {
  program
    .command('run')
    .description('run a command with its HTTP(S) going through the Latchkey forward proxy: credentials are injected on the way out, never put in its environment')
    .option('--vault <name>', 'the vault whose services the command may use (default: $LATCHKEY_VAULT, a session\'s own vault, or default)')
    .option('--agent <name>', "the agent to run as, when you hold a person's token (an agent token runs as itself)")
    .option('--ttl <duration>', 'lifetime of the session handed to the command: 30m, 1h, 7d (default 1h; 5m to 7d)', ttlArg)
    .option('--proxy <addr>', 'the forward proxy, host:port (default: $LATCHKEY_PROXY_ADDR, else the server\'s host and the proxy port it reports)')
    .argument('<command>', 'the command to run (put -- before it when it has options of its own)')
    .argument('[args...]', 'its arguments')
    .passThroughOptions()
    .action(async (command: string, args: string[], flags: RunFlags, cmd: Command) => {
      const client = clientFor(cmd);
      const token = resolveToken(process.env, readCliConfig());
      const kind = tokenKind(token);
      if (kind === 'none') throw new CliError('no token: set LATCHKEY_TOKEN to an agent token (or run `latchkey login` and give --agent)', EXIT.denied);
      if (kind === 'user' && !flags.agent) throw usage("a person's token needs --agent NAME: the command runs as that agent, under its grants");
      const vault = await vaultFor(client, flags.vault);

      let session: string;
      let minted = false;
      if (kind === 'session') {
        if (flags.agent) throw usage('--agent needs an agent or person token; this is already a session');
        session = token!;
      } else {
        const s = await client.createSession({ vault, ...(flags.ttl ? { ttl: flags.ttl } : {}), ...(flags.agent ? { agent: flags.agent } : {}) });
        session = s.token;
        minted = true;
      }
      let dir: string | null = null;
      try {
        const proxy = await proxyAddress(client, flags.proxy);
        const caPem = await client.caCertificate();
        dir = mkdtempSync(join(tmpdir(), 'latchkey-run-'));
        const caFile = join(dir, 'latchkey-ca.pem');
        const bundleFile = join(dir, 'ca-bundle.pem');
        let extra = '';
        const prevExtra = process.env.NODE_EXTRA_CA_CERTS;
        if (prevExtra) {
          try {
            extra = readFileSync(prevExtra, 'utf8');
          } catch {
            extra = '';
          }
        }
        writeFileSync(caFile, (extra ? extra.replace(/\n*$/, '\n') : '') + caPem, { mode: 0o600 });
        writeFileSync(bundleFile, systemRoots().replace(/\n*$/, '\n') + caPem, { mode: 0o600 });
        const preloadFile = preloadPath();
        const host = proxy.host.includes(':') ? `[${proxy.host}]` : proxy.host;
        const proxyUrl = `http://${encodeURIComponent(session)}:${encodeURIComponent(vault)}@${host}:${proxy.port}`;
        const env = childEnv(process.env, proxyUrl, vault, caFile, bundleFile, preloadFile);
        setCode(await spawnChild(command, args, env));
      } finally {
        if (dir) rmSync(dir, { recursive: true, force: true });
        // the session this run minted ends with the command, or with a failed set-up (a leaked copy is worthless)
        if (minted) await new LatchkeyClient({ addr: client.addr, token: session }).logout().catch(() => {});
      }
    });
}

/** Runs the child with inherited stdio; resolves with its exit code (128+n for a signal n, 127 not found, 126 not runnable). */
function spawnChild(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolveCode) => {
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(command, args, { stdio: 'inherit', env });
    } catch (err) {
      printError(`cannot run ${command}: ${(err as Error).message}`);
      return resolveCode(126);
    }
    const handlers = new Map<NodeJS.Signals, () => void>();
    for (const sig of FORWARDED_SIGNALS) {
      const h = () => {
        if (child.exitCode === null && child.signalCode === null) child.kill(sig);
      };
      handlers.set(sig, h);
      process.on(sig, h);
    }
    const done = (code: number) => {
      for (const [sig, h] of handlers) process.off(sig, h);
      resolveCode(code);
    };
    child.once('error', (err: Error & { code?: string }) => {
      if (err.code === 'ENOENT') {
        printError(`cannot run ${command}: command not found`);
        return done(127);
      }
      printError(`cannot run ${command}: ${err.code ?? err.message}`);
      done(126);
    });
    child.once('exit', (code, signal) => {
      if (signal) return done(128 + ((osConstants.signals as Record<string, number>)[signal] ?? 0));
      done(code ?? 1);
    });
  });
}
