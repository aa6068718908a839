import { OrderedClient } from '@mcp-hub/shared/mcp-front/client';
import { type Client, ProtocolError, ProtocolErrorCode } from '@modelcontextprotocol/client';
import {
  CLIENT_REQUEST_METHODS,
  type ClientRequestHandler,
  FORWARDED_NOTIFICATIONS,
  type NotificationListener,
} from './upstream.js';

const CLIENT_INFO = { name: 'mcp-hub-worker', version: '0.1.0' };
/**
 * What the worker tells its upstream it can do: everything a downstream client may answer. Each request is
 * passed on to the client whose call caused it, which may lack the capability: the upstream then gets an MCP
 * error (see client-requests.ts).
 */
const CLIENT_CAPABILITIES = {
  sampling: { context: {}, tools: {} },
  elicitation: { form: {}, url: {} },
  roots: { listChanged: true },
};
/** Coalesces bursts of `tools/list_changed` (a server registering tools one by one). */
const TOOLS_CHANGED_DEBOUNCE_MS = 100;

/**
 * Where a session's client sends what its server sends. Listeners are looked up when something arrives (they
 * may be set after the client was built), and only while `isLive(client)`.
 */
export interface ClientRoutes {
  /** Whether `client` is still the live session's: a late notification of a session being replaced is dropped. */
  isLive(client: Client): boolean;
  toolsChanged(): void;
  listChanged(list: 'resources' | 'prompts'): void;
  clientRequestHandler(): ClientRequestHandler | undefined;
  notificationListener(): NotificationListener | undefined;
}

/**
 * The SDK client of one upstream session: list changes (debounced, never auto-refreshed: the worker syncs
 * tools itself), the server's requests to its client, and the notifications the worker forwards.
 */
export function createUpstreamClient(routes: ClientRoutes): Client {
  const onChange = (onChanged: () => void) => ({
    autoRefresh: false,
    debounceMs: TOOLS_CHANGED_DEBOUNCE_MS,
    onChanged: () => {
      if (routes.isLive(client)) onChanged();
    },
  });
  const client: Client = new OrderedClient(CLIENT_INFO, {
    listChanged: {
      tools: onChange(() => routes.toolsChanged()),
      resources: onChange(() => routes.listChanged('resources')),
      prompts: onChange(() => routes.listChanged('prompts')),
    },
    capabilities: CLIENT_CAPABILITIES,
  });
  for (const method of CLIENT_REQUEST_METHODS) {
    client.setRequestHandler(method, async (request, ctx) => {
      const handler = routes.isLive(client) ? routes.clientRequestHandler() : undefined;
      if (!handler) throw new ProtocolError(ProtocolErrorCode.InvalidRequest, 'no client can answer this request');
      return (await handler(method, request.params as Record<string, unknown> | undefined, ctx.mcpReq.signal)) as never;
    });
  }
  for (const method of FORWARDED_NOTIFICATIONS) {
    client.setNotificationHandler(method, (notification) => {
      if (!routes.isLive(client)) return;
      routes.notificationListener()?.(method, (notification.params ?? {}) as Record<string, unknown>);
    });
  }
  return client;
}
