/**
 * The forward proxy's CA and address.
 *
 * - `GET /v1/ca.pem` needs no auth: a CA certificate is public information (it is what every
 *   client must trust before it can use the proxy), and it opens nothing by itself. The CA is
 *   created on first use (see proxy/ca.ts).
 * - `GET /v1/proxy` (any authenticated person or agent): whether the forward proxy runs and on
 *   which port, so `latchkey run` can build HTTPS_PROXY from the control-plane address.
 */
import { z } from 'zod';
import type { Core } from '../../core/core.js';
import type { InstanceCa } from '../../proxy/ca.js';
import type { App } from '../http.js';

export interface ProxyInfo {
  enabled: boolean;
  /** the forward proxy's port (null when off) */
  port: number | null;
  /** the address it listens on */
  host: string | null;
}

export function caRoutes(core: Core, ca: InstanceCa, proxyInfo: () => ProxyInfo) {
  return async (app: App) => {
    app.get('/v1/ca.pem', {
      config: { public: true },
      schema: { summary: "The forward proxy's CA certificate (PEM; no auth: it is public)", tags: ['proxy'], querystring: z.strictObject({}) },
    }, async (_req, reply) => {
      const pem = await ca.certPem();
      reply.header('Content-Type', 'application/x-pem-file');
      reply.header('Content-Disposition', 'inline; filename="latchkey-ca.pem"');
      return reply.send(pem);
    });

    app.get('/v1/proxy', {
      schema: { summary: 'The forward proxy: enabled, port, and where its CA is', tags: ['proxy'], querystring: z.strictObject({}) },
    }, async (req) => {
      await core.authorize(req.ctx, 'self.read');
      const p = proxyInfo();
      return { ...p, ca_url: '/v1/ca.pem', proxy_url_format: 'http://<token>:<vault>@<host>:<port>' };
    });
  };
}
