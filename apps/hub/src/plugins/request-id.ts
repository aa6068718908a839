import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/** Takes a well-formed `x-request-id` from the client, or makes one; a malformed one is replaced, not trusted. */
export function requestIdFrom(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID_RE.test(given) ? given : randomUUID();
}
