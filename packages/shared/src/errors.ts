/**
 * The one error type of the project. Every failure a client can see has a stable string code, and each
 * code maps to exactly one HTTP status here; `docs/errors.md` lists them all (a test keeps the two in step).
 */
export const ERROR_STATUS = {
  invalid_request: 400,
  invalid_json: 400,
  invalid_arguments: 400,
  unauthorized: 401,
  forbidden: 403,
  origin_not_allowed: 403,
  host_not_allowed: 403,
  server_not_found: 404,
  project_not_found: 404,
  member_not_found: 404,
  key_not_found: 404,
  webhook_not_found: 404,
  group_not_found: 404,
  endpoint_not_found: 404,
  tool_not_found: 404,
  route_not_found: 404,
  method_not_allowed: 405,
  server_exists: 409,
  revision_conflict: 409,
  project_exists: 409,
  group_exists: 409,
  key_not_active: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  internal_error: 500,
  secret_unreadable: 500,
  upstream_error: 502,
  redis_unavailable: 503,
  worker_unavailable: 503,
  hub_closing: 503,
  tool_timeout: 504,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** Seconds a client is told to wait (`Retry-After`) when Redis or a server's worker is unavailable. */
export const UNAVAILABLE_RETRY_AFTER_S = 1;

/**
 * The headers an error answer carries besides its body, declared with the code they belong to (and set only
 * by the error handler, never by a route): `Retry-After` on the retryable 503s and on 429 (the limiter's
 * own figure, from `details.retryAfterS`), `WWW-Authenticate` on 401, `Connection: close` from a closing hub.
 */
export const ERROR_HEADERS: { readonly [C in ErrorCode]?: (err: AppError) => Record<string, string> } = {
  unauthorized: () => ({ 'www-authenticate': 'Bearer realm="mcp-hub"' }),
  rate_limited: (err): Record<string, string> => {
    const seconds = (err.details as { retryAfterS?: unknown } | undefined)?.retryAfterS;
    return typeof seconds === 'number' ? { 'retry-after': String(seconds) } : {};
  },
  redis_unavailable: () => ({ 'retry-after': String(UNAVAILABLE_RETRY_AFTER_S) }),
  worker_unavailable: () => ({ 'retry-after': String(UNAVAILABLE_RETRY_AFTER_S) }),
  // The connection ends with this answer: the client's next request opens one to a hub that is not closing.
  hub_closing: () => ({ 'retry-after': String(UNAVAILABLE_RETRY_AFTER_S), connection: 'close' }),
};

/** The headers of an error answer (ERROR_HEADERS of its code; none for most codes). */
export function errorHeaders(err: AppError): Record<string, string> {
  return ERROR_HEADERS[err.code]?.(err) ?? {};
}

export const ERROR_CODES = Object.keys(ERROR_STATUS) as ErrorCode[];

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly details: unknown;
  /** The HTTP status of `code`; a plain field, since Fastify may write it on errors it handles. */
  statusCode: number;

  constructor(code: ErrorCode, message: string, details?: unknown, options?: ErrorOptions) {
    super(message, options);
    this.name = 'AppError';
    this.code = code;
    this.details = details;
    this.statusCode = ERROR_STATUS[code];
  }
}

/** The wire shape of every error answer. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: unknown };
  request_id: string;
}

export function errorBody(err: AppError, requestId: string): ErrorBody {
  const error: ErrorBody['error'] = { code: err.code, message: err.message };
  if (err.details !== undefined) error.details = err.details;
  return { error, request_id: requestId };
}

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}

/** A mark an error can carry without a field of its own (what a route or a call already knows of it). */
export interface ErrorMark {
  /** Marks `error`, and returns it. */
  mark<E extends Error>(error: E): E;
  has(error: unknown): boolean;
}

/** A new ErrorMark: kept beside the errors (a WeakSet), so a marked error is collected like any other. */
export function errorMark(): ErrorMark {
  const marked = new WeakSet<Error>();
  return {
    mark(error) {
      marked.add(error);
      return error;
    },
    has: (error) => error instanceof Error && marked.has(error),
  };
}
