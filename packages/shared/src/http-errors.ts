// Only types come from fastify: the plugin runs inside each app's own fastify instance, and processes that
// never serve HTTP (the supervisor) do not load it through the shared index.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, type ErrorCode, errorBody, errorHeaders, errorMark } from './errors.js';
import type { Logger } from './logger.js';

const FASTIFY_CODES: Record<string, { code: ErrorCode; message?: string }> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: 'unsupported_media_type' },
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'payload_too_large' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'invalid_request' },
  FST_ERR_CTP_EMPTY_JSON_BODY: {
    code: 'invalid_json',
    message: 'the body is empty but Content-Type says JSON; send a JSON object',
  },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'invalid_json' },
};

const REDIS_FAILURE_RE =
  /ECONNREFUSED|Connection is closed|Command timed out|Stream isn't writeable|max retries|MaxRetriesPerRequest/i;

/**
 * Maps anything thrown in a request to an AppError: AppErrors as they are, known Fastify failures keep their
 * 4xx meaning, a Redis client failure is `redis_unavailable`, anything else `internal_error` (with the
 * original as `cause`, for the log).
 */
export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const e = err as Partial<FastifyError> & Error;
  const known = e.code ? FASTIFY_CODES[e.code] : undefined;
  if (known) return new AppError(known.code, known.message ?? e.message);
  if (e instanceof SyntaxError || (e.statusCode === 400 && /JSON/i.test(e.message ?? ''))) {
    return new AppError('invalid_json', `the body is not valid JSON: ${e.message}`);
  }
  if (e.name === 'MaxRetriesPerRequestError' || REDIS_FAILURE_RE.test(e.message ?? '')) {
    return new AppError('redis_unavailable', 'the registry (Redis) is unavailable; retry shortly');
  }
  const status = e.statusCode ?? 500;
  if (status === 404) return new AppError('route_not_found', e.message);
  if (status === 413) return new AppError('payload_too_large', e.message);
  if (status === 415) return new AppError('unsupported_media_type', e.message);
  if (status >= 400 && status < 500) return new AppError('invalid_request', e.message);
  return new AppError('internal_error', 'internal error', undefined, { cause: err });
}

/** Errors a route already logged in its own line (`tool.call.failed`): the error handler does not repeat them. */
const logged = errorMark();

/** Marks an error as logged by the route that throws it, so that it is logged once. */
export function markLogged(err: AppError): AppError {
  return logged.mark(err);
}

/**
 * The one error handling of the project's HTTP servers (hub and worker): every failure answered in the one
 * error shape with the headers of its code (ERROR_HEADERS), unknown routes as `route_not_found`, and
 * server-side failures (5xx) logged under `api.error`: a bug (`internal_error`) at `error` with its cause and
 * stack; an expected one (a dependency down: Redis, a worker, an upstream) as one `warn` line without a stack,
 * and not at all when the route logged it already (`markLogged`).
 */
export function registerErrorHandling(app: FastifyInstance, log: Logger): void {
  app.setErrorHandler((err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    const appError = toAppError(err);
    if (appError.code === 'internal_error') {
      log.error(
        {
          event: 'api.error',
          request_id: req.id,
          err: appError.cause ?? err,
          code: appError.code,
          url: loggedPath(req.url),
        },
        'request failed',
      );
    } else if (appError.statusCode >= 500 && !logged.has(appError)) {
      log.warn(
        {
          event: 'api.error',
          request_id: req.id,
          code: appError.code,
          error: appError.message,
          url: loggedPath(req.url),
        },
        'request failed',
      );
    }
    return reply.headers(errorHeaders(appError)).status(appError.statusCode).send(errorBody(appError, req.id));
  });

  app.setNotFoundHandler((req: FastifyRequest, reply: FastifyReply) => {
    const err = new AppError('route_not_found', `no route for ${req.method} ${loggedPath(req.url)}`);
    return reply.status(err.statusCode).send(errorBody(err, req.id));
  });
}

/**
 * A request path as logs and error messages may show it: without the query, and with the secret of a connection
 * endpoint URL (`/e/<token>/…`) replaced by `<token>`.
 */
export function loggedPath(url: string): string {
  const path = url.split('?')[0] ?? '';
  // By the token's shape wherever it is (a router decodes `%65` to `e`, so the path's own spelling cannot be trusted).
  return path.replace(/^\/e\/[^/]*/, '/e/<token>').replace(/mcpe(_|%5[Ff])[A-Za-z0-9_%-]*/g, '<token>');
}
