/**
 * The web console: the built single-page app (vite build -> dist/console) served at `/`. Its
 * strict Content-Security-Policy and the other security headers are the ones every response gets
 * from the security plugin (security.ts): no inline script or style, no framing, no referrer.
 * Hashed assets are cached for good; index.html never. Any other GET path outside /v1/ and
 * /proxy/ is a console route and answers with index.html (the SPA fallback).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { packageRoot } from '../../package.js';
import { isApiPath, servedPath, type App } from '../http.js';

/** dist/console of this package (null when the console is not built). */
export function findConsoleDir(): string | null {
  const root = packageRoot();
  const out = root ? join(root, 'dist', 'console') : null;
  return out && existsSync(join(out, 'index.html')) ? out : null;
}

const NOT_BUILT = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Latchkey</title></head>
<body><h1>Latchkey</h1><p>The web console is not built. Run <code>npm run build</code> in the package directory and restart the server.
The API at <code>/v1</code> and the CLI work without it.</p></body></html>`;

export function consoleRoutes(opts: { dir?: string | null } = {}) {
  return async (app: App) => {
    const dir = opts.dir === undefined ? findConsoleDir() : opts.dir;

    const sendIndex = (reply: FastifyReply) => {
      reply.header('Cache-Control', 'no-store');
      if (!dir) return reply.code(503).type('text/html; charset=utf-8').send(NOT_BUILT);
      return reply.type('text/html; charset=utf-8').sendFile('index.html', dir, { cacheControl: false });
    };

    if (dir) {
      const { default: fastifyStatic } = await import('@fastify/static');
      // no routes of its own (registering one per built file walks the directory at start-up):
      // the catch-all below sends /assets/* through reply.sendFile, which refuses paths outside `dir`
      await app.register(fastifyStatic, {
        root: dir,
        serve: false,
        index: false,
        serveDotFiles: false,
        cacheControl: false,
        setHeaders: (res, path) => {
          res.setHeader('Cache-Control', /[\\/]assets[\\/]/.test(path) ? 'public, max-age=31536000, immutable' : 'no-cache');
        },
      });
    }

    app.get('/', { schema: { hide: true } }, async (_req, reply) => sendIndex(reply));
    app.get('/*', { schema: { hide: true } }, async (req: FastifyRequest, reply) => {
      // the API and the base-URL proxy keep their own 404s
      if (isApiPath(servedPath(req))) return reply.callNotFound();
      // a missing asset is a 404, not the app (a stale index.html would otherwise load HTML as script)
      if (req.url.startsWith('/assets/')) {
        if (!dir) return reply.callNotFound();
        const path = (req.params as { '*': string })['*'];
        return reply.sendFile(path, dir);
      }
      return sendIndex(reply);
    });
  };
}
