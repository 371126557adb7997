/**
 * The hot path of the route agents and scripts call in a loop, GET /v1/vaults/:vault/secrets/:name/value
 * with a bearer token: the common case is answered straight from the HTTP server, without Fastify's
 * request pipeline (hooks, router, validation, reply), which measured about 40 % of a read's CPU.
 *
 * It does what the Fastify route does, in the same order and through the same functions:
 * the perimeter's blocked-IP check, `core.auth.authenticate`, the per-actor rate limit (the same
 * counters), `core.secrets.read` (authorization, decrypt, durable `secret.read` audit), and the same
 * headers on the answer. Every request it is not sure of goes to Fastify untouched, before anything
 * is counted or recorded, so refusals keep their one implementation there: another method, an odd
 * path or query, no bearer token, a blocked address, a token that does not authenticate (Fastify
 * audits the `auth.failure`), or a server shutting down (Fastify answers 503). An actor over its
 * limit goes to Fastify too, marked as counted (the perimeter refuses it without counting it
 * again). Once the read has run, its refusals (403, 404, 400) are answered here as problems, since
 * `read` has already audited them; an error after anything was counted is answered here as well
 * (a 500), never handed on to be done twice.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Core } from '../core/core.js';
import type { Principal } from '../core/principal.js';
import { bearerToken, decodeSegments } from '../proxy/headers.js';
import { toProblem } from './http.js';

/** What the perimeter (security.ts) lends the hot path: its checks, with its counters. */
export interface Perimeter {
  /** The address is refused for failed credentials (the Fastify path answers 429). */
  blocked(ip: string): boolean;
  /**
   * Counts one request of `principal` in the per-actor tier: the RateLimit headers to send, or null
   * when over; then `req` is marked so that the perimeter refuses it without counting it again.
   */
  countActor(principal: Principal, ip: string, req: IncomingMessage): Array<[string, string]> | null | Promise<Array<[string, string]> | null>;
}

export interface HotReadOptions {
  core: Core;
  /** the security headers every answer carries */
  headers: Array<[string, string]>;
  perimeter: () => Perimeter | null;
  /** logs a request as Fastify does: when taken, a refusal (debug), and when answered (null when logging is off) */
  log: {
    incoming(reqId: string, method: string, path: string, ip: string | null): void;
    refused(reqId: string, code: string, status: number): void;
    completed(reqId: string, statusCode: number, responseTime: number): void;
  } | null;
  /** true once the server is closing: every request then goes to Fastify (503, Connection: close) */
  closing: () => boolean;
  /** logs an answer of 500 (an unexpected error) as Fastify's error handler does */
  onError: (err: unknown, reqId: string) => void;
}

/** The route, with no query or `version` alone in plain digits (zero, leading zeros and the rest are Fastify's to judge). */
const ROUTE = /^\/v1\/vaults\/([^/?#]{1,189})\/secrets\/([^/?#]{1,384})\/value(?:\?(version=[1-9][0-9]{0,8})?)?$/;
/** Names the route's validation accepts for certain (anything else goes to Fastify, which says what is wrong). */
const SAFE_NAME = /^[A-Za-z0-9_:.-]+$/;

/**
 * Returns a handler that answers a request it takes and returns true, or returns false (without
 * touching the request) for Fastify to handle: only before any side effect, or for an actor over
 * its limit, marked as counted. It rejects only before any side effect.
 */
export function hotRead(o: HotReadOptions): { handle: (req: IncomingMessage, res: ServerResponse) => Promise<boolean>; served: () => number } {
  let served = 0;
  const base = Object.fromEntries(o.headers.map(([k, v]) => [k.toLowerCase(), v]));

  const send = (res: ServerResponse, status: number, reqId: string, rate: Array<[string, string]>, type: string, body: string) => {
    const h: Record<string, string | number> = { ...base, 'x-request-id': reqId, 'cache-control': 'no-store' };
    for (const [k, v] of rate) h[k] = v;
    h['content-type'] = type;
    h['content-length'] = Buffer.byteLength(body);
    res.writeHead(status, h);
    res.end(body);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    if (req.method !== 'GET') return false;
    const t0 = performance.now();
    const m = ROUTE.exec(req.url ?? '');
    if (!m) return false;
    const decoded = decodeSegments(m[1]!, m[2]!);
    if (!decoded) return false;
    const [vault, name] = decoded as [string, string];
    if (vault.length > 63 || name.length > 128 || !SAFE_NAME.test(vault) || !SAFE_NAME.test(name)) return false;
    const version = m[3] ? Number(m[3].slice('version='.length)) : undefined;
    const token = bearerToken(req.headers.authorization);
    const perimeter = o.perimeter();
    // as Fastify's req.ip without a trusted proxy: the peer's address
    const ip = req.socket.remoteAddress ?? null;
    if (!token || !perimeter || o.closing() || perimeter.blocked(ip ?? '')) return false;
    let principal: Principal;
    try {
      principal = await o.core.auth.authenticate(token);
    } catch {
      return false;
    }
    // from here on something is counted or recorded: this request is answered here, whatever happens
    // (an actor over its limit excepted: handed on marked as counted)
    let rate = perimeter.countActor(principal, ip ?? '', req);
    if (rate instanceof Promise) rate = await rate;
    if (!rate) return false;

    const reqId = randomUUID();
    served++;
    let status = 200;
    try {
      o.log?.incoming(reqId, 'GET', req.url!.split('?')[0]!, ip);
      let body: string;
      try {
        body = JSON.stringify(await o.core.secrets.read({ principal, ip, requestId: reqId }, vault, name, version));
      } catch (err) {
        const p = toProblem(err, reqId);
        status = p.status;
        if (status >= 500) o.onError(err, reqId);
        else o.log?.refused(reqId, p.code, p.status);
        send(res, p.status, reqId, rate, 'application/problem+json; charset=utf-8', JSON.stringify(p));
        return true;
      }
      send(res, 200, reqId, rate, 'application/json; charset=utf-8', body);
    } catch (err) {
      // the answer could not be written (or logged): never handed on, which would count and read again
      status = 500;
      try {
        o.onError(err, reqId);
        if (!res.headersSent) send(res, 500, reqId, rate, 'application/problem+json; charset=utf-8', JSON.stringify(toProblem(new Error('internal'), reqId)));
        else res.destroy();
      } catch {
        res.destroy();
      }
    } finally {
      try {
        o.log?.completed(reqId, status, performance.now() - t0);
      } catch { /* answered already; a failing log must not hand the request on */ }
    }
    return true;
  };
  return { handle, served: () => served };
}
