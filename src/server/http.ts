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
  413: 'Payload Too Large', 415: 'Unsupported Media Type', 429: 'Too Many Requests', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable',
};

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
  if (e?.statusCode === 429) return problem(429, 'rate_limited', 'too many requests; retry after the time in Retry-After', requestId);
  if (e?.statusCode && e.statusCode >= 400 && e.statusCode < 500) return problem(e.statusCode, 'bad_request', 'the request could not be processed', requestId);
  return problem(500, 'internal', 'internal error; the request id identifies it in the server log', requestId);
}

/** A zod schema used as a Fastify schema: validation errors name the field, never the value. */
export function zodValidatorCompiler({ schema, httpPart }: { schema: unknown; httpPart?: string }) {
  const s = schema as ZodType;
  return (data: unknown) => {
    const r = s.safeParse(data);
    if (r.success) return { value: r.data };
    const issue = r.error.issues[0]!;
    let field = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') field = [field, (issue as { keys: string[] }).keys[0]].filter(Boolean).join('.');
    const where = httpPart === 'querystring' ? 'query parameter' : httpPart === 'params' ? 'path parameter' : 'field';
    let msg: string;
    switch (issue.code) {
      case 'unrecognized_keys': msg = `is not a known ${where}`; break;
      case 'invalid_type': msg = issue.input === undefined ? 'is required' : `must be ${(issue as { expected: string }).expected}`; break;
      case 'too_big': msg = `is too large (at most ${(issue as { maximum: number | bigint }).maximum})`; break;
      case 'too_small': msg = `is too small (at least ${(issue as { minimum: number | bigint }).minimum})`; break;
      case 'invalid_value': msg = `must be one of ${((issue as { values: unknown[] }).values ?? []).map(String).join(', ')}`; break;
      case 'invalid_format': msg = `has the wrong format`; break;
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
export const cursorQuery = { limit: z.coerce.number().int().min(1).max(1000).optional(), cursor: z.string().max(512).optional() };

export type Req<B = unknown, Q = unknown, P = unknown> = FastifyRequest<{ Body: B; Querystring: Q; Params: P }>;

export type App = FastifyInstance;
