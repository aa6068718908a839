/**
 * The bridge (src/mcp-bridge.ts) in-process: SDK clients over the SDK's in-memory transport, each linked to a
 * server the bridge's factory made, in front of real stdio upstreams (the echo fixture, server-everything,
 * server-memory). How each era reaches those servers over HTTP is the MCP front's (packages/shared/test/
 * mcp-front-eras.test.ts); mcp-endpoints.test.ts keeps a smoke set through a whole worker.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppError, ServerSpecSchema, type ToolInput } from '@mcp-hub/shared';
import { InputFlows, type McpServerContext } from '@mcp-hub/shared/mcp-front';
import { Client, InMemoryTransport } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  expectClientsKeptApart,
  expectSlowCallCancelled,
  FIXTURE_STEP_MS,
  fixtureEventCounter,
} from '../../../test/echo-fixture.js';
import { callTool, callWithProgress, textOf, toolNames } from '../../../test/mcp-clients.js';
import { captureLogger } from '../../../test/support.js';
import { CallRunner } from '../src/call-runner.js';
import type { WorkerGate } from '../src/http-server.js';
import { createBridgeServerFactory } from '../src/mcp-bridge.js';
import { createStdioUpstream } from '../src/upstream/stdio-upstream.js';
import type { Upstream } from '../src/upstream/upstream.js';
import { UpstreamLinks } from '../src/upstream-links.js';
import { EVERYTHING, FIXTURES, waitFor } from './helpers.js';

const MEMORY = fileURLToPath(
  new URL('../../../node_modules/@modelcontextprotocol/server-memory/dist/index.js', import.meta.url),
);
const CLIENT_INFO = { name: 'mcp-bridge-test', version: '1.0.0' };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Bridge {
  upstream: Upstream;
  /** Makes a server as the front would for `ctx`, and connects a client to it in memory. */
  connect(ctx?: McpServerContext, timeoutMs?: number): Promise<Client>;
  logs: ReturnType<typeof captureLogger>;
}

const opened: (Client | Upstream)[] = [];
afterAll(async () => {
  await Promise.allSettled(opened.splice(0).map((part) => part.close()));
});

/**
 * A connected stdio upstream and the bridge in front of it. The gate admits the tools the upstream listed (the
 * worker's own gate adds its state checks; the bridge only asks it).
 */
async function bridgeTo(id: string, args: string[], env: Record<string, string> = {}): Promise<Bridge> {
  const logs = captureLogger('worker');
  const spec = ServerSpecSchema.parse({
    id,
    name: id,
    namespace: id,
    transport: 'stdio',
    config: { command: process.execPath, args, env },
    rev: 1,
    createdAt: '',
    updatedAt: '',
  });
  if (spec.transport !== 'stdio') throw new Error('a stdio spec was expected');
  const upstream = createStdioUpstream({ spec, log: logs.log, connectTimeoutMs: 10_000, maxMessageBytes: 4 << 20 });
  opened.push(upstream);
  await upstream.connect();
  const tools: ToolInput[] = await upstream.listTools();
  const gate: WorkerGate = {
    health: () => {
      throw new Error('the bridge never asks for health');
    },
    tools: () => tools,
    admit(tool) {
      if (!tools.some((t) => t.name === tool)) throw new AppError('tool_not_found', `no tool "${tool}"`);
    },
  };
  return {
    upstream,
    logs,
    async connect(ctx = { era: 'legacy' }, timeoutMs = 10_000) {
      const runner = new CallRunner({ upstream, log: logs.log, timeoutMs });
      // One shared upstream session, as a worker runs by default (per-client sessions: client-features.test.ts).
      const links = new UpstreamLinks({
        mode: 'shared',
        primary: upstream,
        create: () => {
          throw new Error('a shared bridge opens no session per client');
        },
        log: logs.log,
        requestTimeoutMs: timeoutMs,
        max: 1,
        idleMs: 60_000,
        onResourceUpdated: () => {},
      });
      const flows = new InputFlows({ log: logs.log, roundTimeoutMs: timeoutMs, maxFlows: 100 });
      const factory = createBridgeServerFactory({
        serverInfo: { name: id, version: '0.1.0' },
        runner,
        gate,
        log: logs.log,
        requestTimeoutMs: timeoutMs,
        links,
        flows,
      });
      const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
      await factory(ctx).connect(serverSide);
      const client = new Client(CLIENT_INFO);
      await client.connect(clientSide);
      opened.unshift(client);
      return client;
    },
  };
}

describe('the bridge in front of the echo fixture', () => {
  const eventsFile = join(tmpdir(), `mcp-bridge-${process.pid}-${Date.now()}.jsonl`);
  let echo: Bridge;
  const fixtureEvents = fixtureEventCounter(eventsFile);

  beforeAll(async () => {
    echo = await bridgeTo('fixture', [FIXTURES.echo], { FIXTURE_EVENTS_FILE: eventsFile });
  });
  afterAll(() => rmSync(eventsFile, { force: true }));

  it('lists the upstream tools (tools only) and forwards a call, with its progress to the requesting client', async () => {
    const client = await echo.connect();
    expect(client.getServerCapabilities()).toEqual({ tools: { listChanged: true } });
    expect(await toolNames(client)).toEqual(
      expect.arrayContaining(['echo', 'slow', 'progress', 'tool-error', 'rpc-error']),
    );
    expect(textOf(await callTool(client, 'echo', { message: 'bridged' }))).toBe('bridged');
    const run = await callWithProgress(client, 'progress', { steps: 3, intervalMs: FIXTURE_STEP_MS });
    expect(run.text).toBe('done in 3 steps');
    // The SDK may drop the last notification that races the result: at least the first ones arrive.
    expect(run.progress.length).toBeGreaterThanOrEqual(2);
    expect(run.progress[0]).toEqual({ progress: 1, total: 3 });
  });

  it('keeps two clients of one upstream apart: each gets its own results and progress', async () => {
    const [a, b] = await Promise.all([echo.connect({ era: 'legacy' }), echo.connect({ era: 'modern' })]);
    await expectClientsKeptApart(a, b, FIXTURE_STEP_MS);
  });

  it('passes a failed tool result on, keeps the code of an upstream JSON-RPC error, and names its own failures', async () => {
    const client = await echo.connect();
    const failed = await callTool(client, 'tool-error', { message: 'bad input' });
    expect(failed).toMatchObject({ isError: true, content: [{ type: 'text', text: 'bad input' }] });
    await expect(callTool(client, 'rpc-error', { message: 'boom', code: -32_050 })).rejects.toMatchObject({
      code: -32_050,
      message: expect.stringContaining('boom'),
    });
    await expect(callTool(client, 'no-such-tool', {})).rejects.toMatchObject({
      code: -32_602,
      data: { code: 'tool_not_found' },
    });
    // The call's deadline is the runner's: the upstream's slow call ends as tool_timeout.
    const hurried = await echo.connect({ era: 'legacy' }, 200);
    await expect(callTool(hurried, 'slow', { ms: 20_000 })).rejects.toMatchObject({
      code: -32_603,
      data: { code: 'tool_timeout' },
    });
  });

  it('cancels the upstream call when the client cancels, and logs the call cancelled', async () => {
    const client = await echo.connect({ era: 'modern', requestId: 'req-bridge-cancel' });
    await expectSlowCallCancelled(client, 'slow', fixtureEvents);
    await waitFor('the call logged cancelled', () =>
      echo.logs.lines.some(
        (l) => l.event === 'tool.call.done' && l.request_id === 'req-bridge-cancel' && l.status === 'cancelled',
      ),
    );
  });

  it('logs calls under the id of the 2026-07-28 request that made the server; a 2025 session gets new ids', async () => {
    const modern = await echo.connect({ era: 'modern', requestId: 'req-bridge-modern' });
    await callTool(modern, 'echo', { message: 'modern' });
    expect(
      echo.logs.lines.find((l) => l.event === 'tool.call.done' && l.request_id === 'req-bridge-modern'),
    ).toMatchObject({ tool: 'echo', status: 'ok' });
    const legacy = await echo.connect({ era: 'legacy', requestId: 'req-of-initialize' });
    await callTool(legacy, 'echo', { message: 'one' });
    await callTool(legacy, 'echo', { message: 'two' });
    const ids = echo.logs.lines.filter((l) => l.event === 'tool.call.done').map((l) => String(l.request_id));
    const fresh = ids.slice(-2);
    expect(fresh).toEqual([expect.stringMatching(UUID), expect.stringMatching(UUID)]);
    expect(fresh[0]).not.toBe(fresh[1]);
  });
});

describe('what an upstream serves besides tools', () => {
  const memoryFile = join(tmpdir(), `mcp-bridge-memory-${process.pid}-${Date.now()}.jsonl`);
  let everything: Bridge;
  let memory: Bridge;

  beforeAll(async () => {
    [everything, memory] = await Promise.all([
      bridgeTo('everything', [EVERYTHING, 'stdio']),
      bridgeTo('memory', [MEMORY], { MEMORY_FILE_PATH: memoryFile }),
    ]);
  });
  afterAll(() => rmSync(memoryFile, { force: true }));

  it('forwards tools, resources and prompts of an upstream that has them (server-everything)', async () => {
    const client = await everything.connect({ era: 'modern' });
    expect(client.getServerCapabilities()).toMatchObject({ tools: {}, resources: {}, prompts: {}, completions: {} });
    expect(await toolNames(client)).toEqual(expect.arrayContaining(['echo', 'trigger-long-running-operation']));
    expect(textOf(await callTool(client, 'echo', { message: 'everything' }))).toBe('Echo: everything');
    const { prompts } = await client.listPrompts();
    expect(prompts.length).toBeGreaterThan(0);
    const { resources } = await client.listResources();
    expect(resources.length).toBeGreaterThan(0);
    const first = resources[0] as { uri: string };
    const read = await client.readResource({ uri: first.uri });
    expect(read.contents[0]).toMatchObject({ uri: first.uri });
  });

  it('mirrors the upstream capabilities (server-memory: resources, no prompts) and shares its state across eras', async () => {
    const modern = await memory.connect({ era: 'modern' });
    expect(modern.getServerCapabilities()?.resources).toBeDefined();
    expect(modern.getServerCapabilities()?.prompts).toBeUndefined();
    await callTool(modern, 'create_entities', {
      entities: [{ name: 'hub', entityType: 'project', observations: ['fronts MCP servers'] }],
    });
    const legacy = await memory.connect({ era: 'legacy' });
    expect(textOf(await callTool(legacy, 'read_graph', {}))).toContain('fronts MCP servers');
    const read = await legacy.readResource({ uri: 'memory://knowledge-graph' });
    expect(JSON.stringify(read.contents)).toContain('fronts MCP servers');
  });
});
