/** Starts the control plane (and, when enabled, the forward proxy) on the configured data. */
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { openCore } from '../core/bootstrap.js';
import type { Core } from '../core/core.js';
import { buildApp } from './app.js';
import { systemContext } from '../core/principal.js';

export interface ServerOptions {
  home: string;
  databaseUrl?: string;
  host: string;
  port: number;
  proxyPort: number;
  auditFile?: string;
  logLevel?: string;
  logStream?: NodeJS.WritableStream;
  tlsCert?: string;
  tlsKey?: string;
  env?: NodeJS.ProcessEnv;
  /** keep audit events this many days (default: forever); pruned at start and hourly */
  auditRetentionDays?: number;
}

export interface RunningServer {
  url: string;
  proxyUrl: string | null;
  initialized: { ownerToken: string; keyFile: string | null } | null;
  core: Core;
  app: FastifyInstance;
  close(): Promise<void>;
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const { core, initialized } = await openCore({ home: opts.home, databaseUrl: opts.databaseUrl, allowInit: true, auditFile: opts.auditFile, env: opts.env });
  try {
    const https = opts.tlsCert && opts.tlsKey ? { cert: readFileSync(opts.tlsCert), key: readFileSync(opts.tlsKey) } : null;
    const app = await buildApp(core, { logLevel: opts.logLevel, logStream: opts.logStream, https });
    await app.listen({ host: opts.host, port: opts.port });
    const addr = app.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : opts.port;
    const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
    const url = `${https ? 'https' : 'http'}://${host}:${port}`;
    let closed = false;
    let pruneTimer: NodeJS.Timeout | null = null;
    if (opts.auditRetentionDays && opts.auditRetentionDays > 0) {
      const days = opts.auditRetentionDays;
      const prune = () => core.audit.prune(core.store, systemContext(), new Date(Date.now() - days * 86_400_000).toISOString())
        .catch((err) => app.log.error({ code: (err as { code?: string }).code }, 'audit retention prune failed'));
      void prune();
      pruneTimer = setInterval(prune, 3_600_000);
      pruneTimer.unref();
    }
    return {
      url, proxyUrl: null, initialized, core, app,
      async close() {
        if (closed) return;
        closed = true;
        if (pruneTimer) clearInterval(pruneTimer);
        await app.close();
        await core.close();
      },
    };
  } catch (err) {
    await core.close();
    throw err;
  }
}
