import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/**
 * The id patterns every process agrees on, kept here once: a slug (server, project and key ids, namespaces),
 * and a request id (what `x-request-id` may carry from a client, the hub or a worker).
 */

/** A slug: 1-63 characters of a-z, 0-9, `-` or `_`, starting with a letter or digit. */
export const SLUG_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/**
 * The request id, on every answer of the hub and on every request from the hub to a worker (the worker takes
 * a well-formed one as its own, so one id follows a call through both processes' logs).
 */
export const REQUEST_ID_HEADER = 'x-request-id';

/** A request id: 1-128 characters safe in a header and a log line. */
export const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/** Whether `value` is a well-formed request id. */
export function isRequestId(value: string): boolean {
  return REQUEST_ID_RE.test(value);
}

/**
 * The request id of a request: its well-formed `x-request-id` (a client's, or the hub's on the hop to a worker)
 * or a new UUID; a malformed one is replaced, not trusted (it would reach log lines and answers).
 */
export function requestIdFrom(req: IncomingMessage): string {
  const given = req.headers[REQUEST_ID_HEADER];
  return typeof given === 'string' && REQUEST_ID_RE.test(given) ? given : randomUUID();
}
