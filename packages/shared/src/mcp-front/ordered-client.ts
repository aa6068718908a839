import { Client, type JSONRPCResponse } from '@modelcontextprotocol/client';

/**
 * The SDK's MCP client, with every notification a server sent before an answer handled before that answer.
 *
 * Why: the SDK dispatches a notification one microtask late (`Promise.resolve().then(handler)`) but settles a
 * response at once, dropping the request's progress handler with it. When a server's last
 * `notifications/progress` and its result arrive in one read (a stdio chunk holds both lines; an SSE chunk can),
 * the result removes the handler first and the last progress is dropped as "unknown token". Settling each
 * response one microtask later queues it behind the notifications that came before it, in arrival order.
 */
export class OrderedClient extends Client {
  protected override _onresponse(response: JSONRPCResponse): void {
    queueMicrotask(() => super._onresponse(response));
  }
}
