import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { AppError, type ErrorCode, errorBody, type Logger } from '@mcp-hub/shared';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/** Whether a request id is well-formed (what the worker accepts from `x-request-id`). */
export function isRequestId(value: string): boolean {
  return REQUEST_ID_RE.test(value);
}

/** Takes a well-formed `x-request-id` (set by the hub) or makes one; a malformed one is replaced, not trusted. */
export function requestIdFrom(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID_RE.test(given) ? given : randomUUID();
}

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
};

/** Maps anything thrown in a request to an AppError; known Fastify failures keep their 4xx meaning. */
export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const e = err as Partial<FastifyError> & Error;
  const known = e.code ? FASTIFY_CODES[e.code] : undefined;
  if (known) return new AppError(known, e.message);
  if (e instanceof SyntaxError) return new AppError('invalid_json', `the body is not valid JSON: ${e.message}`);
  const status = e.statusCode ?? 500;
  if (status === 404) return new AppError('route_not_found', e.message);
  if (status === 413) return new AppError('payload_too_large', e.message);
  if (status === 415) return new AppError('unsupported_media_type', e.message);
  if (status === 503) return new AppError('worker_unavailable', 'the worker is shutting down');
  if (status >= 400 && status < 500) return new AppError('invalid_request', e.message);
  return new AppError('internal_error', 'internal error', undefined, { cause: err });
}

/** Answers every failure in the project's one error shape; server-side failures are logged with their stack. */
export function registerErrorHandling(app: FastifyInstance, log: Logger): void {
  app.setErrorHandler((err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    const appError = toAppError(err);
    if (appError.code === 'internal_error') {
      log.error({ event: 'api.error', request_id: req.id, err: appError.cause ?? err, url: req.url }, 'request failed');
    }
    if (appError.code === 'worker_unavailable') reply.header('retry-after', '1');
    return reply.status(appError.statusCode).send(errorBody(appError, req.id));
  });

  app.setNotFoundHandler((req: FastifyRequest, reply: FastifyReply) => {
    const err = new AppError('route_not_found', `no route for ${req.method} ${req.url.split('?')[0]}`);
    return reply.status(err.statusCode).send(errorBody(err, req.id));
  });
}
