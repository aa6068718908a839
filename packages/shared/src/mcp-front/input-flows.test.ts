import { Client, InMemoryTransport, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { createMcpHandler, Server } from '@modelcontextprotocol/server';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../logger.js';
import type { ClientChannel } from './client-channel.js';
import { InputFlows } from './input-flows.js';

const log = createLogger({ service: 'worker', level: 'silent' });

/**
 * A server whose tools/call runs as a flow: the "upstream" asks the client to sample (through the flow's
 * channel) and answers with what the client said. Clients of both eras drive it over an in-memory pair.
 */
function serverWith(flows: InputFlows, caller: () => string) {
  const server = new Server(
    { name: 'flows', version: '1' },
    { capabilities: { tools: {} }, requestState: { verify: flows.codec.verify } },
  );
  server.setRequestHandler('tools/list', async () => ({ tools: [] }));
  server.setRequestHandler(
    'tools/call',
    async (_request, rc) =>
      flows.round(rc, caller(), undefined, { sampling: {} }, async (channel: ClientChannel, signal) => {
        const first = await channel.ask('sampling/createMessage', { messages: [], maxTokens: 1 }, signal);
        const second = await channel.ask('roots/list', undefined, signal);
        return { content: [{ type: 'text', text: JSON.stringify({ first, second }) }] };
      }) as never,
  );
  return server;
}

const open: (Client | Server)[] = [];
afterEach(async () => {
  await Promise.allSettled(open.splice(0).map((x) => x.close()));
});

/**
 * A 2025 client talks to one server over an in-memory pair; a 2026-07-28 client to the SDK's stateless
 * handler (one server per request, as the worker serves them), called in-process through `fetch`.
 */
async function connect(makeServer: () => Server, modern: boolean) {
  const client = new Client(
    { name: 't', version: '1' },
    {
      capabilities: { sampling: {}, roots: {} },
      ...(modern ? { versionNegotiation: { mode: { pin: '2026-07-28' } } } : {}),
    },
  );
  client.setRequestHandler('sampling/createMessage', async () => ({
    role: 'assistant',
    model: 'm',
    content: { type: 'text', text: 'sampled' },
  }));
  client.setRequestHandler('roots/list', async () => ({ roots: [{ uri: 'file:///r' }] }));
  if (modern) {
    const handler = createMcpHandler(makeServer, { legacy: 'reject' });
    const fetch = (url: string | URL, init?: RequestInit) => handler.fetch(new Request(url, init));
    await client.connect(new StreamableHTTPClientTransport(new URL('http://in-process/mcp'), { fetch }));
    open.push(client);
    return client;
  }
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  const server = makeServer();
  await server.connect(serverSide);
  await client.connect(clientSide);
  open.push(client, server);
  return client;
}

describe('InputFlows', () => {
  for (const modern of [true, false]) {
    it(`completes a request that asks its client twice (${modern ? '2026-07-28 input_required rounds' : '2025 session, SDK shim'})`, async () => {
      const flows = new InputFlows({ log, roundTimeoutMs: 10_000, maxFlows: 10 });
      const client = await connect(() => serverWith(flows, () => 'caller-a'), modern);
      const result = await client.callTool({ name: 'ask', arguments: {} });
      const text = (result.content as { text: string }[])[0]?.text ?? '';
      expect(JSON.parse(text)).toEqual({
        first: { role: 'assistant', model: 'm', content: { type: 'text', text: 'sampled' } },
        second: { roots: [{ uri: 'file:///r' }] },
      });
      // The flow is gone once answered.
      expect(flows.size).toBe(0);
    });
  }

  it('a requestState minted for one caller is refused to another, and a forged one is refused', async () => {
    const flows = new InputFlows({ log, roundTimeoutMs: 10_000, maxFlows: 10 });
    let who = 'owner';
    const client = await connect(() => serverWith(flows, () => who), true);
    // Manual mode: take the first input_required round, then retry as someone else.
    const first = (await client.request({ method: 'tools/call', params: { name: 'ask', arguments: {} } }, {
      allowInputRequired: true,
    } as never)) as unknown as { resultType: string; requestState: string; inputRequests: Record<string, unknown> };
    expect(first.resultType).toBe('input_required');
    expect(Object.values(first.inputRequests)).toEqual([expect.objectContaining({ method: 'sampling/createMessage' })]);
    who = 'intruder';
    await expect(
      client.request(
        {
          method: 'tools/call',
          params: { name: 'ask', arguments: {}, requestState: first.requestState, inputResponses: {} },
        },
        { allowInputRequired: true } as never,
      ),
    ).rejects.toThrow(/Invalid or expired requestState/);
    who = 'owner';
    const forged = `${first.requestState.slice(0, -4)}AAAA`;
    await expect(
      client.request(
        { method: 'tools/call', params: { name: 'ask', arguments: {}, requestState: forged, inputResponses: {} } },
        { allowInputRequired: true } as never,
      ),
    ).rejects.toThrow(/Invalid or expired requestState/);
    flows.closeAll(new Error('test over'));
  });
});
