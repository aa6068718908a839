import { loadHubConfig } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

const t = testRedis();
let app: FastifyInstance;

beforeAll(async () => {
  app = await buildHub({
    config: loadHubConfig({ REDIS_URL: redisUrl(), KEY_PREFIX: t.prefix, HUB_AUTH: 'none' }),
    log: captureLogger('hub').log,
  });
});
afterAll(async () => {
  await app.close();
  await t.cleanup();
});

const MODERN = '2026-07-28';
const meta = (version = MODERN) => ({
  'io.modelcontextprotocol/protocolVersion': version,
  'io.modelcontextprotocol/clientInfo': { name: 'test', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': {},
});
const base = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

async function rpc(headers: Record<string, string>, body: unknown) {
  const res = await app.inject({ method: 'POST', url: '/mcp', headers, payload: body as object });
  return {
    status: res.statusCode,
    body: res.json() as { result?: unknown; error?: { code: number; message: string } },
  };
}

// The aggregated endpoint is the hub's own MCP server: these are the answers the protocol reserves, as the
// SDK gives them (per-server endpoints pass the worker's identical answers through).
describe('the error answers the MCP spec reserves', () => {
  it('answers a well-formed 2026-07-28 request', async () => {
    const res = await rpc(
      { ...base, 'mcp-protocol-version': MODERN, 'mcp-method': 'tools/list' },
      { jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: meta() } },
    );
    expect(res.status).toBe(200);
    expect(res.body.result).toMatchObject({ tools: [] });
  });

  it('refuses headers that disagree with the body (400, -32020)', async () => {
    const res = await rpc(
      { ...base, 'mcp-protocol-version': MODERN, 'mcp-method': 'tools/call' },
      { jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: meta() } },
    );
    expect(res.status).toBe(400);
    expect(res.body.error?.code).toBe(-32020);
    expect(res.body.error?.message).toMatch(/Mcp-Method/);
  });

  it('refuses an unsupported protocol version (400, -32022)', async () => {
    const res = await rpc(
      { ...base, 'mcp-protocol-version': '2031-01-01', 'mcp-method': 'tools/list' },
      { jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: meta('2031-01-01') } },
    );
    expect(res.status).toBe(400);
    expect(res.body.error?.code).toBe(-32022);
  });

  it('asks a 2025-era client without a session to initialize (400), and answers an unknown session 404', async () => {
    const noSession = await rpc(
      { ...base, 'mcp-protocol-version': '2025-06-18' },
      { jsonrpc: '2.0', id: 1, method: 'tools/list' },
    );
    expect(noSession.status).toBe(400);
    const unknown = await rpc(
      { ...base, 'mcp-protocol-version': '2025-06-18', 'mcp-session-id': 'no-such-session' },
      { jsonrpc: '2.0', id: 1, method: 'tools/list' },
    );
    expect(unknown.status).toBe(404);
  });
});
