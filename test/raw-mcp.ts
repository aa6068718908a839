/**
 * MCP requests written by hand (fetch), for tests that need what an SDK client hides: the session id, an
 * open stream to watch end, or a request on a session that should no longer exist. Without keep-alive, like the
 * SDK clients of the tests (fetchWithoutKeepAlive).
 */
import { fetchWithoutKeepAlive as fetch } from './mcp-clients.js';

const CLIENT_INFO = { name: 'raw-mcp-test', version: '1.0.0' };
const PROTOCOL_VERSION = '2025-06-18';
const ACCEPT = 'application/json, text/event-stream';

/** A 2025-era `initialize` on a Streamable HTTP endpoint; answers the session id it opened. */
export async function openSession(url: string, headers: Record<string, string>): Promise<string> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json', accept: ACCEPT },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: CLIENT_INFO },
    }),
  });
  const text = await res.text();
  const session = res.headers.get('mcp-session-id');
  if (res.status !== 200 || !session) throw new Error(`initialize answered ${res.status}: ${text}`);
  return session;
}

/** A `ping` on a 2025 session; answers the HTTP status (200 while the session lives, 404 once it is gone). */
export async function pingSession(url: string, session: string, headers: Record<string, string>): Promise<number> {
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      ...headers,
      'content-type': 'application/json',
      accept: ACCEPT,
      'mcp-session-id': session,
      'mcp-protocol-version': PROTOCOL_VERSION,
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ping' }),
  });
  await res.text();
  return res.status;
}

/** An open event stream: `ended` resolves when the server ends it; `cancel()` ends it from this side. */
export interface OpenStream {
  /** The `endpoint` event's data (legacy SSE) or undefined. */
  endpoint?: string;
  ended: Promise<void>;
  /** Whether the stream has ended (by either side). */
  isEnded(): boolean;
  cancel(): Promise<void>;
}

/**
 * Opens a GET event stream: the legacy `/sse` endpoint (resolves once its `endpoint` event arrived), or a
 * 2025 session's standalone stream (`mcp-session-id` in `headers`; resolves once the headers arrived).
 */
export async function openStream(url: string, headers: Record<string, string>): Promise<OpenStream> {
  const res = await fetch(url, { headers: { ...headers, accept: 'text/event-stream' } });
  if (res.status !== 200 || !res.body) throw new Error(`GET ${url} answered ${res.status}: ${await res.text()}`);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let endpoint: string | undefined;
  const legacy = !('mcp-session-id' in headers);
  while (legacy && endpoint === undefined) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`GET ${url} ended before its endpoint event`);
    buffer += decoder.decode(value, { stream: true });
    endpoint = /event: endpoint\ndata: (.*)\n/.exec(buffer)?.[1];
  }
  let over = false;
  const ended = (async () => {
    try {
      for (;;) if ((await reader.read()).done) break;
    } catch {
      // A reset ends the stream too.
    }
    over = true;
  })();
  return { endpoint, ended, isEnded: () => over, cancel: () => reader.cancel().catch(() => {}) };
}
