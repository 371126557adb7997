/**
 * The control-plane app: one plugin per resource, one auth hook, one error shape. Resource
 * plugins call core; core asks the one policy function and writes audit in the same transaction.
 */
import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { z } from 'zod';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import FindMyWay from 'find-my-way';
import type { Core } from '../core/core.js';
import { LatchkeyError } from '../core/errors.js';
import { refusedOwner } from '../core/auth.js';
import { openapiTransform, problem, sendProblem, servedPath, toProblem, zodValidatorCompiler } from './http.js';
import { auditRoutes } from './routes/audit.js';
import { keyRoutes } from './routes/keys.js';
import { secretRoutes } from './routes/secrets.js';
import { systemRoutes } from './routes/system.js';
import { vaultRoutes } from './routes/vaults.js';
import { accessRoutes, SESSION_COOKIE } from './routes/access.js';
import { serviceRoutes } from './routes/services.js';
import { proposalRoutes } from './routes/proposals.js';
import { consoleRoutes } from './routes/console.js';
import { BASE_PREFIX, baseUrlHandler, baseUrlProxy } from '../proxy/base-url.js';
import type { ProxyPipeline } from '../proxy/pipeline.js';
import { answerClientError } from '../proxy/forward.js';
import { bearerToken as bearer } from '../proxy/headers.js';
import { securityHeaders, securityPlugin, type SecurityOptions } from './security.js';
import { hotRead } from './hot-read.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** secret reads answered by the hot path (hot-read.ts) so far */
    hotReads: () => number;
  }
}

export interface AppOptions {
  /** the injection proxy's pipeline: serves the base-URL mode under /proxy/ (absent = no /proxy/ routes) */
  proxy?: ProxyPipeline;
  logLevel?: string;
  /** a pino destination stream (tests capture the log) */
  logStream?: NodeJS.WritableStream;
  trustProxy?: boolean | string;
  https?: { cert: Buffer; key: Buffer } | null;
  /** the console's address for people (approval URLs); null = relative URLs */
  publicUrl?: () => string | null;
  /** rate limits and their Redis (headers and CORS need no options) */
  security?: Omit<SecurityOptions, 'tls'>;
  /** false: secret reads take the Fastify route too (tests compare the two paths) */
  hotRead?: boolean;
}

/** Longest path segment the router matches (longer ones are 414 `uri_too_long`). */
const MAX_PARAM_LENGTH = 512;

/** Headers that carry credentials: never logged. */
export const REDACT_PATHS = [
  'req.headers.authorization', 'req.headers["x-api-key"]', 'req.headers["x-latchkey-token"]', 'req.headers.cookie',
  'req.headers["proxy-authorization"]', 'res.headers["set-cookie"]',
];

/** What the log says of an unexpected error: its type, code and where it came from (never its message, which may quote input). */
function failure(err: unknown) {
  return { err: { type: (err as Error)?.name, code: (err as { code?: string })?.code }, stack: (err as Error)?.stack?.split('\n').slice(1, 6).join(' | ') };
}

export async function buildApp(core: Core, opts: AppOptions = {}): Promise<FastifyInstance> {
  const logger: FastifyServerOptions['logger'] = opts.logLevel === 'silent' ? false : {
    level: opts.logLevel ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      // the path only: query strings can carry tokens (approval links)
      req: (req: { method: string; url: string; ip?: string; id?: string }) => ({ method: req.method, path: req.url.split('?')[0], ip: req.ip, id: req.id }),
      res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
      err: (err: Error & { code?: string }) => ({ type: err.name, code: err.code }),
    },
    ...(opts.logStream ? { stream: opts.logStream } : {}),
  } as unknown as FastifyServerOptions['logger'];

  const headers = await securityHeaders(!!opts.https);
  // base-URL proxy requests go from the HTTP server straight to the pipeline (see proxy/base-url.ts);
  // behind a trusted reverse proxy they take the Fastify route, which knows the client's address
  const bypass = opts.proxy && !opts.trustProxy ? baseUrlHandler(opts.proxy, headers.api) : null;
  // secret reads by bearer token take the hot path (hot-read.ts) unless behind a trusted reverse
  // proxy (the client's address is then Fastify's to work out); what it does not take goes on to Fastify
  let app: FastifyInstance;
  // set when the server starts closing: from then on every request goes to Fastify, which answers
  // 503 with Connection: close (the hot path and the base-URL bypass would keep serving)
  let closing = false;
  const hot = opts.trustProxy || opts.hotRead === false ? null : hotRead({
    core, headers: headers.api, perimeter: () => app.latchkeyPerimeter ?? null, closing: () => closing,
    log: opts.logLevel === 'silent' ? null : {
      incoming: (reqId, method, url, ip) => app.log.info({ reqId, req: { method, url, ip, id: reqId } }, 'incoming request'),
      // as the error handler below logs a refusal
      refused: (reqId, code, status) => app.log.debug({ reqId, code, status }, 'request refused'),
      completed: (reqId, statusCode, responseTime) => app.log.info({ reqId, res: { statusCode }, responseTime }, 'request completed'),
    },
    // as the error handler below logs a 500
    onError: (err, reqId) => app.log.error({ reqId, ...failure(err) }, 'request failed'),
  });
  const serverFactory = (handler: (req: IncomingMessage, res: ServerResponse) => void, o: { keepAliveTimeout?: number; requestTimeout?: number; connectionTimeout?: number }) => {
    const route = (req: IncomingMessage, res: ServerResponse) => {
      if (closing) handler(req, res);
      else if (bypass && req.url?.startsWith(BASE_PREFIX)) void bypass(req, res);
      else if (hot && req.method === 'GET' && req.url?.startsWith('/v1/vaults/') && req.url.includes('/value')) {
        // the hot path answers whatever it has counted or recorded anything for; it can fail only
        // before that (then Fastify takes the request as if the hot path had not looked at it)
        hot.handle(req, res).then((took) => {
          if (!took) handler(req, res);
        }, (err: unknown) => {
          app.log.error(failure(err), 'secret read hot path failed');
          if (!res.headersSent) handler(req, res);
        }).catch(() => res.destroy());
      } else handler(req, res);
    };
    // as Fastify builds its own server (lib/server.js)
    const server = opts.https ? createHttpsServer(opts.https, route) : createHttpServer(route);
    if (o.keepAliveTimeout !== undefined) server.keepAliveTimeout = o.keepAliveTimeout;
    if (o.requestTimeout !== undefined) server.requestTimeout = o.requestTimeout;
    server.setTimeout(o.connectionTimeout ?? 0);
    return server;
  };

  app = Fastify({
    logger,
    serverFactory,
    bodyLimit: 1024 * 1024,
    trustProxy: opts.trustProxy ?? false,
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    // secret names run to 128 characters (more once percent-encoded); router errors as problem+json
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // unparseable requests (the base-URL proxy's too) get a problem answer marked X-Latchkey-Error
    clientErrorHandler: answerClientError,
    frameworkErrors: (err: Error, req: { id: string }, reply: Parameters<typeof sendProblem>[0]) => sendProblem(reply, toProblem(err, req.id)),
    // validation is zod and responses are plain JSON: these are the only compilers (given up front,
    // Fastify never loads ajv and fast-json-stringify: ~80 ms of start-up)
    schemaController: {
      compilersFactory: {
        buildValidator: (() => zodValidatorCompiler) as never,
        buildSerializer: (() => () => (data: unknown) => JSON.stringify(data)) as never,
      },
    },
  } as FastifyServerOptions) as unknown as FastifyInstance;

  // every API route's methods (and whether each is public), so a known path asked with another
  // method is a 405 with Allow; the OpenAPI document says which routes need no token (health,
  // login, the CA, approval links); and every /v1 route that takes no query parameters refuses
  // unknown ones (a misspelt filter must not silently list everything: `/v1/agents?status=revoked`)
  const apiMethods = new Map<string, ReturnType<typeof FindMyWay>>();
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/v1/')) {
      for (const m of [route.method].flat()) {
        let r = apiMethods.get(m);
        if (!r) apiMethods.set(m, (r = FindMyWay({ maxParamLength: MAX_PARAM_LENGTH })));
        r.on('GET', route.url, () => undefined, { public: !!route.config?.public });
      }
    }
    if (route.config?.public) route.schema = { ...(route.schema ?? {}), security: [] } as typeof route.schema;
    else if (route.url.startsWith('/v1/') && !route.schema?.querystring) route.schema = { ...(route.schema ?? {}), querystring: z.strictObject({}) } as typeof route.schema;
  });

  // JSON bodies: an empty body is "no body" (POST /rotate with Content-Type set); prototype keys are refused.
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = String(body);
    if (text.trim() === '') return done(null, undefined);
    try {
      const parsed = JSON.parse(text);
      if (/"(__proto__|constructor|prototype)"\s*:/.test(text)) return done(new LatchkeyError(400, 'malformed_json', 'the request body uses a reserved key', 'body'), undefined);
      done(null, parsed);
    } catch {
      done(new LatchkeyError(400, 'malformed_json', 'the request body is not valid JSON', 'body'), undefined);
    }
  });
  // JSON only: a text/plain body is refused with 415 rather than handed to validation as a string
  app.removeContentTypeParser('text/plain');

  const { default: swagger } = await import('@fastify/swagger');
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Latchkey control-plane API', version: core.info.version, description: 'Credential vault for AI agents. Errors are application/problem+json with a stable `code`.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: openapiTransform as never,
  });

  const { default: cookie } = await import('@fastify/cookie');
  await app.register(cookie);
  // headers, CORS, cross-origin and rate-limit checks: registered before the auth hook so they run first
  await app.register(securityPlugin({ ...opts.security, tls: !!opts.https, headers }));
  app.decorateRequest('ctx', null as never);
  app.decorate('hotReads', () => hot?.served() ?? 0);
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });

  app.addHook('onRequest', async (req, reply) => {
    reply.header('X-Request-Id', req.id);
    req.ctx = { principal: { kind: 'anonymous' }, ip: req.ip ?? null, requestId: req.id };
    if (!servedPath(req).startsWith('/v1/')) return;
    // API answers are never cached (errors included: set before anything can fail)
    reply.header('Cache-Control', 'no-store');
    if (req.routeOptions.config?.public) return;
    // a public path (health, login, the CA) asked with a method it lacks: its 405 needs no token
    if (req.is404) {
      const methods = methodsOf(servedPath(req));
      if (methods.length && methods.every((m) => m.public)) return;
    }
    // a bearer token (CLI, agents) or the console's SameSite=Strict session cookie
    const token = bearer(req.headers.authorization);
    const cookieValue = req.cookies?.[SESSION_COOKIE];
    try {
      req.ctx.principal = !token && cookieValue ? await core.auth.authenticateCookie(cookieValue) : await core.auth.authenticate(token);
    } catch (err) {
      // every refusal is audited: no credential, or one that is forged, expired, revoked or of the wrong kind
      if (err instanceof LatchkeyError) {
        const credential = token ? (token.match(/^lk_[a-z]+_/)?.[0] ?? 'unknown') : cookieValue ? 'cookie' : req.headers.authorization ? 'unknown' : 'none';
        // a known token that no longer works is recorded under its owner (revoked agent, removed person)
        const owner = refusedOwner(err);
        await core.record(owner ? { ...req.ctx, principal: owner } : req.ctx, { action: 'auth.failure', outcome: 'denied', details: { reason: err.code, credential, method: req.method, path: req.url.split('?')[0] } });
      }
      throw err;
    }
  });

  app.setErrorHandler((err, req, reply) => {
    const p = toProblem(err, req.id);
    if (p.status >= 500) req.log.error(failure(err), 'request failed');
    else req.log.debug({ code: p.code, status: p.status }, 'request refused');
    return sendProblem(reply, p);
  });

  /** The methods an API path has, each with whether it is public (no token); none for an unknown path. */
  const methodsOf = (url: string): Array<{ method: string; public: boolean }> => {
    const path = url.split('?')[0]!;
    if (!path.startsWith('/v1/')) return [];
    const out: Array<{ method: string; public: boolean }> = [];
    for (const [method, r] of apiMethods) {
      const found = r.find('GET', path);
      if (found) out.push({ method, public: !!(found.store as { public?: boolean } | null)?.public });
    }
    return out;
  };

  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0]!;
    const allow = methodsOf(path).map((m) => m.method);
    if (allow.length) {
      reply.header('Allow', allow.sort().join(', '));
      return sendProblem(reply, problem(405, 'method_not_allowed', `${req.method} is not allowed on ${path}; allowed: ${allow.join(', ')}`, req.id));
    }
    return sendProblem(reply, problem(404, 'route_not_found', `no route ${req.method} ${path}`, req.id));
  });

  app.get('/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.register(systemRoutes(core));
  await app.register(vaultRoutes(core));
  await app.register(secretRoutes(core));
  await app.register(auditRoutes(core));
  await app.register(keyRoutes(core));
  await app.register(accessRoutes(core, { secureCookies: !!opts.https }));
  await app.register(serviceRoutes(core));
  await app.register(proposalRoutes(core, opts.publicUrl));
  // the web console at / (SPA fallback for paths outside /v1/ and /proxy/)
  await app.register(consoleRoutes());
  if (opts.proxy) {
    opts.proxy.setLogger(app.log);
    await app.register(baseUrlProxy(opts.proxy, headers.api));
  }
  return app;
}

export { LatchkeyError };
