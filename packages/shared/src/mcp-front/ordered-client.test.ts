import { Client, type JSONRPCMessage, type Transport } from '@modelcontextprotocol/client';
import { describe, expect, it } from 'vitest';
import { OrderedClient } from './ordered-client.js';

/**
 * A server end that answers a tools/call with its progress notifications, the last one in the same read as the
 * result, as a stdio client meets them when the server's last progress line and its result line share one chunk.
 */
class OneReadServer implements Transport {
  onmessage?: Transport['onmessage'];
  onclose?: () => void;
  onerror?: (error: Error) => void;

  constructor(private readonly steps: number) {}

  async start(): Promise<void> {}

  async close(): Promise<void> {
    this.onclose?.();
  }

  async send(message: JSONRPCMessage): Promise<void> {
    if (!('method' in message) || !('id' in message)) return;
    const params = (message.params ?? {}) as { protocolVersion?: string; _meta?: { progressToken?: unknown } };
    if (message.method === 'initialize') {
      const result = {
        protocolVersion: params.protocolVersion,
        capabilities: { tools: {} },
        serverInfo: { name: 's', version: '1' },
      };
      await this.read([{ jsonrpc: '2.0', id: message.id, result }]);
    } else if (message.method === 'tools/call') {
      const progress = (step: number) =>
        ({
          jsonrpc: '2.0',
          method: 'notifications/progress',
          params: { progressToken: params._meta?.progressToken, progress: step, total: this.steps },
        }) as JSONRPCMessage;
      for (let step = 1; step < this.steps; step++) await this.read([progress(step)]);
      const result = { content: [{ type: 'text', text: 'done' }] };
      await this.read([progress(this.steps), { jsonrpc: '2.0', id: message.id, result }]);
    }
  }

  /** One read of the client's side: its messages handed on in one synchronous loop, like a stdio ReadBuffer. */
  private read(messages: JSONRPCMessage[]): Promise<void> {
    return new Promise((resolve) =>
      setImmediate(() => {
        for (const m of messages) this.onmessage?.(m);
        resolve();
      }),
    );
  }
}

async function progressSeen(client: Client, steps: number): Promise<number[]> {
  await client.connect(new OneReadServer(steps));
  const seen: number[] = [];
  const result = await client.callTool(
    { name: 't', arguments: {} },
    { onprogress: (p: { progress: number }) => seen.push(p.progress) },
  );
  expect(result.content).toEqual([{ type: 'text', text: 'done' }]);
  await client.close();
  return seen;
}

describe('OrderedClient', () => {
  it('hands on every progress notification that came before the result in the same read, in order', async () => {
    const errors: Error[] = [];
    const client = new OrderedClient({ name: 't', version: '1' });
    client.onerror = (error) => errors.push(error);
    expect(await progressSeen(client, 3)).toEqual([1, 2, 3]);
    expect(errors).toEqual([]);
  });

  it('is still needed: the SDK client drops the last progress that shares a read with its result', async () => {
    // When this fails the SDK has fixed the race, and OrderedClient can go.
    const errors: Error[] = [];
    const client = new Client({ name: 't', version: '1' });
    client.onerror = (error) => errors.push(error);
    expect(await progressSeen(client, 3)).toEqual([1, 2]);
    expect(errors.map((e) => e.message)).toEqual([
      expect.stringContaining('progress notification for an unknown token'),
    ]);
  });
});
