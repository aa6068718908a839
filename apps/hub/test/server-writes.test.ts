import { loadHubConfig } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { deniedUrlReason, isLocalAddress, isPrivateAddress, localDoorReason } from '../src/access/url-guard.js';
import { buildHub } from '../src/index.js';

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
    // Every IPv6 embedding of a loopback IPv4 address is judged as that address.
    ['::7f00:1', true], // IPv4-compatible
    ['::127.0.0.1', true],
    ['::ffff:7f00:1', true], // mapped, hex form
    ['::ffff:0:7f00:1', true], // SIIT (RFC 6145)
    ['2002:7f00:1::', true], // 6to4 of 127.0.0.1
    ['2002:a9fe:a9fe::1', true], // 6to4 of 169.254.169.254
    ['2001:0:4136:e378:8000:63bf:80ff:fffe', true], // Teredo, client 127.0.0.1 (inverted)
    ['64:ff9b::7f00:1', true], // NAT64
    ['64:ff9b:1::808:808', true], // local-use NAT64: its embedding is not fixed, so never public
    ['fec0::1', true], // deprecated site-local
    ['100::1', true], // discard
    ['2001:db8::1', true], // documentation
    ['2001:2::1', true], // benchmarking
    ['4000::1', true], // outside 2000::/3
    ['2002:808:808::1', false], // 6to4 of 8.8.8.8
    ['64:ff9b::808:808', false], // NAT64 of 8.8.8.8
    ['198.51.100.7', true], // documentation
    ['255.255.255.255', true],
    ['not-an-ip', false],
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

describe("the hub's and the workers' doors", () => {
  const doors = { hubPorts: [8080], workerBasePort: 41_000, workerPortRange: 1_000, hubHost: '127.0.0.1' };
  const own = new Set(['10.1.2.3']); // this host's interface addresses, as the guard would read them
  const resolve = async (host: string) =>
    ({ 'rebind.example': ['127.0.0.1'], 'lan.example': ['10.1.2.3'], 'far.example': ['93.184.215.14'] })[host] ??
    Promise.reject(Object.assign(new Error('not found'), { code: 'ENOTFOUND' }));

  it('knows this host: loopback, unspecified, its interfaces, and their IPv6 embeddings', () => {
    for (const address of [
      '127.0.0.1',
      '127.9.9.9',
      '::1',
      '0.0.0.0',
      '::',
      '10.1.2.3',
      '::ffff:10.1.2.3',
      '::7f00:1',
    ]) {
      expect(isLocalAddress(address, own), address).toBe(true);
    }
    for (const address of ['10.1.2.4', '93.184.215.14', '2606:4700::1111']) {
      expect(isLocalAddress(address, own), address).toBe(false);
    }
  });

  it.each([
    'http://127.0.0.1:41000/tools/echo',
    'http://127.0.0.1:41999',
    'http://localhost:41500/',
    'http://app.localhost:8080/api',
    'http://[::1]:41001/',
    'http://[::ffff:7f00:1]:41001/',
    'http://[::7f00:1]:8080/',
    'http://[2002:7f00:1::]:41001/', // 6to4 of loopback
    'http://0.0.0.0:41001/',
    'http://2130706433:41001/', // 127.0.0.1 as one number, normalised by the URL parser
    'http://0x7f.1:8080/',
    'http://10.1.2.3:41001/',
    'http://rebind.example:41001/',
    'http://lan.example:8080/',
    'http://nowhere.example:41001/', // does not resolve now, may resolve here later
  ])('refuses %s', async (url) => {
    expect(await localDoorReason(url, doors, resolve, own)).toBeDefined();
  });

  it.each([
    'http://127.0.0.1:40999/', // below the range
    'http://127.0.0.1:42000/', // past it
    'http://localhost:3000/',
    'https://far.example:41001/', // another host's port
    'https://93.184.215.14:8080/',
    'http://nowhere.example:3000/', // not a door: not resolved at all
  ])('lets %s through', async (url) => {
    expect(await localDoorReason(url, doors, resolve, own)).toBeUndefined();
  });

  it("refuses the hub's host by name, and port 80/443 when the hub listens there", async () => {
    const named = { ...doors, hubPorts: [80], hubHost: 'hub.internal' };
    expect(await localDoorReason('http://hub.internal/', named, resolve, own)).toMatch(/hub's host/);
    expect(await localDoorReason('http://127.0.0.1/', named, resolve, own)).toMatch(/hub's own port 80/);
    expect(await localDoorReason('https://127.0.0.1/', named, resolve, own)).toBeUndefined();
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

  it("refuses worker ports on this host to everyone, the hub's own port to keys, whatever HUB_DENY_PRIVATE_URLS says", async () => {
    const open = await buildHub({
      config: loadHubConfig({
        REDIS_URL: redisUrl(),
        KEY_PREFIX: t.prefix,
        HUB_ADMIN_TOKEN: ADMIN,
        HUB_PORT: '0',
        MCP_WORKER_BASE_PORT: '45000',
        MCP_WORKER_PORT_RANGE: '100',
      }),
      log: captureLogger('hub').log,
    });
    try {
      const hubBase = await open.listen({ host: '127.0.0.1', port: 0 });
      const owner = await open.inject({
        method: 'POST',
        url: '/api/projects/acme/keys',
        headers: { authorization: `Bearer ${ADMIN}` },
        payload: { name: 'dev', role: 'developer' },
      });
      const key = (owner.json() as { key: string }).key;
      const write = (credential: string, body: unknown) =>
        open.inject({
          method: 'POST',
          url: '/api/servers',
          headers: { authorization: `Bearer ${credential}` },
          payload: body as object,
        });
      const rest = (id: string, baseUrl: string) => ({
        id,
        project: 'acme',
        transport: 'rest',
        config: { baseUrl, tools: [{ name: 't', method: 'GET', path: '/', inputSchema: { type: 'object' } }] },
      });
      for (const [credential, body, path] of [
        [key, rest('to-worker', 'http://127.0.0.1:45007/tools'), 'config.baseUrl'],
        [ADMIN, rest('to-worker-admin', 'http://localhost:45099'), 'config.baseUrl'],
        [key, remote('to-worker-mcp', 'http://[::ffff:7f00:1]:45001/mcp'), 'config.url'],
        [key, rest('to-hub', `${hubBase}/api`), 'config.baseUrl'],
      ] as const) {
        const res = await write(credential, body);
        expect(res.statusCode, JSON.stringify(body)).toBe(403);
        expect(res.json().error).toMatchObject({ code: 'forbidden', details: { path } });
        expect(res.json().error.message).toMatch(/may not point at the hub or its workers/);
      }
      // Not even the admin may point a server at the hub's own API: a REST server holding the admin token in its
      // headers would lend it to every reporter key that may call its tools. Other local ports are not doors.
      const hubApi = await write(ADMIN, rest('hub-api', `${hubBase}/api`));
      expect(hubApi.statusCode).toBe(403);
      expect(hubApi.json().error).toMatchObject({ code: 'forbidden', details: { path: 'config.baseUrl' } });
      expect((await write(key, rest('local-api', 'http://127.0.0.1:45100/'))).statusCode).toBe(201);
    } finally {
      await open.close();
    }
  });

  it('needs an existing project when the admin names one', async () => {
    const res = await post('/api/servers', remote('lost', 'https://93.184.215.14/x', undefined, 'nowhere'));
    expect(res.status).toBe(404);
    expect(res.json.error?.code).toBe('project_not_found');
  });
});

describe('namespaces with a longer MCP_TOOL_SEPARATOR', () => {
  it('refuses a namespace containing the separator or ending with any start of it', async () => {
    const tp = testRedis();
    const hub = await buildHub({
      config: loadHubConfig({
        REDIS_URL: redisUrl(),
        KEY_PREFIX: tp.prefix,
        HUB_ADMIN_TOKEN: ADMIN,
        MCP_TOOL_SEPARATOR: '-_-',
      }),
      log: captureLogger('hub').log,
    });
    try {
      const write = (namespace: string) =>
        hub.inject({
          method: 'POST',
          url: '/api/servers',
          headers: { authorization: `Bearer ${ADMIN}` },
          payload: {
            ...remote(`ns-${namespace.length}-${namespace.replace(/[^a-z]/g, '')}`, 'https://93.184.215.14/x'),
            project: undefined,
            namespace,
          },
        });
      // `ab-` + `-_-` + `x` and `ab` + `-_-` + `-x` would be one name; so would `ab-_` + … and `ab` + `_-…`.
      for (const bad of ['ab-', 'ab-_', 'ab-_-c']) {
        const res = await write(bad);
        expect(res.statusCode, bad).toBe(400);
        expect(res.json().error.details).toEqual([{ path: 'namespace', message: expect.stringMatching(/separator/) }]);
      }
      for (const good of ['ab', 'ab_', 'ab-c', 'ab-c_']) expect((await write(good)).statusCode, good).toBe(201);
      // A name past 64 characters keeps its first 55: the namespace and separator must fit in them whole, or
      // `<55 characters>_<hash>` could split into a shorter namespace that another server holds.
      expect((await write('n'.repeat(52))).statusCode).toBe(201);
      const long = await write('m'.repeat(53));
      expect(long.statusCode).toBe(400);
      expect(long.json().error.message).toMatch(/longer than 52 characters/);
    } finally {
      await hub.close();
      await tp.cleanup();
    }
  });
});
