/**
 * The aggregator (src/aggregate/aggregator.ts) in-process: SDK clients over the SDK's in-memory transport, each
 * linked to a server its factory made for one principal, over the hub's real registry, cache, locator, guard and
 * worker client on the test Redis, and a real worker process (the built worker's main, as the supervisor starts
 * it) holding the echo fixture. mcp-endpoints.test.ts keeps the aggregated endpoint's smoke set through the hub.
 */

import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry, runtimeToHash } from '@mcp-hub/shared';
import { Client, InMemoryTransport } from '@modelcontextprotocol/client';
import getPort from 'get-port';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  echoServerSpec,
  expectSlowCallCancelled,
  FIXTURE_STEP_MS,
  fixtureEventCounter,
} from '../../../test/echo-fixture.js';
import { type MainRun, runMain } from '../../../test/main-process.js';
import { callTool, callWithProgress, textOf, toolNames } from '../../../test/mcp-clients.js';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { CallGuard } from '../src/access/call-guard.js';
import type { Principal } from '../src/access/principal.js';
import { Aggregator } from '../src/aggregate/aggregator.js';
import { RateLimiter } from '../src/limits/rate-limiter.js';
import { RegistryCache } from '../src/registry-cache.js';
import { UsageRecorder } from '../src/stores/usage.js';
import { ToolValidatorFactory } from '../src/validation/tool-validator.js';
import { WorkerClient } from '../src/workers/worker-client.js';
import { WorkerLocator } from '../src/workers/worker-locator.js';

const t = testRedis();
const registry = new Registry(t.redis, t.keys);
const logs = captureLogger('hub');
const eventsFile = join(tmpdir(), `aggregator-${process.pid}-${Date.now()}.jsonl`);
const ADMIN: Principal = { kind: 'admin', via: 'token' };
const keyOf = (project: string, limits?: { perHour: number }): Principal => ({
  kind: 'key',
  keyId: `key-${project}-${randomBytes(4).toString('hex')}`,
  project,
  role: 'developer',
  scopes: ['tools:call'],
  ...(limits ? { limits } : {}),
});

const limiter = new RateLimiter(t.redis, t.keys, logs.log);
const usage = new UsageRecorder(t.redis, t.keys, logs.log);
const workerClient = new WorkerClient();
const cache = new RegistryCache(registry, new ToolValidatorFactory(logs.log), 60_000);
const aggregator = new Aggregator({
  registry,
  cache,
  workers: new WorkerLocator(cache, registry, logs.log, {
    wakeTimeoutMs: 1_000,
    workerWaitMs: 1_000,
    maxWaitersPerServer: 100,
  }),
  guard: new CallGuard(limiter, usage),
  client: workerClient,
  log: logs.log,
  separator: '__',
  maxAgeMs: 60_000,
});
let worker: MainRun;

const clients: Client[] = [];
afterEach(async () => {
  await Promise.allSettled(clients.splice(0).map((client) => client.close()));
});

/** A client of the aggregated server that the front would make for `principal` (a 2025 session unless told). */
async function connect(principal: Principal, era: 'modern' | 'legacy' = 'legacy'): Promise<Client> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await aggregator.serverFactory({ era, auth: principal }).connect(serverSide);
  const client = new Client({ name: 'aggregator-test', version: '1.0.0' });
  await client.connect(clientSide);
  clients.push(client);
  return client;
}

const fixtureEvents = fixtureEventCounter(eventsFile);

beforeAll(async () => {
  // alpha (project a) runs a worker; beta (project b) has tools in the registry but no worker running.
  await registry.upsertServer(
    echoServerSpec('alpha', { project: 'a', env: { FIXTURE_EVENTS_FILE: eventsFile } }),
    'create',
  );
  await registry.upsertServer(echoServerSpec('beta', { project: 'b' }), 'create');
  await registry.replaceTools('beta', [
    { name: 'echo', inputSchema: { type: 'object' } },
    { name: 'lookup', inputSchema: { type: 'object' } },
  ]);
  const port = await getPort();
  const token = randomBytes(32).toString('base64url');
  worker = runMain('worker', {
    REDIS_URL: redisUrl(),
    KEY_PREFIX: t.prefix,
    MCP_SERVER_ID: 'alpha',
    MCP_WORKER_HOST: '127.0.0.1',
    MCP_WORKER_PORT: String(port),
    MCP_WORKER_INSTANCE: 'aggregator-test',
    MCP_WORKER_TOKEN: token,
    LOG_LEVEL: 'info',
  });
  await worker.waitForEvent('worker.ready', 20_000);
  // What the supervisor writes once the worker is healthy.
  await t.redis.hset(
    t.keys.runtime('alpha'),
    runtimeToHash({
      status: 'running',
      host: '127.0.0.1',
      port,
      instance: 'aggregator-test',
      workerToken: token,
      restarts: 0,
    }),
  );
});

afterAll(async () => {
  // The hub's side first, as when a hub stops: with a pooled connection left open, this worker's shutdown can
  // wait out its whole 10 s deadline (seen after a progress call and a cancelled one on the same pool).
  await workerClient.close();
  await worker?.stop();
  limiter.close();
  await usage.close();
  rmSync(eventsFile, { force: true });
  await t.cleanup();
});

describe('the aggregated server', () => {
  it('lists the tools of every server the caller may see, prefixed with the namespace', async () => {
    const admin = await connect(ADMIN);
    // A full MCP server (issue 12): tools, resources (subscriptions on 2025 sessions), prompts, completions, logging.
    expect(admin.getServerCapabilities()).toEqual({
      tools: { listChanged: true },
      resources: { listChanged: true, subscribe: true },
      prompts: { listChanged: true },
      completions: {},
      logging: {},
    });
    const all = await toolNames(admin);
    expect(all).toEqual(expect.arrayContaining(['alpha__echo', 'alpha__progress', 'beta__echo', 'beta__lookup']));
    expect(all.every((name) => name.startsWith('alpha__') || name.startsWith('beta__'))).toBe(true);
    // A key sees its own project's servers only.
    const a = await toolNames(await connect(keyOf('a'), 'modern'));
    expect(a).toContain('alpha__echo');
    expect(a.some((name) => name.startsWith('beta__'))).toBe(false);
    expect(await toolNames(await connect(keyOf('elsewhere')))).toEqual([]);
  });

  it('routes a call by its prefixed name and by namespace.tool to the owning worker, with progress', async () => {
    const client = await connect(ADMIN);
    expect(textOf(await callTool(client, 'alpha__echo', { message: 'prefixed' }))).toBe('prefixed');
    expect(textOf(await callTool(client, 'alpha.echo', { message: 'dotted' }))).toBe('dotted');
    const run = await callWithProgress(client, 'alpha__progress', { steps: 3, intervalMs: FIXTURE_STEP_MS });
    expect(run.text).toBe('done in 3 steps');
    // The SDK may drop the last notification that races the result: at least the first ones arrive.
    expect(run.progress.length).toBeGreaterThanOrEqual(2);
    expect(run.progress[0]).toEqual({ progress: 1, total: 3 });
    expect(logs.lines.find((l) => l.event === 'tool.call.done' && l.tool === 'echo')).toMatchObject({
      server: 'alpha',
      via: 'mcp',
    });
  });

  it('answers unknown names, names of another project and invalid arguments as invalid params', async () => {
    const admin = await connect(ADMIN);
    await expect(callTool(admin, 'nobody__echo', {})).rejects.toMatchObject({
      code: -32_602,
      message: expect.stringContaining('unknown tool "nobody__echo"'),
    });
    await expect(callTool(admin, 'alpha__echo', {})).rejects.toMatchObject({
      code: -32_602,
      message: expect.stringContaining('invalid arguments for alpha__echo'),
    });
    const a = await connect(keyOf('a'));
    await expect(callTool(a, 'beta__echo', {})).rejects.toMatchObject({
      code: -32_602,
      message: expect.stringContaining('unknown tool "beta__echo"'),
    });
  });

  it('answers a call to a server without a running worker with a failed result the model can read', async () => {
    const result = await callTool(await connect(ADMIN), 'beta__lookup', {});
    expect(result.isError).toBe(true);
    expect(textOf(result)).toMatch(/^worker_unavailable: /);
    expect(logs.lines.find((l) => l.event === 'tool.call.failed' && l.server === 'beta')).toMatchObject({
      code: 'worker_unavailable',
      via: 'mcp',
    });
  });

  it("refuses a key's call over its limit with a rate_limited error", async () => {
    const client = await connect(keyOf('a', { perHour: 1 }));
    expect(textOf(await callTool(client, 'alpha__echo', { message: 'first' }))).toBe('first');
    await expect(callTool(client, 'alpha__echo', { message: 'second' })).rejects.toMatchObject({
      code: -32_603,
      data: { code: 'rate_limited' },
    });
  });

  it("cancels the worker's call when the client cancels", async () => {
    await expectSlowCallCancelled(await connect(ADMIN, 'modern'), 'alpha__slow', fixtureEvents);
  });

  it('drops a deleted server from the list once invalidated (the hub does on every registry event)', async () => {
    const client = await connect(ADMIN);
    expect(await toolNames(client)).toContain('beta__lookup');
    await registry.deleteServer('beta');
    aggregator.invalidate();
    const after = await toolNames(client);
    expect(after.some((name) => name.startsWith('beta__'))).toBe(false);
    expect(after).toContain('alpha__echo');
  });
});
