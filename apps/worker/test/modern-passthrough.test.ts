// Issue 12, item 3: a 2026-07-28 request to a Streamable HTTP server that speaks 2026-07-28 reaches it
// untouched: tools it lists only to modern clients, its `input_required` rounds and the `requestState` it
// minted pass through the worker both ways; 2025 clients keep the worker's own session.
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import getPort from 'get-port';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AnyClient, callTool, capableClient, textOf, toolNames } from '../../../test/mcp-clients.js';
import { fixture, stopProcess } from '../../../test/processes.js';
import { captureLogger, testRedis } from '../../../test/support.js';
import type { Worker } from '../src/index.js';
import { registerServer, startTestWorker, WORKER_AUTH } from './helpers.js';

/** Starts the two-era fixture server; answers its port once it listens. */
async function startModernServer(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [fixture('modern-server.mjs')], {
    env: { ...process.env, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  for await (const line of lines) {
    const match = /^listening (\d+)$/.exec(line);
    if (match) return { child, port: Number(match[1]) };
  }
  throw new Error('the fixture server exited before it listened');
}

describe('2026-07-28 requests pass through to a 2026-07-28 upstream', () => {
  const t = testRedis();
  const captured = captureLogger('worker');
  let upstream: ChildProcess;
  let worker: Worker;
  let url: string;
  const opened: AnyClient[] = [];

  beforeAll(async () => {
    const server = await startModernServer();
    upstream = server.child;
    await registerServer(t.redis, t.keys, {
      id: 'modern',
      transport: 'streamable-http',
      config: { url: `http://127.0.0.1:${server.port}/mcp` },
    });
    const port = await getPort();
    url = `http://127.0.0.1:${port}/mcp`;
    worker = await startTestWorker({ serverId: 'modern', prefix: t.prefix, port, log: captured.log });
    await worker.ready;
  });
  afterEach(async () => {
    await Promise.allSettled(opened.splice(0).map((c) => c.close()));
  });
  afterAll(async () => {
    await worker?.close();
    await stopProcess(upstream);
    await t.cleanup();
  });

  it('a modern client sees the modern-only tool, and its input_required rounds and requestState pass both ways', async () => {
    const client = await capableClient('2026', url, { ...WORKER_AUTH }, 'zoe');
    opened.push(client);
    expect(await toolNames(client)).toEqual(['echo', 'ask_name']);
    // The client's elicitation handler answers `zoe`; the upstream echoes the state it minted and got back.
    expect(textOf(await callTool(client, 'ask_name', {}))).toMatch(/^name=zoe state=fixture-state:\d+$/);
    expect(captured.lines).toContainEqual(
      expect.objectContaining({ event: 'mcp.passthrough', rpc_method: 'tools/call', status: 200 }),
    );
  });

  it('a 2025 client is served by the worker’s own session (the 2025 tool list)', async () => {
    const client = await capableClient('2025', url, { ...WORKER_AUTH }, 'old');
    opened.push(client);
    expect(await toolNames(client)).toEqual(['echo']);
    expect(textOf(await callTool(client, 'echo', { message: 'hi' }))).toBe('echo: hi');
  });
});
