// Issue 12 through the whole stack: a hub (in this process), a supervisor process and its worker process
// running server-everything over stdio with one upstream session per client. What the server asks its client
// (sampling, elicitation, roots) reaches the calling client's own handlers through `/mcp/<id>` in both eras,
// and its log messages reach the sessions that asked, with the admin token and with a project's API key.
import type { ChildProcess } from 'node:child_process';
import { loadHubConfig } from '@mcp-hub/shared';
import type { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AnyClient, callTool, capableClient, textOf, toolNames } from '../../../test/mcp-clients.js';
import {
  EVERYTHING_ENTRY,
  killByKeyPrefix,
  startWatchedSupervisor,
  stopProcess,
  waitFor,
} from '../../../test/processes.js';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

const TOKEN = 'client-features-admin-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };

const t = testRedis();
const hubLogs = captureLogger('hub');
const processLines: Record<string, unknown>[] = [];
let hub: FastifyInstance;
let base: string;
let supervisor: ChildProcess;
let developerKey: string;
const opened: AnyClient[] = [];
afterEach(async () => {
  await Promise.allSettled(opened.splice(0).map((c) => c.close()));
});

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...AUTH, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, json: (text === '' ? {} : JSON.parse(text)) as Record<string, unknown> };
}

async function connect(era: '2025' | '2026', name: string, headers: Record<string, string> = AUTH) {
  const client = await capableClient(era, `${base}/mcp/everything`, headers, name);
  opened.push(client);
  return client;
}

beforeAll(async () => {
  supervisor = startWatchedSupervisor(redisUrl(), t.prefix, processLines, {
    MCP_HEALTH_INTERVAL: '500ms',
    MCP_WORKER_IDLE_TTL: '0',
  });
  hub = await buildHub({
    config: loadHubConfig({ REDIS_URL: redisUrl(), KEY_PREFIX: t.prefix, HUB_PORT: '0', HUB_ADMIN_TOKEN: TOKEN }),
    log: hubLogs.log,
  });
  base = await hub.listen({ host: '127.0.0.1', port: 0 });
  expect((await api('POST', '/api/projects', { id: 'a', name: 'A' })).status).toBe(201);
  const created = await api('POST', '/api/servers', {
    id: 'everything',
    project: 'a',
    transport: 'stdio',
    config: { command: process.execPath, args: [EVERYTHING_ENTRY, 'stdio'], sessionMode: 'per-client' },
  });
  expect(created.status, created.text).toBe(201);
  const key = await api('POST', '/api/projects/a/keys', { name: 'dev', role: 'developer' });
  expect(key.status, key.text).toBe(201);
  developerKey = key.json.key as string;
  await waitFor(
    'the worker to run',
    async () =>
      ((await api('GET', '/api/servers/everything')).json.runtime as { status?: string })?.status === 'running',
    30_000,
  );
}, 60_000);

afterAll(async () => {
  await Promise.allSettled(opened.splice(0).map((c) => c.close()));
  if (supervisor) await stopProcess(supervisor);
  await hub?.close();
  killByKeyPrefix(t.prefix);
  await t.cleanup();
});

describe('server-to-client requests through /mcp/<id> (stdio, per-client sessions)', () => {
  for (const era of ['2025', '2026'] as const) {
    it(`a ${era} client: the tools that ask the client are listed, and its own handlers answer them`, async () => {
      const client = await connect(era, `client-${era}`);
      expect(await toolNames(client)).toEqual(
        expect.arrayContaining(['trigger-sampling-request', 'trigger-elicitation-request', 'get-roots-list']),
      );
      const sampled = textOf(await callTool(client, 'trigger-sampling-request', { prompt: 'hi', maxTokens: 5 }));
      expect(sampled).toContain(`sampled by client-${era}`);
      const elicited = textOf(await callTool(client, 'trigger-elicitation-request', {}));
      expect(elicited).toContain(`client-${era}`);
      const roots = textOf(await callTool(client, 'get-roots-list', {}));
      expect(roots).toContain(`file:///home/client-${era}`);
    });
  }

  it('with an API key too (the worker sees the key as the caller)', async () => {
    const client = await connect('2026', 'keyed', { authorization: `Bearer ${developerKey}` });
    const sampled = textOf(await callTool(client, 'trigger-sampling-request', { prompt: 'hi', maxTokens: 5 }));
    expect(sampled).toContain('sampled by keyed');
  });

  it('clients of both eras sampling at the same moment each get the answer of their own handler', async () => {
    const names = ['alice', 'bob', 'carol', 'dave'];
    const clients = await Promise.all(names.map((name, i) => connect(i % 2 === 0 ? '2025' : '2026', name)));
    const results = await Promise.all(
      clients.map((client) => callTool(client, 'trigger-sampling-request', { prompt: 'who?', maxTokens: 5 })),
    );
    results.forEach((result, i) => {
      const text = textOf(result);
      expect(text).toContain(`sampled by ${names[i]}`);
      for (const other of names.filter((_, j) => j !== i)) expect(text).not.toContain(`sampled by ${other}`);
    });
  });

  it('a 2025 session that set a log level hears the server’s log messages', async () => {
    const client = (await connect('2025', 'listener')) as ClientV1;
    const heard: unknown[] = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
      heard.push(n.params);
    });
    await client.setLoggingLevel('debug');
    expect(textOf(await callTool(client, 'toggle-simulated-logging', {}))).toContain('Started');
    try {
      await waitFor('a log message through the hub', () => heard.length > 0, 15_000);
    } finally {
      await callTool(client, 'toggle-simulated-logging', {});
    }
    expect(heard[0]).toMatchObject({ level: expect.any(String) });
  });
});
