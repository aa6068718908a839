// Issue 12: what a server asks its client (sampling, elicitation, roots) and what it tells it (log messages)
// passes through the worker to the downstream client whose call caused it, in both protocol eras, with
// server-everything over stdio behind the worker.
import { type Client as ClientV2, LOG_LEVEL_META_KEY } from '@modelcontextprotocol/client';
import type { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import {
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import getPort from 'get-port';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AnyClient, callTool, capableClient, textOf, toolNames } from '../../../test/mcp-clients.js';
import { captureLogger, testRedis } from '../../../test/support.js';
import type { Worker } from '../src/index.js';
import { EVERYTHING, registerServer, startTestWorker, WORKER_AUTH, waitFor } from './helpers.js';

type Era = '2025' | '2026';

/** server-everything over stdio behind an in-process worker, in one session mode. */
function everythingWorker(mode: 'shared' | 'per-client') {
  const t = testRedis();
  const captured = captureLogger('worker');
  const state: { worker?: Worker; url?: URL } = {};
  const opened: AnyClient[] = [];

  async function connect(era: Era, name: string, capabilities?: Record<string, unknown>): Promise<AnyClient> {
    const client = await capableClient(era, state.url as URL, { ...WORKER_AUTH }, name, capabilities);
    opened.push(client);
    return client;
  }

  beforeAll(async () => {
    await registerServer(t.redis, t.keys, {
      id: 'everything',
      transport: 'stdio',
      config: { command: process.execPath, args: [EVERYTHING, 'stdio'], sessionMode: mode },
    });
    const port = await getPort();
    state.url = new URL(`http://127.0.0.1:${port}/mcp`);
    state.worker = await startTestWorker({ serverId: 'everything', prefix: t.prefix, port, log: captured.log });
    await state.worker.ready;
  });
  afterEach(async () => {
    await Promise.allSettled(opened.splice(0).map((c) => c.close()));
  });
  afterAll(async () => {
    await state.worker?.close();
    await t.cleanup();
  });
  return { connect, captured, state };
}

describe('server-to-client requests through a shared upstream session (server-everything, stdio)', () => {
  const { connect, captured } = everythingWorker('shared');

  for (const era of ['2025', '2026'] as const) {
    describe(`a ${era} client`, () => {
      it('sees the tools that need a client (the worker declares sampling, elicitation and roots upstream)', async () => {
        const client = await connect(era, 'lister');
        expect(await toolNames(client)).toEqual(
          expect.arrayContaining(['trigger-sampling-request', 'trigger-elicitation-request', 'get-roots-list']),
        );
      });

      it('answers the upstream’s sampling request with its own handler', async () => {
        const client = await connect(era, `sampler-${era}`);
        const text = textOf(await callTool(client, 'trigger-sampling-request', { prompt: 'hello', maxTokens: 5 }));
        expect(text).toContain(`sampled by sampler-${era}`);
        expect(text).toContain(`model-of-sampler-${era}`);
      });

      it('answers the upstream’s elicitation with its own handler', async () => {
        const client = await connect(era, `elicited-${era}`);
        const text = textOf(await callTool(client, 'trigger-elicitation-request', {}));
        expect(text).toContain('accept');
        expect(text).toContain(`elicited-${era}`);
      });

      it('a client without sampling is never asked: the upstream gets an MCP error and the call fails', async () => {
        const client = await connect(era, `plain-${era}`, { elicitation: { form: {} } });
        const result = (await callTool(client, 'trigger-sampling-request', { prompt: 'x', maxTokens: 5 }).catch(
          (error: Error) => ({ isError: true, content: [{ type: 'text', text: error.message }] }),
        )) as { isError?: boolean };
        expect(result.isError).toBe(true);
        expect(captured.lines).toContainEqual(
          expect.objectContaining({
            event: 'mcp.client_request.refused',
            method: 'sampling/createMessage',
            reason: 'capability_missing',
          }),
        );
      });
    });
  }

  it('a 2026-07-28 request that names a log level hears the upstream’s log messages on its own stream', async () => {
    const client = (await connect('2026', 'modern-listener')) as ClientV2;
    const heard: unknown[] = [];
    client.setNotificationHandler('notifications/message', (n) => {
      heard.push(n.params);
    });
    // The tool sends one log message at once, while the call runs; the request's level lets it through.
    const started = await client.callTool({
      name: 'toggle-simulated-logging',
      arguments: {},
      _meta: { [LOG_LEVEL_META_KEY]: 'debug' },
    });
    try {
      expect(textOf(started)).toContain('Started');
      await waitFor('a log message on the request’s stream', () => heard.length > 0, 15_000);
    } finally {
      await callTool(client, 'toggle-simulated-logging', {});
    }
    expect(heard[0]).toMatchObject({ level: expect.any(String) });
  });

  it('a 2025 session subscribed to a resource hears its updates; a session that did not, does not', async () => {
    const subscriber = (await connect('2025', 'subscriber')) as ClientV1;
    const bystander = (await connect('2025', 'bystander')) as ClientV1;
    const heard: string[] = [];
    const overheard: string[] = [];
    subscriber.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
      heard.push(n.params.uri);
    });
    bystander.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
      overheard.push(n.params.uri);
    });
    const uri = 'demo://resource/dynamic/text/1';
    await subscriber.subscribeResource({ uri });
    // The server sends an update for each subscribed URI at once, then every 5 s.
    expect(textOf(await callTool(subscriber, 'toggle-subscriber-updates', {}))).toContain('Started');
    try {
      await waitFor('the subscribed session to hear the update', () => heard.includes(uri), 15_000);
    } finally {
      await callTool(subscriber, 'toggle-subscriber-updates', {});
    }
    expect(overheard).toEqual([]);
    await subscriber.unsubscribeResource({ uri });
    expect(captured.lines.filter((l) => l.event === 'mcp.notify_failed')).toEqual([]);
  });

  it('a 2025 session that set a log level gets the upstream’s log messages at or above it, and only it', async () => {
    const listener = (await connect('2025', 'listener')) as ClientV1;
    const quiet = (await connect('2025', 'quiet')) as ClientV1;
    const heard: { level: string }[] = [];
    const overheard: unknown[] = [];
    listener.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
      heard.push(n.params as { level: string });
    });
    quiet.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
      overheard.push(n.params);
    });
    await listener.setLoggingLevel('debug');
    // The tool sends one message at once (random level), then one every 5 s; at `debug` every one passes.
    expect(textOf(await callTool(listener, 'toggle-simulated-logging', {}))).toContain('Started');
    try {
      await waitFor('a log message to reach the session that asked', () => heard.length > 0, 15_000);
    } finally {
      await callTool(listener, 'toggle-simulated-logging', {});
    }
    expect(heard[0]?.level).toMatch(/^(debug|info|notice|warning|error|critical|alert|emergency)$/);
    expect(overheard).toEqual([]);
  });
});

describe('server-to-client requests with one upstream session per client (sessionMode: per-client)', () => {
  const { connect, captured } = everythingWorker('per-client');

  it('each client, of either era, sees its own roots (the server caches roots per session)', async () => {
    for (const era of ['2025', '2026'] as const) {
      const client = await connect(era, `rooted-${era}`);
      const text = textOf(await callTool(client, 'get-roots-list', {}));
      expect(text).toContain(`file:///home/rooted-${era}`);
      expect(text).not.toContain(era === '2025' ? 'rooted-2026' : 'rooted-2025');
    }
  });

  it('two clients sampling at the same moment each get the answer of their own handler', async () => {
    const clients = await Promise.all([
      connect('2025', 'alice'),
      connect('2026', 'bob'),
      connect('2025', 'carol'),
      connect('2026', 'dave'),
    ]);
    const texts = await Promise.all(
      clients.map((client) => callTool(client, 'trigger-sampling-request', { prompt: 'who?', maxTokens: 5 })),
    );
    const names = ['alice', 'bob', 'carol', 'dave'];
    texts.forEach((result, i) => {
      const text = textOf(result);
      expect(text).toContain(`sampled by ${names[i]}`);
      for (const other of names.filter((_, j) => j !== i)) expect(text).not.toContain(`sampled by ${other}`);
    });
    // One upstream session per client: the 2025 sessions' own, and one per principal for 2026 requests.
    expect(captured.lines.filter((l) => l.event === 'upstream.client_session.open').length).toBeGreaterThanOrEqual(3);
  });
});
