import { AppError, type ErrorCode, errorBody, type Logger } from '@mcp-hub/shared';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

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

/** Maps anything thrown in a request to an AppError: known Fastify failures keep their 4xx meaning. */
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

/** Answers every failure in the one error shape and logs server-side failures with their stack. */
export function registerErrorHandling(app: FastifyInstance, log: Logger): void {
  app.setErrorHandler((err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    const appError = toAppError(err);
    if (appError.statusCode >= 500) {
      const cause = appError.cause ?? err;
      log.error(
        { event: 'api.error', request_id: req.id, err: cause, code: appError.code, url: req.url },
        'request failed',
      );
    }
    if (appError.code === 'unauthorized') reply.header('www-authenticate', 'Bearer realm="mcp-hub"');
    if (appError.code === 'redis_unavailable' || appError.code === 'worker_unavailable') {
      reply.header('retry-after', '1');
    }
    return reply.status(appError.statusCode).send(errorBody(appError, req.id));
  });

  app.setNotFoundHandler((req: FastifyRequest, reply: FastifyReply) => {
    const err = new AppError('route_not_found', `no route for ${req.method} ${req.url.split('?')[0]}`);
    return reply.status(err.statusCode).send(errorBody(err, req.id));
  });
}
