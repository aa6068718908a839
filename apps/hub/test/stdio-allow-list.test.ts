import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { loadHubConfig, Registry } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, startSupervisorProcess, stopStack, waitFor } from '../../../test/processes.js';
import { captureLogger, redisUrl, testRedis } from '../../../test/support.js';
import { buildHub } from '../src/index.js';

/**
 * Finding 4 of issue 10 against a running hub (and a real supervisor running the workers): with realistic
 * MCP_STDIO_ALLOWED_COMMANDS entries, an owner key could still run code through `node -e`, `npx -c`,
 * NODE_OPTIONS, PATH, LD_PRELOAD or a free cwd. Each attempt must now answer 403, store nothing and run
 * nothing, while an allowed command line is stored and its worker runs.
 */

const ADMIN = 'stdio-allow-list-admin-token-0123';
const NODE = process.execPath;
const FIXTURES = dirname(fixture('echo-server.mjs'));
const ENTRIES = [`${NODE} ${FIXTURES}/*.mjs`, 'npx -y @modelcontextprotocol/server-*'];

const t = testRedis();
const registry = new Registry(t.redis, t.keys);
const hubLogs = captureLogger('hub');
const work = mkdtempSync(join(tmpdir(), 'stdio-allow-list-'));
const roots = join(work, 'roots');
const allowedCwd = join(roots, 'srv');
const outside = join(work, 'outside');
/** What every forbidden command line would create if it ran. */
const marker = join(work, 'pwned');
const writeMarker = `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'x')`;
let hub: FastifyInstance;
let base: string;
let supervisor: ChildProcess;
let ownerKey: string;

beforeAll(async () => {
  for (const dir of [allowedCwd, outside]) mkdirSync(dir, { recursive: true });
  symlinkSync(outside, join(roots, 'escape'));
  supervisor = startSupervisorProcess(redisUrl(), t.prefix, {
    MCP_RESYNC_INTERVAL: '300ms',
    MCP_HEALTH_INTERVAL: '150ms',
  });
  hub = await buildHub({
    config: loadHubConfig({
      REDIS_URL: redisUrl(),
      KEY_PREFIX: t.prefix,
      HUB_ADMIN_TOKEN: ADMIN,
      MCP_STDIO_ALLOWED_COMMANDS: ENTRIES.join(', '),
      MCP_STDIO_CWD_ROOTS: roots,
    }),
    log: hubLogs.log,
  });
  base = await hub.listen({ host: '127.0.0.1', port: 0 });
  expect((await api('POST', '/api/projects', ADMIN, { id: 'acme', name: 'Acme' })).status).toBe(201);
  const key = await api('POST', '/api/projects/acme/keys', ADMIN, { name: 'owner', role: 'owner' });
  expect(key.status).toBe(201);
  ownerKey = (key.json as { key: string }).key;
}, 60_000);

afterAll(async () => {
  await stopStack(supervisor, hub, t.prefix);
  await t.cleanup();
  rmSync(work, { recursive: true, force: true });
});

interface Answer {
  status: number;
  json: { error?: { code: string; message: string; details?: Record<string, unknown> } } & Record<string, unknown>;
}

async function api(method: string, path: string, token: string, body?: unknown): Promise<Answer> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: (text === '' ? {} : JSON.parse(text)) as Answer['json'] };
}

type StdioConfig = { command: string; args?: string[]; env?: Record<string, string>; cwd?: string };
const spec = (id: string, config: StdioConfig) => ({ id, transport: 'stdio', config });
const echoLine: StdioConfig = { command: NODE, args: [fixture('echo-server.mjs')] };

/** Registers as `token`, expects 403 forbidden naming `path`, and that nothing was stored. */
async function refused(id: string, config: StdioConfig, path: string, token = ownerKey): Promise<Answer> {
  const res = await api('POST', '/api/servers', token, spec(id, config));
  expect(res.status, JSON.stringify(res.json)).toBe(403);
  expect(res.json.error?.code).toBe('forbidden');
  expect(res.json.error?.details?.path).toBe(path);
  expect(await registry.getServer(id)).toBeNull();
  return res;
}

describe('MCP_STDIO_ALLOWED_COMMANDS matches whole command lines', () => {
  it('refuses code smuggled through the arguments of an allowed command', async () => {
    const res = await refused('node-eval', { command: NODE, args: ['-e', writeMarker] }, 'config.args[0]');
    expect(res.json.error?.message).toContain(`argument 1 "-e" does not match "${FIXTURES}/*.mjs"`);
    expect(res.json.error?.message).toMatch(/a bare command allows no arguments/);
    expect(res.json.error?.details?.allowed).toEqual(ENTRIES);
    await refused('node-eval-eq', { command: NODE, args: [`--eval=${writeMarker}`] }, 'config.args[0]');
    await refused(
      'node-require',
      { command: NODE, args: ['--require', marker, fixture('echo-server.mjs')] },
      'config.args[0]',
    );
    await refused(
      'node-extra',
      { command: NODE, args: [fixture('echo-server.mjs'), '-e', writeMarker] },
      'config.args[1]',
    );
    await refused('node-escape', { command: NODE, args: [`${FIXTURES}/../../evil.mjs`] }, 'config.args[0]');
    await refused('npx-c', { command: 'npx', args: ['-c', `touch ${marker}`] }, 'config.args[0]');
    await refused(
      'npx-more',
      { command: 'npx', args: ['-y', '@modelcontextprotocol/server-everything', '-c', 'id'] },
      'config.args[2]',
    );
    await refused(
      'npx-file',
      { command: 'npx', args: ['-y', `@modelcontextprotocol/server-x@file:${work}`] },
      'config.args[1]',
    );
    await refused('sh', { command: '/bin/sh', args: ['-c', `touch ${marker}`] }, 'config.command');
  });

  it('refuses loader and interpreter hooks in env, whoever asks', async () => {
    const attempts: [string, string][] = [
      ['NODE_OPTIONS', `--require ${marker}`],
      ['PATH', `${work}:/usr/bin`],
      ['LD_PRELOAD', join(work, 'evil.so')],
      ['npm_config_call', `touch ${marker}`],
      ['PYTHONSTARTUP', marker],
      ['GIT_SSH_COMMAND', `touch ${marker}`],
      ['PATH=/tmp/evil', 'x'],
    ];
    for (const [name, value] of attempts) {
      const id = `env-${name.toLowerCase().replace(/[^a-z0-9]/g, '-')}`;
      const res = await refused(id, { ...echoLine, env: { API_KEY: 'fine', [name]: value } }, `config.env.${name}`);
      expect(res.json.error?.message).toMatch(/MCP_STDIO_ALLOWED_ENV/);
    }
    // The operator's configuration is the authority: the admin token is refused too.
    await refused(
      'env-admin',
      { ...echoLine, env: { NODE_OPTIONS: `--require ${marker}` } },
      'config.env.NODE_OPTIONS',
      ADMIN,
    );
    await refused('eval-admin', { command: NODE, args: ['-e', writeMarker] }, 'config.args[0]', ADMIN);
  });

  it('refuses TLS trust and proxy variables in env: no MITM of the package downloads of an allowed command line', async () => {
    // The review's attack: OpenSSL skips whatever precedes "-----BEGIN", so SSL_CERT_FILE=/proc/self/environ
    // with the attacker's CA in another variable makes `npx`/`uvx` trust the attacker's package registry.
    const ca = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----';
    const npxLine: StdioConfig = { command: 'npx', args: ['-y', '@modelcontextprotocol/server-everything'] };
    const attempts: [string, string][] = [
      ['SSL_CERT_FILE', '/proc/self/environ'],
      ['SSL_CERT_DIR', work],
      ['REQUESTS_CA_BUNDLE', '/proc/self/environ'],
      ['CURL_CA_BUNDLE', '/proc/self/environ'],
      ['NODE_EXTRA_CA_CERTS', '/proc/self/environ'],
      ['HTTPS_PROXY', 'http://attacker.example:8080'],
      ['https_proxy', 'http://attacker.example:8080'],
      ['HTTP_PROXY', 'http://attacker.example:8080'],
      ['ALL_PROXY', 'socks5://attacker.example:1080'],
      ['NO_PROXY', '*'],
    ];
    for (const [name, value] of attempts) {
      const id = `tls-${name.toLowerCase().replace(/[^a-z0-9]/g, '-')}`;
      const res = await refused(id, { ...npxLine, env: { CA: ca, [name]: value } }, `config.env.${name}`);
      expect(res.json.error?.message).toMatch(/MCP_STDIO_ALLOWED_ENV/);
    }
    await refused(
      'tls-admin',
      { ...npxLine, env: { CA: ca, SSL_CERT_FILE: '/proc/self/environ' } },
      'config.env.SSL_CERT_FILE',
      ADMIN,
    );
  });

  it('refuses a cwd outside MCP_STDIO_CWD_ROOTS, relative, with "..", or escaping through a symlink', async () => {
    await refused('cwd-outside', { ...echoLine, cwd: outside }, 'config.cwd');
    await refused('cwd-relative', { ...echoLine, cwd: 'srv' }, 'config.cwd');
    await refused('cwd-dotdot', { ...echoLine, cwd: `${roots}/../outside` }, 'config.cwd');
    const res = await refused('cwd-symlink', { ...echoLine, cwd: join(roots, 'escape') }, 'config.cwd');
    expect(res.json.error?.message).toContain('(really');
    await refused('cwd-root', { ...echoLine, cwd: '/' }, 'config.cwd');
  });

  it('refuses turning an allowed server into a forbidden one, and keeps the stored spec', async () => {
    expect((await api('POST', '/api/servers', ownerKey, spec('changing', echoLine))).status).toBe(201);
    const res = await api(
      'PUT',
      '/api/servers/changing',
      ownerKey,
      spec('changing', { command: NODE, args: ['-e', writeMarker] }),
    );
    expect(res.status).toBe(403);
    expect((await registry.getServer('changing'))?.config).toMatchObject({ args: echoLine.args });
    expect((await api('DELETE', '/api/servers/changing', ownerKey)).status).toBe(204);
  });

  it('accepts an allowed command line with a cwd inside the roots, and its worker runs; nothing forbidden ran', async () => {
    const res = await api(
      'POST',
      '/api/servers',
      ownerKey,
      spec('echo', { ...echoLine, env: { API_KEY: 'k' }, cwd: allowedCwd }),
    );
    expect(res.status, JSON.stringify(res.json)).toBe(201);
    const answer = await waitFor(
      'the allowed server to answer through the hub',
      async () => {
        const call = await fetch(`${base}/mcp/echo/echo`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${ownerKey}`,
            'content-type': 'application/json',
            accept: 'application/json',
          },
          body: JSON.stringify({ message: 'allowed' }),
        });
        return call.status === 200 ? ((await call.json()) as { content: { text: string }[] }) : null;
      },
      30_000,
      200,
    );
    expect(answer.content[0]?.text).toBe('allowed');
    // Every server the supervisor could run is the allowed one: the forbidden command lines never ran.
    expect((await registry.listServers()).map((s) => s.id)).toEqual(['echo']);
    expect(existsSync(marker)).toBe(false);
  });
});
