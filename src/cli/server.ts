/**
 * `latchkey server` — runs the control plane (and the forward proxy) until SIGINT/SIGTERM.
 * On a fresh data dir it initialises and prints the owner's token once, saving it for the CLI.
 */
import type { Command } from 'commander';
import { writeCliConfig } from './config.js';
import { CliError, EXIT, info, intArg, out, usage } from './output.js';

interface ServerFlags {
  host?: string;
  port?: number;
  proxyPort?: number;
  databaseUrl?: string;
  auditFile?: string;
  publicUrl?: string;
  auditRetentionDays?: number;
  logLevel?: string;
  tlsCert?: string;
  tlsKey?: string;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function envPort(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  if (!/^\d+$/.test(v) || Number(v) > 65535) throw usage(`${name} must be a port number (0-65535)`);
  return Number(v);
}

/** Where `latchkey server` listens here without flags: $LATCHKEY_HOST and $LATCHKEY_PORT, else 127.0.0.1:7470. */
export function defaultListen(): { host: string; port: number } {
  return { host: process.env.LATCHKEY_HOST || '127.0.0.1', port: envPort('LATCHKEY_PORT', 7470) };
}

/** The address a CLI on this machine reaches a plain-http server listening on host:port at. */
export function localAddr(host: string, port: number): string {
  const h = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `http://${h.includes(':') ? `[${h}]` : h}:${port}`;
}

export function serverCommand(program: Command, _setCode: (c: number) => void): void {
  program
    .command('server')
    .description('run the control plane (API + console) and the forward proxy')
    .option('--host <host>', 'listen address (default: $LATCHKEY_HOST or 127.0.0.1)')
    .option('--port <port>', 'control-plane port (default: $LATCHKEY_PORT or 7470)', intArg(0, 65535))
    .option('--proxy-port <port>', 'forward-proxy port, 0 = off (default: $LATCHKEY_PROXY_PORT or 7471)', intArg(0, 65535))
    .option('--database-url <url>', 'PostgreSQL URL (default: $LATCHKEY_DATABASE_URL; unset = SQLite in the data dir)')
    .option('--audit-file <path>', 'also write audit events as JSON lines to this file (- for stdout)')
    .option('--audit-retention-days <days>', 'delete audit events older than this (default: keep forever)', intArg(1))
    .option('--log-level <level>', `log level: ${LOG_LEVELS.join(', ')} (default: info)`)
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM, chain after the leaf); the session cookie gets Secure and HSTS is sent')
    .option('--public-url <url>', 'where people reach the console, for approval URLs (default: $LATCHKEY_PUBLIC_URL, else the listening address)')
    .option('--tls-key <file>', 'private key for --tls-cert (PEM)')
    .action(async (flags: ServerFlags) => {
      if (flags.logLevel && !LOG_LEVELS.includes(flags.logLevel)) throw usage(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
      if (!!flags.tlsCert !== !!flags.tlsKey) throw usage('--tls-cert and --tls-key go together');
      const { defaultHome } = await import('../core/bootstrap.js');
      const { startServer } = await import('../server/start.js');
      const home = defaultHome();
      const listen = defaultListen();
      const port = flags.port ?? listen.port;
      const proxyPort = flags.proxyPort ?? envPort('LATCHKEY_PROXY_PORT', 7471);
      const host = flags.host || listen.host;
      const opts = {
        home,
        databaseUrl: flags.databaseUrl ?? (process.env.LATCHKEY_DATABASE_URL || undefined),
        redisUrl: process.env.LATCHKEY_REDIS_URL || undefined,
        host,
        port,
        proxyPort,
        auditFile: flags.auditFile,
        logLevel: flags.logLevel,
        ...(flags.publicUrl ? { publicUrl: flags.publicUrl } : {}),
        // audit events on stdout are JSON lines and nothing else: the log and the banner go to stderr
        ...(flags.auditFile === '-' ? { logStream: process.stderr } : {}),
        ...(flags.auditRetentionDays ? { auditRetentionDays: flags.auditRetentionDays } : {}),
        ...(flags.tlsCert ? { tlsCert: flags.tlsCert, tlsKey: flags.tlsKey } : {}),
      };
      let running: Awaited<ReturnType<typeof startServer>>;
      try {
        running = await startServer(opts);
      } catch (err) {
        const e = err as { code?: string; port?: number };
        const flag = e?.port !== undefined && e.port !== port ? '--proxy-port' : '--port';
        if (e?.code === 'EADDRINUSE') throw new CliError(`cannot listen on ${host}:${e.port ?? port}: the address is already in use (choose another with ${flag})`, EXIT.error);
        if (e?.code === 'EACCES') throw new CliError(`cannot listen on ${host}:${e.port ?? port}: permission denied`, EXIT.error);
        throw err;
      }

      const say = flags.auditFile === '-' ? info : out;
      if (running.initialized) {
        let saved = '';
        try {
          saved = writeCliConfig({ token: running.initialized.ownerToken, addr: running.url });
        } catch (err) {
          info(`latchkey: could not save the token for the CLI (${(err as Error).message})`);
        }
        say('');
        say(`Latchkey initialised a new data dir at ${home}`);
        say('Owner API token (shown once, this one time only):');
        say('');
        say(`  ${running.initialized.ownerToken}`);
        say('');
        if (saved) say(`Saved for the CLI in ${saved}.`);
        say(`Open ${running.url}/ and paste it on the first-run page to set the owner's email and password.`);
        if (running.initialized.keyFile) {
          say(`Master key file: ${running.initialized.keyFile}`);
          say('  WARNING: back this file up. Without it the data cannot be decrypted, ever.');
        }
        say('');
      }
      say(`Latchkey listening on ${running.url}`);
      if (running.proxyUrl) say(`Forward proxy listening on ${running.proxyUrl}`);

      await new Promise<void>((resolveDone) => {
        let closing = false;
        const stop = (signal: string) => {
          if (closing) return;
          closing = true;
          info(`latchkey: ${signal} received, shutting down`);
          const fallback = setTimeout(() => process.exit(0), 10_000);
          fallback.unref();
          running.close().then(
            () => resolveDone(),
            (err) => {
              info(`latchkey: error while shutting down: ${(err as Error)?.message ?? err}`);
              resolveDone();
            },
          );
        };
        process.once('SIGINT', () => stop('SIGINT'));
        process.once('SIGTERM', () => stop('SIGTERM'));
      });
    });
}
