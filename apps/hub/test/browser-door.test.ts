/**
 * Issue 10, finding 1 (and the slow-body part of 8): a web page, or a DNS name rebound to 127.0.0.1, cannot
 * drive the hub. Every test talks to a hub listening on a real port, with undici so Host and Origin go as
 * given: the attack is sent as the attacker would, and what it would have done is checked to be undone
 * (nothing stored, the stand-in worker never called, the restart counter unchanged).
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadHubConfig, Registry, runtimeToHash } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMain } from '../../../test/main-process.js';
import { waitFor } from '../../../test/processes.js';
import { captureLogger, redisUrl, testPrefix, testRedis } from '../../../test/support.js';
import { ROUTE_POLICIES } from '../src/access/policy.js';
import { hostAllowedBy } from '../src/http/host.js';
import { buildHub } from '../src/index.js';

const ADMIN = 'admin-token-0123456789abcdef';
const SERVER = 'door-srv';
const EVIL = 'evil.example';

// ---- helpers ------------------------------------------------------------------------------------------------

interface Hub {
  app: FastifyInstance;
  port: number;
  base: string;
}

async function startHub(env: Record<string, string>, prefix: string): Promise<Hub> {
  const app = await buildHub({
    config: loadHubConfig({ REDIS_URL: redisUrl(), KEY_PREFIX: prefix, ...env }),
    log: captureLogger('hub').log,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return { app, port, base: `http://127.0.0.1:${port}` };
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  code: string | undefined;
}

/** One request as given (Host and Origin included); an event stream is read up to its headers only. */
async function send(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<Answer> {
  const res = await request(`${base}${path}`, {
    method: method as 'GET',
    headers,
    body,
    headersTimeout: 10_000,
  });
  let text = '';
  if (String(res.headers['content-type'] ?? '').startsWith('text/event-stream')) {
    // Hanging up on a stream aborts its body: that is the point here, not an error.
    res.body.on('error', () => {});
    res.body.destroy();
  } else text = await res.body.text();
  let code: string | undefined;
  try {
    code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
  } catch {
    // not JSON
  }
  return { status: res.statusCode, headers: res.headers, text, code };
}

const json = (value: unknown) => JSON.stringify(value);
const JSON_TYPE = { 'content-type': 'application/json' };
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** A stand-in worker on a real port that counts the calls reaching it. */
interface StandInWorker {
  server: Server;
  port: number;
  calls: string[];
}

async function startStandInWorker(): Promise<StandInWorker> {
  const worker: StandInWorker = { server: createServer(), port: 0, calls: [] };
  worker.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      worker.calls.push(req.url ?? '');
      const result = { request_id: 'x', content: [{ type: 'text', text: 'ran' }], isError: false };
      // The worker contract: an event stream when the hub asks for one (it always does for tool calls).
      if (String(req.headers.accept).includes('text/event-stream')) {
        res.writeHead(200, { 'content-type': 'text/event-stream' }).end(`event: result\ndata: ${json(result)}\n\n`);
      } else {
        res.writeHead(200, { 'content-type': 'application/json' }).end(json(result));
      }
    });
  });
  await new Promise<void>((r) => worker.server.listen(0, '127.0.0.1', r));
  worker.port = (worker.server.address() as AddressInfo).port;
  return worker;
}

/** Registers SERVER (tool `echo`) as running at the stand-in worker. */
async function seedServer(hub: Hub, t: ReturnType<typeof testRedis>, worker: StandInWorker, auth = {}) {
  const created = await send(
    hub.base,
    'PUT',
    `/api/servers/${SERVER}`,
    { ...JSON_TYPE, ...auth },
    json({ transport: 'streamable-http', config: { url: 'http://127.0.0.1:9/mcp' } }),
  );
  expect(created.status, created.text).toBe(201);
  await new Registry(t.redis, t.keys).replaceTools(SERVER, [{ name: 'echo', inputSchema: { type: 'object' } }]);
  await t.redis.hset(
    t.keys.runtime(SERVER),
    runtimeToHash({ status: 'running', host: '127.0.0.1', port: worker.port, pid: process.pid, restarts: 0 }),
  );
}

/** A request written byte by byte on a raw socket: resolves with what was sent before the hub hung up, and its answer. */
function trickle(
  port: number,
  head: string,
  chunks: string[],
  everyMs: number,
): Promise<{ sentChunks: number; answer: string }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    let sentChunks = 0;
    let timer: NodeJS.Timeout | undefined;
    socket.on('data', (data) => {
      answer += String(data);
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ sentChunks, answer });
    });
    socket.on('connect', () => {
      socket.write(head);
      timer = setInterval(() => {
        if (sentChunks === chunks.length) {
          clearInterval(timer);
          // The whole request went through: give the answer a moment, then hang up ourselves.
          setTimeout(() => socket.destroy(), 1_000);
          return;
        }
        if (!socket.destroyed) socket.write(chunks[sentChunks++] ?? '');
      }, everyMs);
    });
  });
}

// ---- finding 1: open mode, DNS rebinding and cross-site requests ------------------------------------------

describe('finding 1: a web page cannot register a command, call a tool or restart a server', () => {
  const t = testRedis(testPrefix());
  const registry = new Registry(t.redis, t.keys);
  let hub: Hub;
  let worker: StandInWorker;

  beforeAll(async () => {
    worker = await startStandInWorker();
    // Open mode (asked for by name, loopback only) is where the attack ran commands as the hub's user.
    hub = await startHub({ HUB_AUTH: 'none' }, t.prefix);
    await seedServer(hub, t, worker);
  });
  afterAll(async () => {
    await hub?.app.close();
    worker?.server.closeAllConnections();
    await new Promise((r) => worker?.server.close(r));
    await t.cleanup();
  });

  it('refuses a rebound DNS name (Host and Origin evil.example:<port>) registering a stdio server: 403, nothing stored', async () => {
    const marker = join(tmpdir(), `pwned-${t.prefix.replace(/\W/g, '')}`);
    const attack = {
      ...JSON_TYPE,
      host: `${EVIL}:${hub.port}`,
      origin: `http://${EVIL}:${hub.port}`,
    };
    const spec = json({
      id: 'pwn',
      transport: 'stdio',
      config: { command: process.execPath, args: ['-e', `require('fs').writeFileSync(${json(marker)}, 'x')`] },
    });
    const res = await send(hub.base, 'POST', '/api/servers', attack, spec);
    expect(res.status, res.text).toBe(403);
    expect(res.code).toBe('host_not_allowed');
    expect(await registry.getServer('pwn')).toBeNull();
    // The same with a rebound name but no Origin (a non-CORS request), and with PUT.
    const put = await send(hub.base, 'PUT', '/api/servers/pwn', { ...JSON_TYPE, host: EVIL }, spec);
    expect(put.status).toBe(403);
    expect(await registry.getServer('pwn')).toBeNull();
    // Control: the hub's own Host and Origin register it (so the refusal above is the Host check, not the spec).
    const own = await send(hub.base, 'POST', '/api/servers', { ...JSON_TYPE, origin: hub.base }, spec);
    expect(own.status, own.text).toBe(201);
    await registry.deleteServer('pwn');
  });

  it('refuses a cross-site POST without a body to /mcp/<id>/<tool>: the worker is never called', async () => {
    const crossSite: Record<string, string>[] = [
      { origin: `http://${EVIL}` },
      { origin: 'null' },
      { origin: `http://localhost:${hub.port + 1}` },
      { 'sec-fetch-site': 'cross-site' },
    ];
    for (const headers of crossSite) {
      const res = await send(hub.base, 'POST', `/mcp/${SERVER}/echo`, headers);
      expect(res.status, `${json(headers)}: ${res.text}`).toBe(403);
      expect(res.code).toBe('origin_not_allowed');
      expect(res.headers['access-control-allow-origin']).toBeUndefined();
    }
    // A body-less POST without Origin (curl, or a browser that sent none) is refused for its missing JSON type.
    const bare = await send(hub.base, 'POST', `/mcp/${SERVER}/echo`);
    expect(bare.status).toBe(415);
    expect(bare.code).toBe('unsupported_media_type');
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const simple = await send(hub.base, 'POST', `/mcp/${SERVER}/echo`, { 'content-type': type }, 'message=hi');
      expect(simple.status, type).toBe(415);
    }
    expect(worker.calls).toEqual([]);
    // Control: the same call with the JSON type and the hub's own origin reaches the worker.
    const own = await send(hub.base, 'POST', `/mcp/${SERVER}/echo`, {
      ...JSON_TYPE,
      origin: hub.base,
      accept: 'application/json',
    });
    expect(own.status, own.text).toBe(200);
    expect(worker.calls).toEqual(['/tools/echo']);
  });

  it('refuses a cross-site restart (a POST with no body): the restart counter does not move', async () => {
    const before = await registry.getRestartRequests(SERVER);
    const crossSite: Record<string, string>[] = [
      { origin: `http://${EVIL}` },
      { 'sec-fetch-site': 'cross-site' },
      { host: EVIL },
    ];
    for (const headers of crossSite) {
      const res = await send(hub.base, 'POST', `/api/servers/${SERVER}/restart`, headers);
      expect(res.status, json(headers)).toBe(403);
    }
    expect(await registry.getRestartRequests(SERVER)).toBe(before);
    // Control: a restart from a non-browser client (no Origin, no body) is still accepted.
    const ok = await send(hub.base, 'POST', `/api/servers/${SERVER}/restart`);
    expect(ok.status, ok.text).toBe(202);
    expect(await registry.getRestartRequests(SERVER)).toBe(before + 1);
  });
});

// ---- the route walk -------------------------------------------------------------------------------------

describe('every route refuses a foreign Host and a foreign Origin (all but /healthz)', () => {
  const t = testRedis(testPrefix());
  let hub: Hub;

  beforeAll(async () => {
    hub = await startHub({ HUB_ADMIN_TOKEN: ADMIN }, t.prefix);
  });
  afterAll(async () => {
    await hub?.app.close();
    await t.cleanup();
  });

  /** Every row of the route table (which authz.test.ts holds equal to the routes the app registers), HEAD too. */
  const rows = Object.keys(ROUTE_POLICIES).flatMap((row) => {
    const [method, pattern] = row.split(' ') as [string, string];
    const path = pattern
      .replace(/:(\w+)/g, (_, p: string) => ({ pid: 'p1', id: SERVER, keyId: 'k1', tool: 'echo' })[p] ?? p)
      .replace(/\*$/, 'anything');
    const variants = [{ row, method, path }];
    if (method === 'GET') variants.push({ row: `HEAD ${pattern}`, method: 'HEAD', path });
    return variants;
  });

  async function walk(headers: Record<string, string>, code: string): Promise<void> {
    const before = (await t.redis.keys(`${t.prefix}*`)).sort();
    const wrong: string[] = [];
    for (const { row, method, path } of rows) {
      const body = method === 'POST' || method === 'PUT' ? '{}' : undefined;
      // Credentials and the JSON type are right: only Host or Origin can be the reason for a refusal.
      const all = {
        ...bearer(ADMIN),
        ...(body ? JSON_TYPE : {}),
        ...(method === 'OPTIONS' ? { 'access-control-request-method': 'POST' } : {}),
        ...headers,
      };
      const res = await send(hub.base, method, path, all, body);
      const isHealth = path === '/healthz';
      const ok = isHealth ? res.status === 200 : res.status === 403 && (method === 'HEAD' || res.code === code);
      if (!ok) wrong.push(`${row}: ${res.status} ${res.code ?? ''}`);
      if (!isHealth) expect(res.headers['access-control-allow-origin'], row).toBeUndefined();
    }
    expect(wrong).toEqual([]);
    expect((await t.redis.keys(`${t.prefix}*`)).sort()).toEqual(before);
  }

  it('walks more than the MCP routes', () => {
    expect(rows.length).toBeGreaterThan(40);
  });

  it('Host: evil.example → 403 host_not_allowed', async () => {
    await walk({ host: EVIL }, 'host_not_allowed');
  });

  it('Host: evil.example:<port> with Origin: http://evil.example:<port> (DNS rebinding) → 403', async () => {
    await walk({ host: `${EVIL}:${hub.port}`, origin: `http://${EVIL}:${hub.port}` }, 'host_not_allowed');
  });

  it('a valid Host with Origin: http://evil.example → 403 origin_not_allowed', async () => {
    await walk({ origin: `http://${EVIL}` }, 'origin_not_allowed');
  });

  it('Origin: http://localhost:9999 (another local port) → 403 origin_not_allowed', async () => {
    await walk({ host: `localhost:${hub.port}`, origin: 'http://localhost:9999' }, 'origin_not_allowed');
  });

  it('Sec-Fetch-Site: cross-site without Origin → 403 origin_not_allowed', async () => {
    await walk({ 'sec-fetch-site': 'cross-site' }, 'origin_not_allowed');
  });

  it('the hub’s own origin passes the door on every route (the walk above can fail)', async () => {
    const refusedByTheDoor: string[] = [];
    for (const { row, method, path } of rows) {
      if (method === 'DELETE' || method === 'POST' || method === 'PUT') continue; // nothing to change here
      const res = await send(hub.base, method, path, { ...bearer(ADMIN), origin: hub.base });
      if (res.code === 'host_not_allowed' || res.code === 'origin_not_allowed') refusedByTheDoor.push(row);
    }
    expect(refusedByTheDoor).toEqual([]);
  });

  it('refuses a request without Host (HTTP/1.0), but answers /healthz', async () => {
    const raw = (path: string) =>
      trickle(hub.port, `GET ${path} HTTP/1.0\r\nAuthorization: Bearer ${ADMIN}\r\n\r\n`, [], 10);
    expect((await raw('/api/servers')).answer).toMatch(/^HTTP\/1\.[01] 403[\s\S]*host_not_allowed/);
    expect((await raw('/healthz')).answer).toMatch(/^HTTP\/1\.[01] 200/);
  });

  it('refuses a POST or PUT that takes a body without Content-Type: application/json (415), even when empty', async () => {
    const wrong: string[] = [];
    for (const { row, method, path } of rows) {
      if (method !== 'POST' && method !== 'PUT') continue;
      // No body: the Origin rule covers them.
      // (A group's membership PUT names its server in the path.)
      const bodyless = ['/restart', '/reset', '/test', '/reissue', '/groups/:gid/servers/:id'];
      if (bodyless.some((end) => row.endsWith(end))) continue;
      for (const [type, body] of [
        [undefined, undefined],
        ['text/plain', '{}'],
      ] as const) {
        const headers = { ...bearer(ADMIN), ...(type ? { 'content-type': type } : {}) };
        const res = await send(hub.base, method, path, headers, body);
        if (res.status !== 415 || res.code !== 'unsupported_media_type') wrong.push(`${row} ${type}: ${res.status}`);
      }
    }
    expect(wrong).toEqual([]);
  });
});

// ---- Host rules and the URLs the hub prints -------------------------------------------------------------

describe('Host rules', () => {
  it('accepts loopback names on any port, the bound address, the public URL host and HUB_ALLOWED_HOSTS', () => {
    const allowed = hostAllowedBy({
      boundHost: '192.168.1.5',
      publicUrl: 'https://hub.example.com',
      allowedHosts: ['alias.example', 'pinned.example:8443', '[fd00::1]'],
    });
    for (const host of [
      'localhost',
      'localhost:1234',
      'LOCALHOST:8080',
      '127.0.0.1:8080',
      '127.9.8.7',
      '[::1]:8080',
      '192.168.1.5:8080',
      'hub.example.com',
      'hub.example.com:443',
      'alias.example:1',
      'pinned.example:8443',
      '[fd00::1]:80',
    ]) {
      expect(allowed(host), host).toBe(true);
    }
    for (const host of [
      undefined,
      '',
      EVIL,
      `${EVIL}:8080`,
      'localhost.evil.example',
      'evil.example@localhost',
      'localhost/evil',
      '0.0.0.0:8080',
      'pinned.example:8080',
      'pinned.example',
      '127.0.0.1.nip.io',
      '[::2]',
    ]) {
      expect(allowed(host), String(host)).toBe(false);
    }
    // A wildcard bind names no host.
    expect(hostAllowedBy({ boundHost: '0.0.0.0', publicUrl: undefined, allowedHosts: [] })('0.0.0.0')).toBe(false);
  });
});

describe('discovery and client-config never reflect a Host they did not check', () => {
  const t = testRedis(testPrefix());
  let plain: Hub;
  let published: Hub;

  beforeAll(async () => {
    plain = await startHub({ HUB_ADMIN_TOKEN: ADMIN }, t.prefix);
    published = await startHub(
      { HUB_ADMIN_TOKEN: ADMIN, HUB_PUBLIC_URL: 'https://hub.example.com', HUB_ALLOWED_HOSTS: 'alias.example' },
      t.prefix,
    );
  });
  afterAll(async () => {
    await plain?.app.close();
    await published?.app.close();
    await t.cleanup();
  });

  it('answers a foreign Host with 403 instead of URLs on it', async () => {
    for (const path of ['/.well-known/mcp-servers', '/api/client-config?client=cursor']) {
      const res = await send(plain.base, 'GET', path, { ...bearer(ADMIN), host: EVIL });
      expect(res.status, path).toBe(403);
      expect(res.text).not.toContain(`${EVIL}/`);
    }
  });

  it('uses the validated Host when HUB_PUBLIC_URL is unset', async () => {
    const res = await send(plain.base, 'GET', '/.well-known/mcp-servers', { host: `localhost:${plain.port}` });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text).hub.url).toBe(`http://localhost:${plain.port}`);
  });

  it('uses HUB_PUBLIC_URL, whatever allowed Host the request came by', async () => {
    for (const host of ['alias.example', `127.0.0.1:${published.port}`]) {
      const discovery = await send(published.base, 'GET', '/.well-known/mcp-servers', { host });
      expect(discovery.status, host).toBe(200);
      expect(JSON.parse(discovery.text).aggregated.streamableHttp).toBe('https://hub.example.com/mcp');
      const config = await send(published.base, 'GET', '/api/client-config?client=cursor', {
        ...bearer(ADMIN),
        host,
      });
      expect(config.status, host).toBe(200);
      expect(config.text).toContain('https://hub.example.com/mcp');
      expect(config.text).not.toContain(host);
    }
    // The public URL's origin is the hub's own: a browser page served from it may call.
    const fromPublic = await send(published.base, 'GET', '/api/servers', {
      ...bearer(ADMIN),
      host: 'hub.example.com',
      origin: 'https://hub.example.com',
    });
    expect(fromPublic.status).toBe(200);
  });
});

// ---- timeouts -------------------------------------------------------------------------------------------

describe('request timeouts (finding 8: a slow body is never cut)', () => {
  const t = testRedis(testPrefix());
  let hub: Hub;
  const REQUEST_TIMEOUT_MS = 1_000;

  beforeAll(async () => {
    hub = await startHub(
      { HUB_ADMIN_TOKEN: ADMIN, HUB_REQUEST_TIMEOUT: `${REQUEST_TIMEOUT_MS}ms`, HUB_HEADERS_TIMEOUT: '500ms' },
      t.prefix,
    );
  });
  afterAll(async () => {
    await hub?.app.close();
    await t.cleanup();
  });

  /** Creates project `id` with a valid token, its body one byte every 100 ms (~18 s in all): the hub cuts it. */
  async function trickleProject(id: string) {
    const body = json({ id, name: 'x'.repeat(160) });
    const head =
      `POST /api/projects HTTP/1.1\r\nHost: 127.0.0.1:${hub.port}\r\nAuthorization: Bearer ${ADMIN}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    return { ...(await trickle(hub.port, head, [...body], 100)), bodyLength: body.length };
  }

  it('cuts a body trickled with a valid token: 408 or closed before the body is complete, nothing stored', async () => {
    const { sentChunks, answer, bodyLength } = await trickleProject('slow-project');
    expect(sentChunks).toBeLessThan(bodyLength);
    // Node answers 408 when it can, or just closes the connection.
    expect(answer).toMatch(/^(HTTP\/1\.1 408[\s\S]*)?$/);
    expect(await t.redis.hexists(t.keys.projects, 'slow-project')).toBe(0);
  });

  it('cuts headers trickled forever', async () => {
    const head = `GET /api/servers HTTP/1.1\r\nHost: 127.0.0.1:${hub.port}\r\n`;
    const lines = Array.from({ length: 200 }, (_, i) => `X-Slow-${i}: a\r\n`);
    const { sentChunks, answer } = await trickle(hub.port, head, lines, 100);
    expect(sentChunks).toBeLessThan(lines.length);
    expect(answer).toMatch(/^(HTTP\/1\.1 408[\s\S]*)?$/);
  });

  it('keeps an SSE stream open past the request timeout (a response, not a request) and usable', async () => {
    const res = await request(`${hub.base}/sse`, { headers: { ...bearer(ADMIN), accept: 'text/event-stream' } });
    expect(res.statusCode).toBe(200);
    let text = '';
    let ended = false;
    const seen = (pattern: RegExp) =>
      waitFor(`the stream to show ${pattern}`, () => {
        if (ended) throw new Error(`stream ended before ${pattern}: ${text}`);
        return pattern.exec(text);
      });
    res.body.on('data', (chunk) => {
      text += String(chunk);
    });
    res.body.on('close', () => {
      ended = true;
    });
    const endpoint = (await seen(/event: endpoint\ndata: (\S+)/))[1] ?? '';
    // A request started after the stream is cut for its request timeout: by then the idle stream is older than
    // the timeout, and the hub's timeout check has run since.
    const late = await trickleProject('late-project');
    expect(late.sentChunks).toBeLessThan(late.bodyLength);
    expect(ended).toBe(false);
    const posted = await send(
      hub.base,
      'POST',
      endpoint,
      { ...bearer(ADMIN), ...JSON_TYPE },
      json({
        jsonrpc: '2.0',
        id: 7,
        method: 'initialize',
        params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 't', version: '1' } },
      }),
    );
    expect(posted.status, posted.text).toBe(202);
    await seen(/"serverInfo"[\s\S]*"id":7|"id":7[\s\S]*"serverInfo"/);
    res.body.destroy();
  });
});

// ---- the generated admin token (main process) -----------------------------------------------------------

describe('the admin token generated on first start', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'hub-token-'));
    dirs.push(dir);
    return dir;
  };
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  async function start(cwd: string, env: Record<string, string> = {}) {
    const run = runMain('hub', { REDIS_URL: redisUrl(), KEY_PREFIX: testPrefix(), HUB_PORT: '0', ...env }, { cwd });
    const listening = await run.waitForEvent('hub.listening');
    return { run, base: String(listening.address) };
  }

  it('writes .data/admin-token (0600, in a 0700 directory) without HUB_ADMIN_TOKEN; 401 without it, 200 with it; reused on the next start', async () => {
    const cwd = tempDir();
    const first = await start(cwd);
    const file = join(cwd, '.data', 'admin-token');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(cwd, '.data')).mode & 0o777).toBe(0o700);
    const token = readFileSync(file, 'utf8').trim();
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(first.run.lines.find((l) => l.event === 'auth.token_generated')).toMatchObject({ path: file });

    expect((await send(first.base, 'GET', '/api/servers')).status).toBe(401);
    // The default config's DNS rebinding attack is refused before credentials are even looked at.
    const port = new URL(first.base).port;
    const rebound = await send(
      first.base,
      'POST',
      '/api/servers',
      { ...JSON_TYPE, host: `${EVIL}:${port}`, origin: `http://${EVIL}:${port}` },
      json({ id: 'pwn', transport: 'stdio', config: { command: 'sh' } }),
    );
    expect(rebound.status).toBe(403);
    expect((await send(first.base, 'GET', '/api/servers', bearer(token))).status).toBe(200);
    expect(await first.run.stop()).toBe(0);

    const second = await start(cwd);
    expect(second.run.lines.find((l) => l.event === 'auth.token_loaded')).toMatchObject({ path: file });
    expect(second.run.lines.some((l) => l.event === 'auth.token_generated')).toBe(false);
    expect(readFileSync(file, 'utf8').trim()).toBe(token);
    expect((await send(second.base, 'GET', '/api/servers', bearer(token))).status).toBe(200);
    expect(await second.run.stop()).toBe(0);

    // The token is in its file only: never in a log line.
    const logged = JSON.stringify([...first.run.lines, ...second.run.lines]) + first.run.stderr + second.run.stderr;
    expect(logged).not.toContain(token);
  });

  it('makes a token file others can read private, with a warning', async () => {
    const cwd = tempDir();
    const file = join(cwd, 'token');
    writeFileSync(file, 'a-token-someone-wrote-0123456789\n');
    chmodSync(file, 0o644);
    const { run, base } = await start(cwd, { HUB_ADMIN_TOKEN_FILE: 'token' });
    expect(run.lines.find((l) => l.event === 'auth.token_file_mode')).toMatchObject({ path: file, mode: '644' });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect((await send(base, 'GET', '/api/servers', bearer('a-token-someone-wrote-0123456789'))).status).toBe(200);
    expect(await run.stop()).toBe(0);
  });

  it('refuses a token file with no usable token (exit 2)', async () => {
    const cwd = tempDir();
    writeFileSync(join(cwd, 'token'), 'short\n', { mode: 0o600 });
    const run = runMain('hub', { REDIS_URL: redisUrl(), HUB_PORT: '0', HUB_ADMIN_TOKEN_FILE: 'token' }, { cwd });
    expect(await run.exited).toBe(2);
    expect(run.stderr).toMatch(/HUB_ADMIN_TOKEN_FILE: .*no usable token/);
  });

  it('refuses HUB_AUTH=none with HUB_HOST=0.0.0.0: exit code 2, naming HUB_AUTH', async () => {
    const run = runMain('hub', { REDIS_URL: redisUrl(), HUB_AUTH: 'none', HUB_HOST: '0.0.0.0', HUB_PORT: '0' });
    expect(await run.exited).toBe(2);
    expect(run.stderr).toMatch(/HUB_AUTH: "none"/);
  });

  it('buildHub refuses auth "token" without a token instead of falling back to open', async () => {
    await expect(
      buildHub({ config: loadHubConfig({ REDIS_URL: redisUrl() }), log: captureLogger('hub').log }),
    ).rejects.toThrow(/no admin token/);
  });
});
