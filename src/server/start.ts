/** Starts the control plane (and, when enabled, the forward proxy) on the configured data. */
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import { openCore } from '../core/bootstrap.js';
import type { Core } from '../core/core.js';
import { buildApp } from './app.js';
import { systemContext } from '../core/principal.js';
import { StartupError } from '../core/errors.js';
import { rateLimitsFromEnv, type RateLimits } from './security.js';
import { InstanceCa } from '../proxy/ca.js';
import { ForwardProxy } from '../proxy/forward.js';
import { parseEgressAllow } from '../proxy/egress.js';
import { ProxyPipeline, readPemBundle } from '../proxy/pipeline.js';
import { caRoutes, type ProxyInfo } from './routes/ca.js';

function readTlsFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new StartupError(`cannot read the TLS ${what} file ${path}: ${(err as { code?: string }).code ?? (err as Error).message}`);
  }
}

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
  /** share rate-limit counters through this Redis (default: $LATCHKEY_REDIS_URL; unset = in memory) */
  redisUrl?: string;
  /** Redis key prefix for the counters (default `latchkey:rl:`) */
  redisPrefix?: string;
  /** rate-limit overrides per tier, over $LATCHKEY_RATE_LIMIT_<TIER> and the defaults (src/server/security.ts) */
  rateLimits?: Partial<RateLimits>;
  /** false: secret reads take the Fastify route too, not the hot path (tests compare the two) */
  hotRead?: boolean;
  /** where people reach the console (approval URLs are absolute under it): default $LATCHKEY_PUBLIC_URL, else the listening address */
  publicUrl?: string;
}

function checkPublicUrl(v: string | undefined): string | null {
  if (!v) return null;
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new StartupError(`the public URL ${JSON.stringify(v.slice(0, 100))} is not a URL (LATCHKEY_PUBLIC_URL / --public-url: like https://vault.example.com)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new StartupError('the public URL must be http:// or https://');
  // a base for relative paths: always ending in '/', so a path prefix (https://h/latchkey/) stays
  const base = u.toString();
  return base.endsWith('/') ? base : `${base}/`;
}

export interface RunningServer {
  url: string;
  proxyUrl: string | null;
  initialized: { ownerToken: string; keyFile: string | null } | null;
  core: Core;
  /** the forward proxy's instance CA (shared by replicas through the database) */
  ca: InstanceCa;
  /** the forward proxy listener, null when proxyPort is 0 */
  proxy: ForwardProxy | null;
  app: FastifyInstance;
  close(): Promise<void>;
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  // configuration errors stop start-up before the data dir is touched (or initialised)
  const env = opts.env ?? process.env;
  const https = opts.tlsCert && opts.tlsKey ? { cert: readTlsFile(opts.tlsCert, 'certificate'), key: readTlsFile(opts.tlsKey, 'private key') } : null;
  if (https) {
    try {
      createSecureContext(https);
    } catch (err) {
      throw new StartupError(`the TLS certificate and key cannot be used together: ${(err as Error).message}`);
    }
  }
  const security = {
    redisUrl: opts.redisUrl ?? (env.LATCHKEY_REDIS_URL || null),
    redisPrefix: opts.redisPrefix,
    rateLimits: { ...rateLimitsFromEnv(env), ...opts.rateLimits },
  };
  let publicUrl = checkPublicUrl(opts.publicUrl ?? env.LATCHKEY_PUBLIC_URL);
  try {
    parseEgressAllow(env.LATCHKEY_EGRESS_ALLOW);
    if (env.LATCHKEY_UPSTREAM_CA) readPemBundle(env.LATCHKEY_UPSTREAM_CA);
  } catch (err) {
    throw new StartupError((err as Error).message);
  }
  const { core, initialized } = await openCore({ home: opts.home, databaseUrl: opts.databaseUrl, allowInit: true, auditFile: opts.auditFile, env: opts.env });
  let pipeline: ProxyPipeline | null = null;
  try {
    // the injection proxy's pipeline (auth, grants, injection, egress guard, redaction, audit): one per
    // process, shared by the base-URL mode (control plane) and the forward proxy
    pipeline = new ProxyPipeline(core, { egressAllow: env.LATCHKEY_EGRESS_ALLOW, upstreamCa: env.LATCHKEY_UPSTREAM_CA });
    const app = await buildApp(core, { logLevel: opts.logLevel, logStream: opts.logStream, https, security, proxy: pipeline, publicUrl: () => publicUrl, hotRead: opts.hotRead });
    pipeline.setLogger(app.log);
    // the forward proxy's CA: created in the database on first use (GET /v1/ca.pem or the first CONNECT)
    const ca = new InstanceCa(core);
    const proxyInfo: ProxyInfo = { enabled: false, port: null, host: null };
    await app.register(caRoutes(core, ca, () => proxyInfo));
    await app.listen({ host: opts.host, port: opts.port });
    let proxy: ForwardProxy | null = null;
    let proxyUrl: string | null = null;
    if (opts.proxyPort !== 0) {
      try {
        proxy = new ForwardProxy({ pipeline, ca, defaultVault: env.LATCHKEY_VAULT || 'default', log: app.log });
        const pa = await proxy.listen(opts.host, opts.proxyPort ?? 7471);
        Object.assign(proxyInfo, { enabled: true, port: pa.port, host: opts.host });
        proxyUrl = `http://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${pa.port}`;
      } catch (err) {
        await proxy?.close().catch(() => {});
        await app.close().catch(() => {});
        throw err;
      }
      // make (or load) the CA now, so the first CONNECT does not wait for it
      ca.ready().catch((err) => app.log.error({ code: (err as { code?: string }).code }, 'forward proxy: the CA could not be loaded'));
    }
    const addr = app.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : opts.port;
    const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
    const url = `${https ? 'https' : 'http'}://${host}:${port}`;
    // the listening address is a usable default unless it is the unspecified one (0.0.0.0, ::): then
    // approval URLs stay relative, and the CLI resolves them against the address it called
    if (!publicUrl && !['0.0.0.0', '::', '[::]', ''].includes(opts.host)) publicUrl = `${url}/`;
    let closed = false;
    let pruneTimer: NodeJS.Timeout | null = null;
    // proposals past their expiry are marked so, and their sealed values dropped: now and every 10 minutes
    const expire = () => core.proposals.expireDue()
      .catch((err) => app.log.error({ code: (err as { code?: string }).code }, 'expiring proposals failed'));
    void expire();
    const expireTimer = setInterval(expire, 600_000);
    expireTimer.unref();
    if (opts.auditRetentionDays && opts.auditRetentionDays > 0) {
      const days = opts.auditRetentionDays;
      const prune = () => core.audit.prune(core.store, systemContext(), new Date(Date.now() - days * 86_400_000).toISOString())
        .catch((err) => app.log.error({ code: (err as { code?: string }).code }, 'audit retention prune failed'));
      void prune();
      pruneTimer = setInterval(prune, 3_600_000);
      pruneTimer.unref();
    }
    return {
      url, proxyUrl, initialized, core, app, ca, proxy,
      async close() {
        if (closed) return;
        closed = true;
        if (pruneTimer) clearInterval(pruneTimer);
        clearInterval(expireTimer);
        // stop taking tunnels, let the control plane (and base-URL requests in flight) finish,
        // then flush the proxy's audit batch, then close the store
        await proxy?.close();
        await app.close();
        await pipeline?.close();
        await core.close();
      },
    };
  } catch (err) {
    await pipeline?.close().catch(() => {});
    await core.close();
    throw err;
  }
}
