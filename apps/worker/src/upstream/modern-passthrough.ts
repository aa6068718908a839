import { type Logger, MCP_REQUEST_HEADERS, type ServerSpec } from '@mcp-hub/shared';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { createBoundedFetch } from './bounded-fetch.js';

/**
 * Request headers the upstream must see as the client sent them: the MCP ones the hub passes on, but no
 * session id (a 2026-07-28 request has none, and the worker's own session is not the client's).
 */
const FORWARDED_HEADERS = MCP_REQUEST_HEADERS.filter((name) => name !== 'mcp-session-id');
/** Response headers passed back. */
const RETURNED_HEADERS = ['content-type', 'cache-control', 'mcp-protocol-version'];

export interface ModernPassthrough {
  /**
   * Forwards one 2026-07-28 request to the upstream as it is and answers its response (streamed); undefined
   * when the upstream does not speak 2026-07-28, so the request is served by the bridge instead.
   */
  forward(request: Request, body: unknown, requestId: string | undefined): Promise<Response | undefined>;
}

export interface ModernPassthroughOptions {
  spec: Extract<ServerSpec, { transport: 'streamable-http' }>;
  log: Logger;
  maxMessageBytes: number;
  /** How long the era probe may take, in milliseconds. */
  probeTimeoutMs: number;
}

/**
 * A 2026-07-28 request to a Streamable HTTP server that speaks 2026-07-28 goes to it untouched: the protocol
 * is stateless, so there is no session of the worker's to keep, and everything the server does for a modern
 * client (its `input_required` rounds and their `requestState`, capability checks against the client's own
 * envelope, per-request log levels, list-change streams, tools it lists only to modern clients) reaches the
 * client as the server meant it. The worker's own upstream session stays 2025-era, for 2025 clients, the REST
 * call path and the tool list. Bodies are bounded as for any upstream message.
 */
export function createModernPassthrough(options: ModernPassthroughOptions): ModernPassthrough {
  const { spec, log } = options;
  const url = new URL(spec.config.url);
  const { fetch } = createBoundedFetch({
    maxMessageBytes: options.maxMessageBytes,
    onOversize: ({ id, limitBytes, kind }) =>
      log.warn(
        { event: 'upstream.message_too_large', rpc_id: id, limit_bytes: limitBytes, kind },
        'dropped an upstream message over the size limit; its request fails',
      ),
  });
  let era: Promise<boolean> | undefined;

  /** Whether the server speaks 2026-07-28 (asked once with `server/discover`; asked again after a failure). */
  function speaksModern(): Promise<boolean> {
    era ??= (async () => {
      const client = new Client({ name: 'mcp-hub-worker', version: '0.1.0' }, { versionNegotiation: { mode: 'auto' } });
      try {
        await client.connect(
          new StreamableHTTPClientTransport(url, { requestInit: { headers: spec.config.headers }, fetch }),
          {
            timeout: options.probeTimeoutMs,
          },
        );
        const modern = client.getProtocolEra() === 'modern';
        log.info({ event: 'upstream.era', era: modern ? '2026-07-28' : '2025' }, 'probed the upstream protocol era');
        return modern;
      } finally {
        await client.close().catch(() => {});
      }
    })();
    era.catch((err: unknown) => {
      era = undefined;
      log.warn({ event: 'upstream.era_probe_failed', err }, 'could not tell the upstream protocol era');
    });
    return era.catch(() => false);
  }

  return {
    async forward(request, body, requestId) {
      if (!(await speaksModern())) return undefined;
      const headers = new Headers(spec.config.headers);
      for (const name of FORWARDED_HEADERS) {
        const value = request.headers.get(name);
        if (value !== null) headers.set(name, value);
      }
      const started = performance.now();
      const method = (body as { method?: unknown } | undefined)?.method;
      // A listen stream is long-lived and may be JSON lines (not SSE): passed on line by line, each bounded.
      const listen = method === 'subscriptions/listen';
      const upstream = await (listen ? globalThis.fetch : fetch)(url, {
        method: request.method,
        headers,
        body: request.method === 'POST' ? JSON.stringify(body) : undefined,
        signal: request.signal,
      });
      log.info(
        {
          event: 'mcp.passthrough',
          request_id: requestId,
          rpc_method: typeof method === 'string' ? method.slice(0, 100) : undefined,
          status: upstream.status,
          latency: Math.round((performance.now() - started) * 100) / 100,
        },
        'a 2026-07-28 request went to the upstream as it is',
      );
      const returned = new Headers();
      for (const name of RETURNED_HEADERS) {
        const value = upstream.headers.get(name);
        if (value !== null) returned.set(name, value);
      }
      const stream = listen && upstream.body ? boundedLines(upstream.body, options.maxMessageBytes) : upstream.body;
      return new Response(stream, { status: upstream.status, headers: returned });
    },
  };
}

/** Passes a byte stream on as it comes, ending it when one line grows past `maxLineBytes`. */
function boundedLines(body: ReadableStream<Uint8Array>, maxLineBytes: number): ReadableStream<Uint8Array> {
  let sinceNewline = 0;
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        const last = chunk.lastIndexOf(10);
        sinceNewline = last < 0 ? sinceNewline + chunk.length : chunk.length - last - 1;
        if (last < 0 && sinceNewline > maxLineBytes) {
          controller.error(new Error(`a line of the upstream's stream is over ${maxLineBytes} bytes`));
          return;
        }
        controller.enqueue(chunk);
      },
    }),
  );
}
