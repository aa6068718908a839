// Only types come from fastify: the plugin runs inside each app's own fastify instance, and processes that
// never serve HTTP (the supervisor) do not load it through the shared index.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, type ErrorCode, errorBody, errorHeaders } from './errors.js';
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

/**
 * The one error handling of the project's HTTP servers (hub and worker): every failure answered in the one
 * error shape with the headers of its code (ERROR_HEADERS), unknown routes as `route_not_found`, and
 * server-side failures (5xx) logged with their cause under `api.error` (level `error` for a bug, else `warn`).
 */
export function registerErrorHandling(app: FastifyInstance, log: Logger): void {
  app.setErrorHandler((err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    const appError = toAppError(err);
    if (appError.statusCode >= 500) {
      // A bug is an error; a dependency that is down (Redis, a worker, an upstream) is the warning it answers.
      const level = appError.code === 'internal_error' ? 'error' : 'warn';
      log[level](
        { event: 'api.error', request_id: req.id, err: appError.cause ?? err, code: appError.code, url: req.url },
        'request failed',
      );
    }
    return reply.headers(errorHeaders(appError)).status(appError.statusCode).send(errorBody(appError, req.id));
  });

  app.setNotFoundHandler((req: FastifyRequest, reply: FastifyReply) => {
    const err = new AppError('route_not_found', `no route for ${req.method} ${req.url.split('?')[0]}`);
    return reply.status(err.statusCode).send(errorBody(err, req.id));
  });
}
