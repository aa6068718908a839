import { Client as ClientV2, StreamableHTTPClientTransport as StreamableV2 } from '@modelcontextprotocol/client';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport as StreamableV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { Agent, fetch as undiciFetch } from 'undici';

/** MCP clients of every era the tests drive: the SDK v2 client (2026-07-28) and v1 (2025 sessions, SSE). */
export type AnyClient = ClientV1 | ClientV2;

export interface Progress {
  progress: number;
  total?: number;
}

type Fetch = (input: string | URL, init?: RequestInit) => Promise<Response>;

const oneConnectionEach = new Agent({ pipelining: 0 });

/**
 * fetch with a connection of its own per request, closed after the answer. A hub or a worker that closes under
 * connected clients waits for the keep-alive connections of the answers that ended meanwhile (the streams its
 * close ended) until the client drops them, 4 s for undici: tests whose clients kept them would pay that at every
 * close.
 */
export const fetchWithoutKeepAlive: Fetch = (input, init) =>
  undiciFetch(input, { ...(init as object), dispatcher: oneConnectionEach }) as unknown as Promise<Response>;

export interface McpClientsOptions {
  /** Whether connections are kept alive between requests (default false: see fetchWithoutKeepAlive). */
  keepAlive?: boolean;
}

/**
 * Opens clients and remembers them, so that `closeAll()` (in an afterEach) closes every one a test opened:
 * a failing test must not leave a stream open.
 */
export function mcpClients(info: { name: string; version: string }, options: McpClientsOptions = {}) {
  const send: Fetch = options.keepAlive === true ? (input, init) => fetch(input, init) : fetchWithoutKeepAlive;
  const opened: AnyClient[] = [];
  const track = <C extends AnyClient>(client: C): C => {
    opened.push(client);
    return client;
  };
  return {
    async closeAll(): Promise<void> {
      await Promise.allSettled(opened.splice(0).map((client) => client.close()));
    },
    /** The SDK v2 client (speaks 2026-07-28, falls back to 2025) on a Streamable HTTP URL. */
    async modern(url: string, headers: Record<string, string> = {}): Promise<ClientV2> {
      const client = new ClientV2(info, { versionNegotiation: { mode: 'auto' } });
      await client.connect(new StreamableV2(new URL(url), { requestInit: { headers }, fetch: send }));
      return track(client);
    },
    /**
     * The SDK v1 client: a 2025-era Streamable HTTP session. `standaloneStream` resolves once the server answered
     * the client's standalone GET stream (opened after initialization): from then on, notifications the server
     * sends outside a request (such as `tools/list_changed`) reach the client.
     */
    async streamable(
      url: string,
      headers: Record<string, string> = {},
    ): Promise<{ client: ClientV1; transport: StreamableV1; standaloneStream: Promise<void> }> {
      let opened: () => void = () => {};
      const standaloneStream = new Promise<void>((resolve) => {
        opened = resolve;
      });
      const watching: Fetch = async (input, init) => {
        const res = await send(input, init);
        if ((init?.method ?? 'GET') === 'GET' && res.status === 200) opened();
        return res;
      };
      const client = new ClientV1(info);
      const transport = new StreamableV1(new URL(url), { requestInit: { headers }, fetch: watching });
      await client.connect(transport);
      return { client: track(client), transport, standaloneStream };
    },
    /** The SDK v1 client on the legacy HTTP+SSE transport. */
    async sse(url: string, headers: Record<string, string> = {}): Promise<ClientV1> {
      const client = new ClientV1(info);
      await client.connect(new SSEClientTransport(new URL(url), { requestInit: { headers }, fetch: send }));
      return track(client);
    },
  };
}

export function textOf(result: unknown): string {
  const content = (result as { content?: { type: string; text?: string }[] }).content ?? [];
  return content.map((block) => block.text ?? '').join('');
}

export async function callTool(client: AnyClient, name: string, args: Record<string, unknown>, signal?: AbortSignal) {
  return client instanceof ClientV2
    ? client.callTool({ name, arguments: args }, signal ? { signal } : undefined)
    : client.callTool({ name, arguments: args }, undefined, signal ? { signal } : undefined);
}

/** Calls a tool with a progress callback (the client then sends a progress token). */
export async function callWithProgress(
  client: AnyClient,
  name: string,
  args: Record<string, unknown>,
): Promise<{ text: string; progress: Progress[] }> {
  const progress: Progress[] = [];
  const onprogress = (p: Progress) => progress.push({ progress: p.progress, total: p.total });
  const result =
    client instanceof ClientV2
      ? await client.callTool({ name, arguments: args }, { onprogress })
      : await client.callTool({ name, arguments: args }, undefined, { onprogress });
  return { text: textOf(result), progress };
}

export async function toolNames(client: AnyClient): Promise<string[]> {
  const { tools } = await client.listTools();
  return tools.map((tool) => tool.name);
}

/** Counts the `notifications/tools/list_changed` the client hears from now on. */
export function toolListChanges(client: AnyClient): () => number {
  let heard = 0;
  if (client instanceof ClientV2) {
    client.setNotificationHandler('notifications/tools/list_changed', () => {
      heard++;
    });
  } else {
    client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
      heard++;
    });
  }
  return () => heard;
}
