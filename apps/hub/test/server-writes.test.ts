import { loadHubConfig } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';
import { deniedUrlReason, isPrivateAddress } from '../src/security/url-guard.js';

const ADMIN = 'admin-token-for-server-writes-0123';
const t = testRedis();
let app: FastifyInstance;

beforeAll(async () => {
  const config = loadHubConfig({
    REDIS_URL: redisUrl(),
    KEY_PREFIX: t.prefix,
    HUB_ADMIN_TOKEN: ADMIN,
    MCP_STDIO_ALLOWED_COMMANDS: 'node, /usr/bin/uvx',
    HUB_DENY_PRIVATE_URLS: 'true',
  });
  app = await buildHub({ config, log: captureLogger('hub').log });
  await post('/api/projects', { id: 'acme', name: 'Acme' });
  await post('/api/projects', { id: 'beta', name: 'Beta' });
});
afterAll(async () => {
  await app.close();
  await t.cleanup();
});

async function post(url: string, body: unknown) {
  const res = await app.inject({
    method: 'POST',
    url,
    headers: { authorization: `Bearer ${ADMIN}` },
    payload: body as object,
  });
  return {
    status: res.statusCode,
    json: res.json() as { error?: { code: string; message: string }; [k: string]: unknown },
  };
}

const stdio = (id: string, command: string, project = 'acme') => ({
  id,
  project,
  transport: 'stdio',
  config: { command, args: [] },
});
const remote = (id: string, url: string, name?: string, project = 'acme') => ({
  id,
  project,
  ...(name ? { name } : {}),
  transport: 'streamable-http',
  config: { url },
});

describe('which addresses are private', () => {
  it.each([
    ['127.0.0.1', true],
    ['10.1.2.3', true],
    ['172.16.0.1', true],
    ['172.32.0.1', false],
    ['192.168.1.1', true],
    ['169.254.169.254', true],
    ['100.64.0.1', true],
    ['0.0.0.0', true],
    ['8.8.8.8', false],
    ['::1', true],
    ['fe80::1', true],
    ['fd00::1', true],
    ['::ffff:127.0.0.1', true],
    ['::ffff:8.8.8.8', false],
    ['2606:4700::1111', false],
  ])('%s → %s', (address, expected) => {
    expect(isPrivateAddress(address)).toBe(expected);
  });

  it('checks what a name resolves to, and loopback names', async () => {
    const resolve = async (host: string) => (host === 'inside.example' ? ['10.0.0.5'] : ['93.184.215.14']);
    expect(await deniedUrlReason('https://inside.example/mcp', resolve)).toMatch(/10\.0\.0\.5/);
    expect(await deniedUrlReason('https://outside.example/mcp', resolve)).toBeUndefined();
    expect(await deniedUrlReason('http://localhost:3000/mcp', resolve)).toMatch(/loopback/);
    expect(await deniedUrlReason('http://[::1]:3000/mcp', resolve)).toMatch(/::1/);
    // A name that does not resolve now might resolve anywhere later: refused.
    const nxdomain = async () => {
      throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    };
    expect(await deniedUrlReason('https://not-yet.example/mcp', nxdomain)).toMatch(/does not resolve \(ENOTFOUND\)/);
    expect(isPrivateAddress('64:ff9b::a9fe:a9fe')).toBe(true); // NAT64 of 169.254.169.254
  });
});

describe('server writes', () => {
  it('refuses remote URLs in private ranges when HUB_DENY_PRIVATE_URLS is on, and stores nothing', async () => {
    for (const url of ['http://127.0.0.1:9/mcp', 'http://169.254.169.254/latest', 'http://localhost/mcp']) {
      const res = await post('/api/servers', remote('internal', url));
      expect(res.status, url).toBe(403);
      expect(res.json.error?.code).toBe('forbidden');
      expect(res.json.error?.message).toMatch(/private networks/);
    }
    const rest = await post('/api/servers', {
      id: 'internal-rest',
      project: 'acme',
      transport: 'rest',
      config: {
        baseUrl: 'http://10.0.0.1',
        tools: [{ name: 't', method: 'GET', path: '/', inputSchema: { type: 'object' } }],
      },
    });
    expect(rest.status).toBe(403);
    expect(await t.redis.hkeys(t.keys.servers)).toEqual([]);
    expect((await post('/api/servers', remote('public', 'https://93.184.215.14/mcp'))).status).toBe(201);
  });

  it('allows only the listed stdio commands, compared exactly', async () => {
    expect((await post('/api/servers', stdio('ok-node', 'node'))).status).toBe(201);
    expect((await post('/api/servers', stdio('ok-uvx', '/usr/bin/uvx'))).status).toBe(201);
    for (const command of ['npx', 'bash', '/tmp/evil/node', 'uvx']) {
      const res = await post('/api/servers', stdio(`bad-${command.replace(/\W/g, '')}`, command));
      expect(res.status, command).toBe(403);
      expect(res.json.error?.message).toMatch(/MCP_STDIO_ALLOWED_COMMANDS/);
    }
  });

  it('keeps server names unique per project, not across projects', async () => {
    expect((await post('/api/servers', remote('docs-a', 'https://93.184.215.14/a', 'Docs'))).status).toBe(201);
    const clash = await post('/api/servers', remote('docs-b', 'https://93.184.215.14/b', 'Docs'));
    expect(clash.status).toBe(409);
    expect(clash.json.error?.message).toMatch(/named "Docs" already exists in project "acme"/);
    expect((await post('/api/servers', remote('docs-c', 'https://93.184.215.14/c', 'Docs', 'beta'))).status).toBe(201);
  });

  it('needs an existing project when the admin names one', async () => {
    const res = await post('/api/servers', remote('lost', 'https://93.184.215.14/x', undefined, 'nowhere'));
    expect(res.status).toBe(404);
    expect(res.json.error?.code).toBe('project_not_found');
  });
});
