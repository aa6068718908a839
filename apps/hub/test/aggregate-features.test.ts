// Issue 12 item 8: the aggregated /mcp is a full MCP server. Through the whole stack (this hub, a real
// supervisor process, one real worker process per server): what server-everything asks its client reaches
// the calling client's own handlers in both eras, log messages reach a session that set a level, resources,
// templates, prompts and completions are merged and routed, prefix modes name tools, a hung server does not
// hang a merged list, and a key sees only its project's resources.
import type { ChildProcess } from 'node:child_process';
import { loadHubConfig } from '@mcp-hub/shared';
import { Client as ClientV2, StreamableHTTPClientTransport as StreamableV2 } from '@modelcontextprotocol/client';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as StreamableV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { callTool, textOf, toolNames } from '../../../test/mcp-clients.js';
import { EVERYTHING_ENTRY, fixture, startWatchedSupervisor, stopStack, waitFor } from '../../../test/processes.js';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

const TOKEN = 'aggregate-features-admin-token-0123456789';
const ADMIN = { authorization: `Bearer ${TOKEN}` };
const INFO = { name: 'aggregate-features-test', version: '1.0.0' };
const ALL = { sampling: {}, elicitation: { form: {} }, roots: { listChanged: true } };
const RESOURCES = fixture('resources-server.mjs');

type Era = '2025' | '2026';
type AnyClient = ClientV1 | ClientV2;

const t = testRedis();
const hubLogs = captureLogger('hub');
const processLines: Record<string, unknown>[] = [];
let hub: FastifyInstance;
let base: string;
let supervisor: ChildProcess;
const opened: AnyClient[] = [];
afterEach(async () => {
  await Promise.allSettled(opened.splice(0).map((c) => c.close()));
});

async function api(method: string, path: string, body?: unknown, headers: Record<string, string> = ADMIN) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: (text === '' ? undefined : JSON.parse(text)) as Record<string, unknown> };
}

async function running(id: string): Promise<void> {
  await waitFor(
    `${id} running with its tools`,
    async () => {
      const { json } = await api('GET', `/api/servers/${id}`);
      if ((json?.runtime as { status?: string } | undefined)?.status !== 'running') return null;
      const tools = await api('GET', `/api/servers/${id}/tools`);
      return (tools.json.tools as unknown[]).length > 0 ? true : null;
    },
    60_000,
    100,
  );
}

/** What a client answers: its own name in every answer, so a test can tell whose handler ran. */
function answers(name: string) {
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

/** A client of the aggregated /mcp with every client capability and handlers that answer with its name. */
async function connect(
  era: Era,
  name: string,
  headers: Record<string, string> = ADMIN,
  capabilities: Record<string, unknown> = ALL,
): Promise<AnyClient> {
  const url = new URL(`${base}/mcp`);
  const a = answers(name);
  if (era === '2025') {
    const client = new ClientV1(INFO, { capabilities });
    if ('sampling' in capabilities) client.setRequestHandler(CreateMessageRequestSchema, a.sampling);
    if ('elicitation' in capabilities) client.setRequestHandler(ElicitRequestSchema, a.elicitation);
    if ('roots' in capabilities) client.setRequestHandler(ListRootsRequestSchema, a.roots);
    await client.connect(new StreamableV1(url, { requestInit: { headers } }));
    opened.push(client);
    return client;
  }
  const client = new ClientV2(INFO, { capabilities, versionNegotiation: { mode: 'auto' } });
  if ('sampling' in capabilities) client.setRequestHandler('sampling/createMessage', a.sampling);
  if ('elicitation' in capabilities) client.setRequestHandler('elicitation/create', a.elicitation);
  if ('roots' in capabilities) client.setRequestHandler('roots/list', a.roots);
  await client.connect(new StreamableV2(url, { requestInit: { headers } }));
  expect(client.getProtocolEra()).toBe('modern');
  opened.push(client);
  return client;
}

/** Any MCP request, on either SDK (v1 needs a result schema; a passthrough one is enough here). */
async function rpc(client: AnyClient, method: string, params: Record<string, unknown> = {}) {
  if (client instanceof ClientV2) return (await client.request({ method, params } as never)) as Record<string, unknown>;
  const { z } = await import('zod');
  return (await client.request({ method, params } as never, z.looseObject({}) as never)) as Record<string, unknown>;
}

const resourceServer = (id: string, env: Record<string, string>, extra: Record<string, unknown> = {}) => ({
  id,
  transport: 'stdio',
  config: { command: process.execPath, args: [RESOURCES], env },
  ...extra,
});

beforeAll(async () => {
  supervisor = startWatchedSupervisor(redisUrl(), t.prefix, processLines, { MCP_WORKER_IDLE_TTL: '0' });
  hub = await buildHub({
    config: loadHubConfig({
      REDIS_URL: redisUrl(),
      KEY_PREFIX: t.prefix,
      HUB_PORT: '0',
      HUB_ADMIN_TOKEN: TOKEN,
      HUB_WAKE_TIMEOUT: '20s',
      // How long a merged list waits for a hung server before going without it (room for a real worker's list
      // on a loaded machine: 1 s left one out). gamma hangs only in the test of that deadline.
      HUB_AGGREGATE_LIST_TIMEOUT: '4s',
    }),
    log: hubLogs.log,
  });
  base = await hub.listen({ host: '127.0.0.1', port: 0 });
  expect((await api('POST', '/api/projects', { id: 'other', name: 'other' })).status).toBe(201);
  const servers = [
    // One upstream session (one child) per client: server-everything caches roots per session, and
    // concurrent sampling over stdio needs a session per client.
    {
      id: 'everything',
      transport: 'stdio',
      config: { command: process.execPath, args: [EVERYTHING_ENTRY, 'stdio'], sessionMode: 'per-client' },
    },
    resourceServer('alpha', { FIXTURE_NAME: 'alpha' }, { prefixMode: 'conditional' }),
    resourceServer('beta', { FIXTURE_NAME: 'beta' }, { prefixMode: 'never' }),
    resourceServer('gamma', { FIXTURE_NAME: 'gamma' }, { prefixMode: 'never' }),
    resourceServer('delta', { FIXTURE_NAME: 'delta' }, { project: 'other' }),
  ];
  for (const spec of servers) {
    const res = await api('POST', '/api/servers', spec);
    expect(res.status, JSON.stringify(res.json)).toBe(201);
  }
  await Promise.all(servers.map((s) => running(s.id)));
}, 120_000);

afterAll(async () => {
  await Promise.allSettled(opened.splice(0).map((c) => c.close()));
  await stopStack(supervisor, hub, t.prefix);
  await t.cleanup();
});

describe('server-to-client requests through the aggregated /mcp (server-everything, stdio)', () => {
  for (const era of ['2025', '2026'] as const) {
    describe(`a ${era} client`, () => {
      it('sees the tools that need a client, and answers sampling, elicitation and roots with its own handlers', async () => {
        const client = await connect(era, `client-${era}`);
        expect(await toolNames(client)).toEqual(
          expect.arrayContaining([
            'everything__trigger-sampling-request',
            'everything__trigger-elicitation-request',
            'everything__get-roots-list',
          ]),
        );
        const sampled = textOf(
          await callTool(client, 'everything__trigger-sampling-request', { prompt: 'hello', maxTokens: 5 }),
        );
        expect(sampled).toContain(`sampled by client-${era}`);
        expect(sampled).toContain(`model-of-client-${era}`);
        const elicited = textOf(await callTool(client, 'everything__trigger-elicitation-request', {}));
        expect(elicited).toContain('accept');
        expect(elicited).toContain(`client-${era}`);
        const roots = textOf(await callTool(client, 'everything__get-roots-list', {}));
        expect(roots).toContain(`file:///home/client-${era}`);
      });
    });
  }

  it('a client without sampling is never asked: the call fails and its handlers stay untouched', async () => {
    const client = await connect('2025', 'plain', ADMIN, { elicitation: { form: {} } });
    const result = (await callTool(client, 'everything__trigger-sampling-request', { prompt: 'x', maxTokens: 5 }).catch(
      (error: Error) => ({ isError: true, content: [{ type: 'text', text: error.message }] }),
    )) as { isError?: boolean };
    expect(result.isError).toBe(true);
  });

  it('a 2025 session that set a log level hears toggle-simulated-logging’s messages; another session does not', async () => {
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
    expect(textOf(await callTool(quiet, 'everything__echo', { message: 'quiet' }))).toBe('Echo: quiet');
    expect(textOf(await callTool(listener, 'everything__toggle-simulated-logging', {}))).toContain('Started');
    try {
      await waitFor('a log message to reach the session that asked', () => heard.length > 0, 15_000);
    } finally {
      await callTool(listener, 'everything__toggle-simulated-logging', {});
    }
    expect(heard[0]?.level).toMatch(/^(debug|info|notice|warning|error|critical|alert|emergency)$/);
    expect(overheard).toEqual([]);
  });

  it('clients sampling at the same moment, of both eras, each get the answer of their own handler', async () => {
    const names = ['alice', 'bob', 'carol', 'dave'];
    const clients = await Promise.all([
      connect('2025', 'alice'),
      connect('2026', 'bob'),
      connect('2025', 'carol'),
      connect('2026', 'dave'),
    ]);
    const results = await Promise.all(
      clients.map((c) => callTool(c, 'everything__trigger-sampling-request', { prompt: 'who?', maxTokens: 5 })),
    );
    results.forEach((result, i) => {
      const text = textOf(result);
      expect(text).toContain(`sampled by ${names[i]}`);
      for (const other of names.filter((_, j) => j !== i)) expect(text).not.toContain(`sampled by ${other}`);
    });
  });
});

describe('resources, prompts and completions through the aggregated /mcp', () => {
  for (const era of ['2025', '2026'] as const) {
    it(`merges resources under mcphub:// URIs and reads them back from their server (${era})`, async () => {
      const client = await connect(era, `reader-${era}`);
      const { resources } = (await rpc(client, 'resources/list')) as { resources: { uri: string }[] };
      const uris = resources.map((r) => r.uri);
      const alpha = `mcphub://alpha/${encodeURIComponent('note://alpha/a b?x=1')}`;
      expect(uris).toContain(alpha);
      expect(uris).toContain(`mcphub://beta/${encodeURIComponent('note://beta/a b?x=1')}`);
      // The admin sees every project's servers (keys are checked below).
      expect(uris).toContain(`mcphub://delta/${encodeURIComponent('note://delta/a b?x=1')}`);
      const read = (await rpc(client, 'resources/read', { uri: alpha })) as {
        contents: { uri: string; text: string }[];
      };
      expect(read.contents[0]).toEqual(
        expect.objectContaining({ uri: alpha, text: 'alpha read note://alpha/a b?x=1' }),
      );
      const { resourceTemplates } = (await rpc(client, 'resources/templates/list')) as {
        resourceTemplates: { uriTemplate: string }[];
      };
      expect(resourceTemplates.map((r) => r.uriTemplate)).toContain(
        `mcphub://alpha/${encodeURIComponent('note://alpha/')}{key}`,
      );
    });
  }

  it('answers an unknown or malformed aggregated URI with an error, not a read elsewhere', async () => {
    const client = await connect('2025', 'bad-reader');
    await expect(rpc(client, 'resources/read', { uri: 'note://alpha/a' })).rejects.toThrow(/unknown resource/);
    await expect(rpc(client, 'resources/read', { uri: 'mcphub://nope/x' })).rejects.toThrow(/unknown resource/);
    await expect(rpc(client, 'resources/read', { uri: 'mcphub://alpha/%E0%A4%A' })).rejects.toThrow(/unknown resource/);
  });

  it('lists prompts by prefix mode, gets one from its server, and routes completions by the prompt', async () => {
    const client = await connect('2026', 'prompter');
    const { prompts } = (await rpc(client, 'prompts/list')) as { prompts: { name: string }[] };
    const names = prompts.map((p) => p.name);
    // alpha is conditional and greet clashes with beta's: prefixed; beta and gamma are `never`: the bare name.
    expect(names).toEqual(expect.arrayContaining(['alpha__greet', 'greet']));
    expect(names.filter((n) => n === 'greet')).toHaveLength(1);
    const got = (await rpc(client, 'prompts/get', { name: 'alpha__greet', arguments: { who: 'ann' } })) as {
      messages: { content: { text: string } }[];
    };
    expect(got.messages[0]?.content.text).toBe('alpha greets ann');
    // Two `never` servers share the bare name: getting it is ambiguous, the prefixed alias reaches each.
    await expect(rpc(client, 'prompts/get', { name: 'greet', arguments: { who: 'bo' } })).rejects.toThrow(
      /ambiguous.*beta.*gamma/,
    );
    const aliased = (await rpc(client, 'prompts/get', { name: 'beta__greet', arguments: { who: 'bo' } })) as {
      messages: { content: { text: string } }[];
    };
    expect(aliased.messages[0]?.content.text).toBe('beta greets bo');
    const completed = (await rpc(client, 'completion/complete', {
      ref: { type: 'ref/prompt', name: 'alpha__greet' },
      argument: { name: 'who', value: 'x' },
    })) as { completion: { values: string[] } };
    expect(completed.completion.values).toEqual(['alpha-x']);
  });

  it('a hung server does not hang the merged list: it comes back without it, and the skip is logged', async () => {
    const client = await connect('2025', 'patient');
    const servers = async () => {
      const { resources } = (await rpc(client, 'resources/list')) as { resources: { uri: string }[] };
      return resources.map((r) => new URL(r.uri).host);
    };
    expect(await servers()).toContain('gamma');
    await callTool(client, 'only-gamma', { hangLists: true });
    try {
      const listed = await servers();
      expect(listed).toEqual(expect.arrayContaining(['alpha', 'beta']));
      expect(listed).not.toContain('gamma');
      const { prompts } = (await rpc(client, 'prompts/list')) as { prompts: { description?: string }[] };
      expect(prompts.map((p) => p.description)).toContain('greeting of alpha');
    } finally {
      await callTool(client, 'only-gamma', { hangLists: false });
    }
    for (const method of ['prompts/list', 'resources/list']) {
      expect(hubLogs.lines).toContainEqual(
        expect.objectContaining({ event: 'mcp.aggregate.server_skipped', server: 'gamma', method }),
      );
    }
  });
});

describe('prefix modes on the aggregated tools', () => {
  it('always prefixes, conditional only on a clash, never keeps the bare name and answers a clash with an ambiguity error', async () => {
    const client = await connect('2025', 'namer');
    const names = await toolNames(client);
    expect(names).toEqual(expect.arrayContaining(['everything__echo', 'alpha__echo', 'only-alpha', 'echo']));
    expect(names).not.toContain('alpha__only-alpha');
    expect(names.filter((n) => n === 'echo')).toHaveLength(1);
    expect(textOf(await callTool(client, 'only-alpha', {}))).toBe('alpha: only-alpha {}');
    // The prefixed forms stay aliases of every tool.
    expect(textOf(await callTool(client, 'beta__echo', { message: 'b' }))).toBe('beta: echo {"message":"b"}');
    await expect(callTool(client, 'echo', { message: 'which?' })).rejects.toThrow(/ambiguous.*beta.*gamma/);
  });
});

describe('projects on the aggregated /mcp', () => {
  it('a key sees only its project’s resources and cannot read another project’s', async () => {
    const key = await api('POST', '/api/projects/other/keys', { name: 'reader', role: 'developer' });
    expect(key.status).toBe(201);
    const headers = { authorization: `Bearer ${String(key.json.key)}` };
    const client = await connect('2025', 'tenant', headers);
    const { resources } = (await rpc(client, 'resources/list')) as { resources: { uri: string }[] };
    expect(resources.map((r) => r.uri)).toEqual([`mcphub://delta/${encodeURIComponent('note://delta/a b?x=1')}`]);
    await expect(
      rpc(client, 'resources/read', { uri: `mcphub://alpha/${encodeURIComponent('note://alpha/a b?x=1')}` }),
    ).rejects.toThrow(/unknown resource/);
  });
});
