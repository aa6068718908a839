import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMcpFront, type McpFront } from '@mcp-hub/shared/mcp-front';
import { Server } from '@modelcontextprotocol/server';
import { afterEach, describe, expect, it } from 'vitest';
import { captureLogger } from '../../../test/support.js';
import { LazyFront } from './lazy-front.js';

/** A real front: the SDK's server behind createMcpFront. */
function realFront(): McpFront {
  return createMcpFront({
    serverFactory: () => {
      const server = new Server({ name: 'lazy', version: '1.0.0' }, { capabilities: { tools: {} } });
      server.setRequestHandler('tools/list', async () => ({ tools: [] }));
      return server;
    },
    log: captureLogger('worker').log,
    keepAliveMs: 1_000,
  });
}

/** A LazyFront over a real front that counts how often it was built. */
function lazyFront() {
  const built: McpFront[] = [];
  const lazy = new LazyFront(async () => {
    const front = realFront();
    built.push(front);
    return front;
  });
  return { lazy, built };
}

const servers: ReturnType<typeof createServer>[] = [];
afterEach(async () => {
  for (const http of servers.splice(0)) await new Promise((resolve) => http.close(resolve));
});

async function serve(front: McpFront): Promise<string> {
  const http = createServer((req, res) => void front.handleMcp(req, res));
  servers.push(http);
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
}

const initialize = (url: string) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } },
    }),
  });

describe('LazyFront', () => {
  it('is not built by notifications, session queries or closing sessions; the first requests build it once', async () => {
    const { lazy, built } = lazyFront();
    lazy.toolsChanged();
    lazy.resourcesChanged();
    lazy.promptsChanged();
    lazy.resourceUpdated('file:///x');
    expect(lazy.sessionCount()).toBe(0);
    expect(lazy.sessionAuths()).toEqual([]);
    expect(await lazy.closeSessions(() => true, 'test')).toBe(0);
    expect(built).toHaveLength(0);

    const url = await serve(lazy);
    const answers = await Promise.all([initialize(url), initialize(url)]);
    expect(answers.map((r) => r.status)).toEqual([200, 200]);
    expect(built).toHaveLength(1);
    expect(lazy.sessionCount()).toBe(2);
    expect(await lazy.closeSessions(() => true, 'test')).toBe(2);
    await lazy.close();
  });

  it('answers 500 when its front cannot be built, says so, and builds it at the next request', async () => {
    const failures: unknown[] = [];
    let attempts = 0;
    const lazy = new LazyFront(
      async () => {
        if (++attempts === 1) throw new Error('no SDK today');
        return realFront();
      },
      (error) => failures.push(error),
    );
    const url = await serve(lazy);
    const first = await initialize(url);
    expect(first.status).toBe(500);
    expect(await first.json()).toEqual({
      error: { code: 'internal_error', message: 'the MCP endpoint could not start' },
    });
    expect(failures).toEqual([new Error('no SDK today')]);
    expect((await initialize(url)).status).toBe(200);
    expect(attempts).toBe(2);
    await lazy.close();
  });

  it('answers 503 to a request that comes after it was closed, built or not', async () => {
    const { lazy, built } = lazyFront();
    await lazy.close();
    const url = await serve(lazy);
    expect((await initialize(url)).status).toBe(503);
    expect(built).toHaveLength(1);
  });
});
