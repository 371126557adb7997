/**
 * Base-URL mode on the control plane: `/proxy/<vault>/<service>/<path>` is forwarded to the
 * service's host over HTTPS with the credential injected. An unmodified SDK works by setting its
 * base URL to `http://127.0.0.1:7470/proxy/<vault>/<service>` (plus the API's own prefix, like
 * `/v1`) and using the agent token as its API key.
 *
 * The control plane's HTTP server hands `/proxy/` requests to `baseUrlHandler` before Fastify
 * sees them (Fastify's serverFactory, see server/app.ts): the raw request stream goes to the
 * pipeline untouched (no parsing, no body limit, no buffering) and no framework hook, router or
 * reply object is built for a request that only passes through. The Fastify route below serves
 * the same handler where the server cannot be bypassed (behind a trusted reverse proxy, where
 * the client address comes from Fastify's trustProxy, and app.inject()).
 * WebSocket upgrades under `/proxy/` are taken from the HTTP server's `upgrade` event.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { agentTokenFrom, decodeSegments } from './headers.js';
import { ProxyError, type ProxyPipeline, type ProxyTarget } from './pipeline.js';

export const BASE_PREFIX = '/proxy/';

/** `/proxy/<vault>/<service>[/rest][?query]` -> its parts; null if the vault or service is missing. */
export function parseBaseUrl(url: string): { vault: string; service: string; path: string } | null {
  if (!url.startsWith(BASE_PREFIX)) return null;
  const rest = url.slice(BASE_PREFIX.length);
  const m = /^([^/?#]+)\/([^/?#]+)([/?][^#]*)?$/.exec(rest);
  if (!m) return null;
  const decoded = decodeSegments(m[1]!, m[2]!);
  if (!decoded) return null;
  const [vault, service] = decoded as [string, string];
  let path = m[3] ?? '/';
  if (path.startsWith('?')) path = '/' + path;
  return { vault, service, path };
}

function target(req: IncomingMessage, ip: string, responseHeaders?: Readonly<Record<string, string>>): ProxyTarget | null {
  const parts = parseBaseUrl(req.url ?? '');
  if (!parts) return null;
  const h = req.headers['x-latchkey-host'];
  return {
    mode: 'base', token: agentTokenFrom(req.headers), vault: parts.vault, service: parts.service, scheme: 'https',
    host: typeof h === 'string' ? h.trim() : '', port: 443, path: parts.path, clientIp: ip, responseHeaders,
  };
}

const BAD_PATH = new ProxyError(404, 'proxy_path', 'a base-URL proxy path is /proxy/<vault>/<service>/<path>', 'set your SDK\'s base URL to http://<latchkey>/proxy/<vault>/<service> (plus the API\'s own prefix, like /v1)');

/** The security headers as the response-header object every base-URL answer starts from. */
function headerObject(headers: ReadonlyArray<readonly [string, string]>): Readonly<Record<string, string>> {
  return Object.freeze(Object.fromEntries(headers.map(([k, v]) => [k.toLowerCase(), v])));
}

/**
 * Serves one base-URL request on the raw request and response. `headers`: the control plane's
 * security headers, set on every response it gives, proxied ones included.
 */
export function baseUrlHandler(pipeline: ProxyPipeline, headers: ReadonlyArray<readonly [string, string]>) {
  const responseHeaders = headerObject(headers);
  return (req: IncomingMessage, res: ServerResponse, ip = req.socket.remoteAddress ?? ''): Promise<void> => {
    const t = target(req, ip, responseHeaders);
    if (!t) {
      req.resume();
      pipeline.respondError(res, BAD_PATH, 'base', responseHeaders);
      return Promise.resolve();
    }
    return pipeline.handle(t, req, res);
  };
}

export function baseUrlProxy(pipeline: ProxyPipeline, headers: ReadonlyArray<readonly [string, string]>) {
  const handle = baseUrlHandler(pipeline, headers);
  const responseHeaders = headerObject(headers);
  return async function baseUrlProxyPlugin(app: FastifyInstance): Promise<void> {
    const onRequest = async (req: FastifyRequest, reply: FastifyReply) => {
      reply.hijack();
      await handle(req.raw, reply.raw, req.ip);
    };
    app.all('/proxy/*', { onRequest, schema: { hide: true } }, async () => undefined);

    app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      // Node takes its own error listener off a socket it hands to 'upgrade': without one, a client
      // that resets the connection while it is answered would crash the process
      socket.on('error', () => socket.destroy());
      if (!(req.url ?? '').startsWith(BASE_PREFIX)) {
        // nobody else serves upgrades on the control plane
        if (app.server.listenerCount('upgrade') === 1) socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        return;
      }
      // a 101 carries the control plane's security headers too
      const t = target(req, req.socket.remoteAddress ?? '', responseHeaders);
      if (!t) {
        pipeline.writeSocketError(socket, BAD_PATH, 'base');
        return;
      }
      void pipeline.handleUpgrade(t, req, socket, head);
    });
  };
}
