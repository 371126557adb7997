/**
 * HTTP plumbing shared by every resource plugin: zod schemas as Fastify schemas (one definition
 * validates the request and documents it in OpenAPI), problem+json errors, the request context.
 */
import type {} from '@fastify/swagger';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z, type ZodType } from 'zod';
import { LatchkeyError } from '../core/errors.js';
import type { OpContext } from '../core/principal.js';

declare module 'fastify' {
  interface FastifyRequest {
    ctx: OpContext;
  }
  interface FastifyContextConfig {
    /** no bearer token needed (health, login) */
    public?: boolean;
    /** a stricter rate-limit tier for this route */
    rateTier?: 'login' | 'token' | 'proposal' | 'request';
  }
}

export const PROBLEM_TYPE = 'https://latchkey.dev/problems/';

export interface Problem {
  type: string;
  title: string;
  status: number;
  code: string;
  detail: string;
  field?: string;
  request_id: string;
  [k: string]: unknown;
}

const TITLES: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 409: 'Conflict',
  413: 'Payload Too Large', 414: 'URI Too Long', 415: 'Unsupported Media Type', 429: 'Too Many Requests', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable',
};

/**
 * The request's URL as the router sees it, for every check keyed on a path prefix (`/v1/` is
 * authenticated, `/proxy/` meters itself): the router percent-decodes the path before matching
 * (all but reserved characters, like decodeURI), so `/%761/vaults` is served by `/v1/vaults`, and
 * a check on the raw URL would let it through unauthenticated.
 */
export function servedPath(req: FastifyRequest): string {
  const u = req.url;
  if (!u.includes('%')) return u;
  try {
    return decodeURI(u);
  } catch {
    return u; // malformed: the router refuses it too
  }
}

/** The API (`/v1`) and the base-URL proxy (`/proxy`): never console pages; their answers get the API's security headers. */
const API_PATH = /^\/(v1|proxy)(\/|$|\?)/;

/** True for a path (servedPath) of the API or the base-URL proxy; every other path is the console's. */
export function isApiPath(path: string): boolean {
  return API_PATH.test(path);
}

export function problem(status: number, code: string, detail: string, requestId: string, field?: string, extra?: Record<string, unknown>): Problem {
  return { type: PROBLEM_TYPE + code, title: TITLES[status] ?? 'Error', status, code, detail, ...(field ? { field } : {}), request_id: requestId, ...(extra ?? {}) };
}

export function sendProblem(reply: FastifyReply, p: Problem): FastifyReply {
  if (p.status === 401) reply.header('WWW-Authenticate', 'Bearer realm="latchkey"');
  return reply.code(p.status).type('application/problem+json').send(p);
}

/**
 * Maps any error to a problem. Framework and parser errors get fixed messages of our own: their
 * texts can quote the request body (V8's JSON.parse does), and the body may hold a secret.
 */
export function toProblem(err: unknown, requestId: string): Problem {
  if (err instanceof LatchkeyError) return problem(err.status, err.code, err.message, requestId, err.field, err.extra);
  const e = err as FastifyError & { validationField?: string };
  const code = typeof e?.code === 'string' ? e.code : '';
  if (code === 'FST_ERR_CTP_INVALID_JSON_BODY' || code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || (e instanceof SyntaxError)) {
    return problem(400, 'malformed_json', 'the request body is not valid JSON', requestId, 'body');
  }
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return problem(413, 'body_too_large', 'the request body is too large', requestId, 'body');
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return problem(415, 'unsupported_media_type', 'send JSON with Content-Type: application/json', requestId, 'content-type');
  if (code === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH') return problem(400, 'bad_content_length', 'Content-Length does not match the body', requestId, 'body');
  // router errors (reach here through Fastify's frameworkErrors): fixed texts, never the path
  if (code === 'FST_ERR_BAD_URL') return problem(400, 'bad_url', 'the URL is not validly percent-encoded', requestId, 'path');
  if (code === 'FST_ERR_MAX_PARAM_LENGTH') return problem(414, 'uri_too_long', 'a path segment is too long', requestId, 'path');
  if (e?.statusCode === 429) return problem(429, 'rate_limited', 'too many requests; retry after the time in Retry-After', requestId);
  if (e?.statusCode && e.statusCode >= 400 && e.statusCode < 500) return problem(e.statusCode, 'bad_request', 'the request could not be processed', requestId);
  return problem(500, 'internal', 'internal error; the request id identifies it in the server log', requestId);
}

/** A path segment shown back to the client: field names, and record keys that look like secret names (`skill:x:y`). */
const SHOWN_KEY = /^[A-Za-z_][A-Za-z0-9_:]{0,127}$/;

/**
 * `a.b[0].c`: the same field syntax core uses (`tags[0]`, `fallback[1]`). It stops before a
 * client-chosen key that does not look like a name (it could be a value sent in the wrong place).
 */
function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const k of path) {
    if (typeof k === 'number') out += `[${k}]`;
    else if (typeof k === 'string' && SHOWN_KEY.test(k)) out += `${out ? '.' : ''}${k}`;
    else break;
  }
  return out;
}

/** Whether `path` leads to a value in `data` (own properties only): tells "missing" from "wrong type". */
function present(data: unknown, path: readonly PropertyKey[]): boolean {
  let cur = data;
  for (const k of path) {
    if (cur === null || typeof cur !== 'object' || !Object.hasOwn(cur, k)) return false;
    cur = (cur as Record<PropertyKey, unknown>)[k];
  }
  return cur !== undefined && cur !== null;
}

const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

const EXPECTED: Record<string, string> = {
  string: 'a string', number: 'a number', int: 'a whole number', boolean: 'true or false', object: 'an object', array: 'an array', record: 'an object',
};

/** U+0000 or a lone surrogate: PostgreSQL refuses the first in text (a 500), UTF-8 cannot carry the second (silently replaced). */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
function badText(v: string): boolean {
  return v.includes('\u0000') || LONE_SURROGATE.test(v);
}

/**
 * The path of the first string (or object key) in `data` that is not storable text, or null.
 * Iterative: a deeply nested body must not overflow the stack.
 */
function findBadText(data: unknown): Array<string | number> | null {
  type Node = { v: unknown; key: string | number | null; up: Node | null };
  const pathOf = (n: Node | null): Array<string | number> => {
    const out: Array<string | number> = [];
    for (let x = n; x && x.key !== null; x = x.up) out.push(x.key);
    return out.reverse();
  };
  const stack: Node[] = [{ v: data, key: null, up: null }];
  while (stack.length) {
    const n = stack.pop()!;
    const v = n.v;
    if (typeof v === 'string') {
      if (badText(v)) return pathOf(n);
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ v: v[i], key: i, up: n });
    } else if (v !== null && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (badText(k)) return pathOf(n);
        stack.push({ v: x, key: k, up: n });
      }
    }
  }
  return null;
}

/** A zod schema used as a Fastify schema: validation errors name the field, never the value. */
export function zodValidatorCompiler({ schema, httpPart }: { schema: unknown; httpPart?: string }) {
  const s = schema as ZodType;
  return (input: unknown) => {
    // Fastify hands a missing body over as null: an optional body schema must accept "no body"
    const data = httpPart === 'body' && input === null ? undefined : input;
    const bad = findBadText(data);
    if (bad) {
      const field = fieldPath(bad) || (httpPart === 'body' ? 'body' : httpPart === 'querystring' ? 'query parameter' : 'path parameter');
      return { error: new LatchkeyError(400, 'invalid_text', `${field}: must be valid Unicode text without NUL characters`, field) };
    }
    const r = s.safeParse(data);
    if (r.success) return { value: r.data };
    const issue = r.error.issues[0]!;
    // a record key that fails its own check is not repeated back: the field at fault is the record
    let field = fieldPath(issue.code === 'invalid_key' ? issue.path.slice(0, -1) : issue.path);
    // an unknown key is named only when it looks like a field name: a client that put a value where a key goes must not get it echoed
    let unnamed = false;
    if (issue.code === 'unrecognized_keys') {
      const key = (issue as { keys: string[] }).keys[0] ?? '';
      if (FIELD_NAME.test(key)) field = [field, key].filter(Boolean).join('.');
      else unnamed = true;
    }
    const where = httpPart === 'querystring' ? 'query parameter' : httpPart === 'params' ? 'path parameter' : 'field';
    let msg: string;
    switch (issue.code) {
      case 'unrecognized_keys': msg = unnamed ? `holds an unknown ${where} (its name is not shown)` : `is not a known ${where}`; break;
      case 'invalid_type': {
        // zod 4 leaves `issue.input` out unless asked to (and it would hold the value): look at the data instead
        const expected = (issue as { expected: string }).expected;
        msg = present(data, issue.path) ? `must be ${EXPECTED[expected] ?? expected}` : 'is required';
        break;
      }
      case 'too_big': msg = `is too large (at most ${(issue as { maximum: number | bigint }).maximum})`; break;
      case 'too_small': msg = `is too small (at least ${(issue as { minimum: number | bigint }).minimum})`; break;
      case 'invalid_value': msg = `must be one of ${((issue as { values: unknown[] }).values ?? []).map(String).join(', ')}`; break;
      case 'invalid_key': msg = 'holds a key that is not valid (too long, or not a name)'; break;
      case 'invalid_format': msg = (issue as { pattern?: string }).pattern === String(DIGITS) ? 'must be a whole number' : 'has the wrong format'; break;
      default: msg = 'is not valid';
    }
    if (!field) field = httpPart === 'body' ? 'body' : where;
    return { error: new LatchkeyError(400, 'validation_failed', `${field}: ${msg}`, field) };
  };
}

/** Converts zod route schemas to JSON Schema for the OpenAPI document (the same objects that validate). */
export function openapiTransform({ schema, url }: { schema: Record<string, unknown>; url: string }) {
  if (!schema) return { schema, url };
  const out: Record<string, unknown> = { ...schema };
  for (const part of ['body', 'querystring', 'params', 'headers']) {
    const s = schema[part];
    if (s && typeof (s as ZodType).safeParse === 'function') {
      const js = z.toJSONSchema(s as ZodType, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
      delete js.$schema;
      out[part] = js;
    }
  }
  if (schema.response && typeof schema.response === 'object') {
    const resp: Record<string, unknown> = {};
    for (const [code, s] of Object.entries(schema.response as Record<string, unknown>)) {
      if (s && typeof (s as ZodType).safeParse === 'function') {
        const js = z.toJSONSchema(s as ZodType, { io: 'output', unrepresentable: 'any' }) as Record<string, unknown>;
        delete js.$schema;
        resp[code] = js;
      } else resp[code] = s;
    }
    out.response = resp;
  }
  return { schema: out, url };
}

export const vaultParam = z.strictObject({ vault: z.string().min(1).max(63) });
export const secretParam = z.strictObject({ vault: z.string().min(1).max(63), name: z.string().min(1).max(128) });
const DIGITS = /^[0-9]{1,15}$/;
/** A whole number in a query string: plain decimal digits only (no `1e3`, `0x10`, `1.0`, `-1`, blanks), then range-checked. */
export const intQuery = (min: number, max: number) => z.string().regex(DIGITS).transform(Number).pipe(z.number().int().min(min).max(max));
export const cursorQuery = { limit: intQuery(1, 1000).optional(), cursor: z.string().max(512).optional() };

export type Req<B = unknown, Q = unknown, P = unknown> = FastifyRequest<{ Body: B; Querystring: Q; Params: P }>;

export type App = FastifyInstance;
