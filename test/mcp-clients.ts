import { Client as ClientV2, StreamableHTTPClientTransport as StreamableV2 } from '@modelcontextprotocol/client';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport as StreamableV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
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
 * The SDK clients (v1 and v2) dispatch a notification one microtask late but settle a response at once: when a
 * server's last progress notification and its result reach the client in one read (one SSE chunk), the client
 * drops that progress. `OrderedClient` (`@mcp-hub/shared/mcp-front`) fixes it for the hub and the worker; the
 * test clients get the same ordering here, so that a test sees every event the hub and the worker deliver.
 */
function responsesAfterNotifications<T extends object>(transport: T): T {
  type OnMessage = (message: unknown, extra?: unknown) => void;
  let handler: OnMessage | undefined;
  const ordered: OnMessage = (message, extra) => {
    const isResponse = typeof message === 'object' && message !== null && 'id' in message && !('method' in message);
    if (isResponse) queueMicrotask(() => handler?.(message, extra));
    else handler?.(message, extra);
  };
  Object.defineProperty(transport, 'onmessage', {
    configurable: true,
    get: () => (handler ? ordered : undefined),
    set: (value: OnMessage | undefined) => {
      handler = value;
    },
  });
  return transport;
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
      await client.connect(
        responsesAfterNotifications(new StreamableV2(new URL(url), { requestInit: { headers }, fetch: send })),
      );
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
      const transport = responsesAfterNotifications(
        new StreamableV1(new URL(url), { requestInit: { headers }, fetch: watching }),
      );
      await client.connect(transport);
      return { client: track(client), transport, standaloneStream };
    },
    /** The SDK v1 client on the legacy HTTP+SSE transport. */
    async sse(url: string, headers: Record<string, string> = {}): Promise<ClientV1> {
      const client = new ClientV1(info);
      await client.connect(
        responsesAfterNotifications(new SSEClientTransport(new URL(url), { requestInit: { headers }, fetch: send })),
      );
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

/** Every progress event of a `trigger-long-running-operation` of `steps` steps, in order: 1..steps of steps. */
export function allProgress(steps: number): Progress[] {
  return Array.from({ length: steps }, (_, i) => ({ progress: i + 1, total: steps }));
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

/** Everything a client can be asked: what the worker passes on from a server (issue 12). */
export const ALL_CLIENT_CAPABILITIES = { sampling: {}, elicitation: { form: {} }, roots: { listChanged: true } };

/** What a capable client answers: its own name in every answer, so a test can tell whose handler ran. */
function answersOf(name: string) {
  return {
    sampling: () => ({
      role: 'assistant' as const,
      content: { type: 'text' as const, text: `sampled by ${name}` },
      model: `model-of-${name}`,
      stopReason: 'endTurn',
    }),
    elicitation: () => ({ action: 'accept' as const, content: { name, color: 'red', age: 7, pets: ['cats'] } }),
    roots: () => ({ roots: [{ uri: `file:///home/${name}`, name: `root of ${name}` }] }),
  };
}

/**
 * A client that declares `capabilities` and answers sampling, elicitation and roots with handlers naming
 * `name`: the SDK v1 client in a 2025 session (`2025`), or the SDK v2 client on 2026-07-28 (`2026`).
 */
export async function capableClient(
  era: '2025' | '2026',
  url: string | URL,
  headers: Record<string, string>,
  name: string,
  capabilities: Record<string, unknown> = ALL_CLIENT_CAPABILITIES,
): Promise<AnyClient> {
  const a = answersOf(name);
  if (era === '2025') {
    const client = new ClientV1({ name, version: '1.0.0' }, { capabilities });
    if ('sampling' in capabilities) client.setRequestHandler(CreateMessageRequestSchema, a.sampling);
    if ('elicitation' in capabilities) client.setRequestHandler(ElicitRequestSchema, a.elicitation);
    if ('roots' in capabilities) client.setRequestHandler(ListRootsRequestSchema, a.roots);
    await client.connect(new StreamableV1(new URL(url), { requestInit: { headers } }));
    return client;
  }
  const client = new ClientV2({ name, version: '1.0.0' }, { capabilities, versionNegotiation: { mode: 'auto' } });
  if ('sampling' in capabilities) client.setRequestHandler('sampling/createMessage', a.sampling);
  if ('elicitation' in capabilities) client.setRequestHandler('elicitation/create', a.elicitation);
  if ('roots' in capabilities) client.setRequestHandler('roots/list', a.roots);
  await client.connect(responsesAfterNotifications(new StreamableV2(new URL(url), { requestInit: { headers } })));
  if (client.getProtocolEra() !== 'modern') throw new Error(`${url} did not negotiate 2026-07-28`);
  return client;
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
