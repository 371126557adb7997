/**
 * The one way to raise an error in Latchkey. Every error carries a stable `code` and an HTTP status;
 * the server turns it into application/problem+json, the CLI into an exit code. Messages name
 * fields and objects, never values.
 */
export class LatchkeyError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
    readonly extra?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'LatchkeyError';
  }
}

export const invalid = (field: string, message: string, code = 'validation_failed') => new LatchkeyError(400, code, `${field}: ${message}`, field);
export const unauthenticated = (message = 'a valid bearer token is required', code = 'unauthenticated') => new LatchkeyError(401, code, message);
export const denied = (message: string, code = 'forbidden', extra?: Record<string, unknown>) => new LatchkeyError(403, code, message, undefined, extra);
export const notFound = (what: string, name: string, code = `${what}_not_found`, field?: string) => new LatchkeyError(404, code, `${what} '${name}' was not found`, field);
export const conflict = (message: string, code = 'conflict', field?: string) => new LatchkeyError(409, code, message, field);
export const unavailable = (message: string, code = 'unavailable') => new LatchkeyError(503, code, message);

/** Raised at start-up (wrong or missing master key, uninitialised data dir): the process exits non-zero. */
export class StartupError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'StartupError';
  }
}
