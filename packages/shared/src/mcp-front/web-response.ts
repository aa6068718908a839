import type { ServerResponse } from 'node:http';
import { drained } from '../streams.js';

/** The JSON-RPC code the SDK uses for transport-level refusals (no session, bad request). */
export const TRANSPORT_ERROR = -32_000;

/** A JSON-RPC error answer with no id (the transport refused the request). */
export function jsonRpcError(
  status: number,
  code: number,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return Response.json({ jsonrpc: '2.0', error: { code, message }, id: null }, { status, headers });
}

export function singleHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

export async function safeJson(request: Request): Promise<unknown> {
  try {
    return await request.json();
  } catch {
    return undefined;
  }
}

/**
 * Writes a web Response to a Node response: headers at once, the body chunk by chunk honouring back-pressure,
 * and the body cancelled as soon as the client goes away (which releases the SDK's stream at once).
 */
export async function writeResponse(
  res: ServerResponse,
  response: Response,
  gone: AbortSignal | undefined,
): Promise<void> {
  if (res.headersSent || res.destroyed) {
    await response.body?.cancel().catch(() => {});
    return;
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of response.headers) headers[name] = value;
  if (headers['content-type']?.startsWith('text/event-stream')) headers['x-accel-buffering'] = 'no';
  res.writeHead(response.status, headers);
  if (!response.body) {
    res.end();
    return;
  }
  res.flushHeaders();
  const reader = response.body.getReader();
  const cancel = () => void reader.cancel().catch(() => {});
  gone?.addEventListener('abort', cancel, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || res.destroyed) break;
      if (!res.write(value)) await drained(res);
    }
  } catch {
    // The body was cancelled (client gone) or failed mid-stream: nothing more can be said.
  } finally {
    gone?.removeEventListener('abort', cancel);
    if (!res.destroyed) res.end();
    else cancel();
  }
}
