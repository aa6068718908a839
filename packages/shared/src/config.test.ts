import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError } from './config.js';
import { loadHubConfig } from './hub-config.js';
import { OPERATOR_ENV_VARS } from './operator-env.js';
import { loadSupervisorConfig } from './supervisor-config.js';
import { loadWorkerConfig } from './worker-config.js';

describe('config loaders', () => {
  it('applies defaults for the hub', () => {
    const config = loadHubConfig({});
    expect(config).toMatchObject({
      redisUrl: 'redis://127.0.0.1:6379',
      keyPrefix: 'mcp:',
      host: '127.0.0.1',
      port: 8080,
      adminToken: undefined,
      logLevel: 'info',
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('reads values and treats empty strings as unset', () => {
    const config = loadHubConfig({ HUB_PORT: '9090', HUB_ADMIN_TOKEN: '', KEY_PREFIX: '{hub}:', LOG_LEVEL: 'debug' });
    expect(config).toMatchObject({ port: 9090, adminToken: undefined, keyPrefix: '{hub}:', logLevel: 'debug' });
  });

  it('names every bad variable at once', () => {
    let caught: unknown;
    try {
      loadHubConfig({ HUB_PORT: 'eighty', REDIS_URL: 'http://x', LOG_LEVEL: 'loud', HUB_ADMIN_TOKEN: 'short' });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const message = (caught as ConfigError).message;
    for (const name of ['HUB_PORT', 'REDIS_URL', 'LOG_LEVEL', 'HUB_ADMIN_TOKEN']) expect(message).toContain(name);
    expect((caught as ConfigError).problems).toHaveLength(4);
  });

  it('defaults to token auth with a token file, and refuses open mode beyond loopback', () => {
    expect(loadHubConfig({})).toMatchObject({
      auth: 'token',
      adminTokenFile: '.data/admin-token',
      allowedHosts: [],
      requestTimeoutMs: 30_000,
      headersTimeoutMs: 10_000,
    });
    for (const host of ['127.0.0.1', '127.8.9.10', 'localhost', '::1', '[::1]']) {
      expect(loadHubConfig({ HUB_AUTH: 'none', HUB_HOST: host }).auth, host).toBe('none');
    }
    for (const host of ['0.0.0.0', '::', '192.168.1.5', 'hub.example.com', '127.0.0.1.nip.io']) {
      expect(() => loadHubConfig({ HUB_AUTH: 'none', HUB_HOST: host }), host).toThrow(/HUB_AUTH: "none"/);
    }
    expect(() => loadHubConfig({ HUB_AUTH: 'open' })).toThrow(/HUB_AUTH: must be one of token, none/);
  });

  it('reads allowed hosts and request timeouts, refusing a headers timeout past the request timeout', () => {
    const config = loadHubConfig({
      HUB_ALLOWED_HOSTS: 'Hub.Example.com, 10.0.0.5:8080,[fd00::1]',
      HUB_REQUEST_TIMEOUT: '1m',
      HUB_HEADERS_TIMEOUT: '5s',
    });
    expect(config).toMatchObject({
      allowedHosts: ['hub.example.com', '10.0.0.5:8080', '[fd00::1]'],
      requestTimeoutMs: 60_000,
      headersTimeoutMs: 5_000,
    });
    expect(() => loadHubConfig({ HUB_ALLOWED_HOSTS: 'http://hub.example.com' })).toThrow(/HUB_ALLOWED_HOSTS/);
    expect(() => loadHubConfig({ HUB_REQUEST_TIMEOUT: '5s', HUB_HEADERS_TIMEOUT: '10s' })).toThrow(
      /HUB_HEADERS_TIMEOUT/,
    );
    expect(() => loadHubConfig({ HUB_REQUEST_TIMEOUT: '0' })).toThrow(/HUB_REQUEST_TIMEOUT/);
  });

  it('rejects a port out of range', () => {
    expect(() => loadHubConfig({ HUB_PORT: '70000' })).toThrow(/HUB_PORT: must be 0-65535/);
  });

  it('parses supervisor durations with units and booleans in words', () => {
    const config = loadSupervisorConfig({
      MCP_WORKER_IDLE_TTL: '5m',
      MCP_RESYNC_INTERVAL: '250ms',
      MCP_HEALTH_INTERVAL: '1.5s',
      MCP_SUPERVISOR_ENABLED: 'false',
      MCP_WORKER_MAX: '3',
    });
    expect(config).toMatchObject({
      workerIdleTtlMs: 300_000,
      resyncIntervalMs: 250,
      healthIntervalMs: 1_500,
      enabled: false,
      workerMax: 3,
    });
    expect(loadSupervisorConfig({ MCP_WORKER_IDLE_TTL: '30' }).workerIdleTtlMs).toBe(30_000);
    expect(loadSupervisorConfig({}).workerIdleTtlMs).toBe(0);
  });

  it('rejects bad supervisor values by name', () => {
    expect(() => loadSupervisorConfig({ MCP_SUPERVISOR_ENABLED: 'maybe' })).toThrow(
      /MCP_SUPERVISOR_ENABLED: must be true or false/,
    );
    expect(() => loadSupervisorConfig({ MCP_WORKER_IDLE_TTL: 'soon' })).toThrow(
      /MCP_WORKER_IDLE_TTL: must be a duration/,
    );
    expect(() => loadSupervisorConfig({ MCP_WORKER_MAX: '0' })).toThrow(/MCP_WORKER_MAX: must be >= 1/);
    expect(() => loadSupervisorConfig({ MCP_WORKER_BASE_PORT: '-1' })).toThrow(/MCP_WORKER_BASE_PORT/);
  });

  it('requires the worker identity', () => {
    expect(() => loadWorkerConfig({})).toThrow(/MCP_SERVER_ID.*MCP_WORKER_PORT.*MCP_WORKER_INSTANCE.*MCP_WORKER_TOKEN/);
    const token = 'x'.repeat(43);
    expect(
      loadWorkerConfig({
        MCP_SERVER_ID: 'a',
        MCP_WORKER_PORT: '41000',
        MCP_WORKER_INSTANCE: 'i1',
        MCP_WORKER_TOKEN: token,
      }),
    ).toMatchObject({ serverId: 'a', port: 41_000, host: '127.0.0.1', token });
    expect(() =>
      loadWorkerConfig({
        MCP_SERVER_ID: 'a',
        MCP_WORKER_PORT: '41000',
        MCP_WORKER_INSTANCE: 'i1',
        MCP_WORKER_TOKEN: 'short',
      }),
    ).toThrow(/MCP_WORKER_TOKEN: must be at least 32 characters/);
  });

  it('hands workers only the allow-listed part of the supervisor environment', () => {
    const config = loadSupervisorConfig({
      PATH: '/usr/bin',
      HOME: '/home/hub',
      LC_ALL: 'C.UTF-8',
      MCP_STDIO_SANDBOX: 'bwrap',
      HUB_SECRET_KEY: 'k'.repeat(64),
      HUB_ADMIN_TOKEN: 'admin-token-that-must-stay-home',
      AWS_SECRET_ACCESS_KEY: 'nope',
      NODE_OPTIONS: '--require /tmp/evil.js',
      LD_PRELOAD: '/tmp/evil.so',
    });
    expect(config.workerInheritedEnv).toEqual({
      PATH: '/usr/bin',
      HOME: '/home/hub',
      LC_ALL: 'C.UTF-8',
      MCP_STDIO_SANDBOX: 'bwrap',
    });
    expect(config.secretKey).toBe('k'.repeat(64));
  });

  it('compiles MCP_STDIO_ALLOWED_COMMANDS once and names bad entries', () => {
    const config = loadHubConfig({
      MCP_STDIO_ALLOWED_COMMANDS: 'npx -y @modelcontextprotocol/server-* , node /srv/a.js **',
    });
    expect(config.stdioAllowedCommands?.map((entry) => entry.source)).toEqual([
      'npx -y @modelcontextprotocol/server-*',
      'node /srv/a.js **',
    ]);
    expect(loadHubConfig({}).stdioAllowedCommands).toBeUndefined();
    expect(() => loadHubConfig({ MCP_STDIO_ALLOWED_COMMANDS: 'node ** x' })).toThrow(
      /MCP_STDIO_ALLOWED_COMMANDS: entry 1: .*"\*\*" may only be the whole last token/,
    );
  });

  it('reads the stdio env allowances and cwd roots, refusing relative or unnormalised roots', () => {
    const config = loadHubConfig({
      MCP_STDIO_ALLOWED_ENV: 'NODE_EXTRA_CA_CERTS, UV_*',
      MCP_STDIO_CWD_ROOTS: '/srv/mcp,/opt/x',
    });
    expect(config.stdioAllowedEnv).toEqual(['NODE_EXTRA_CA_CERTS', 'UV_*']);
    expect(config.stdioCwdRoots).toEqual(['/srv/mcp', '/opt/x']);
    expect(loadHubConfig({}).stdioAllowedEnv).toEqual([]);
    expect(() => loadHubConfig({ MCP_STDIO_CWD_ROOTS: 'srv/mcp' })).toThrow(/MCP_STDIO_CWD_ROOTS/);
    expect(() => loadHubConfig({ MCP_STDIO_CWD_ROOTS: '/srv/../etc' })).toThrow(/MCP_STDIO_CWD_ROOTS/);
    expect(() => loadHubConfig({ MCP_STDIO_ALLOWED_ENV: 'PATH=/x' })).toThrow(/MCP_STDIO_ALLOWED_ENV/);
  });

  it('reads the worker sandbox settings', () => {
    const base = {
      MCP_SERVER_ID: 'a',
      MCP_WORKER_PORT: '41000',
      MCP_WORKER_INSTANCE: 'i1',
      MCP_WORKER_TOKEN: 'a-worker-token-of-at-least-32-characters',
    };
    expect(loadWorkerConfig(base)).toMatchObject({ stdioSandbox: 'none', stdioSandboxReadOnlyPaths: [] });
    expect(loadWorkerConfig(base).stdioSandboxDir).toMatch(/^\/.*\.data\/stdio-sandbox$/);
    expect(
      loadWorkerConfig({
        ...base,
        MCP_STDIO_SANDBOX: 'bwrap',
        MCP_STDIO_SANDBOX_DIR: '/var/lib/mcp',
        MCP_STDIO_SANDBOX_READ_ONLY_PATHS: '/srv/mcp',
      }),
    ).toMatchObject({
      stdioSandbox: 'bwrap',
      stdioSandboxDir: '/var/lib/mcp',
      stdioSandboxReadOnlyPaths: ['/srv/mcp'],
    });
    expect(() => loadWorkerConfig({ ...base, MCP_STDIO_SANDBOX: 'firejail' })).toThrow(
      /MCP_STDIO_SANDBOX: must be one of none, bwrap/,
    );
  });

  it('hands workers the stdio policy, and stops the supervisor at start when a worker would refuse it', () => {
    const base = {
      MCP_SERVER_ID: 'a',
      MCP_WORKER_PORT: '41000',
      MCP_WORKER_INSTANCE: 'i1',
      MCP_WORKER_TOKEN: 'a-worker-token-of-at-least-32-characters',
    };
    expect(loadWorkerConfig(base)).toMatchObject({
      stdioAllowedCommands: undefined,
      stdioAllowedEnv: [],
      stdioCwdRoots: undefined,
    });
    const policy = {
      MCP_STDIO_ALLOWED_COMMANDS: 'npx -y @modelcontextprotocol/server-*',
      MCP_STDIO_ALLOWED_ENV: 'HTTPS_PROXY',
      MCP_STDIO_CWD_ROOTS: '/srv/mcp',
    };
    const worker = loadWorkerConfig({ ...base, ...policy });
    expect(worker.stdioAllowedCommands?.map((entry) => entry.source)).toEqual([
      'npx -y @modelcontextprotocol/server-*',
    ]);
    expect(worker).toMatchObject({ stdioAllowedEnv: ['HTTPS_PROXY'], stdioCwdRoots: ['/srv/mcp'] });
    // The supervisor hands these on verbatim (MCP_STDIO_*): it checks them once rather than each worker failing.
    expect(loadSupervisorConfig(policy).workerInheritedEnv).toMatchObject(policy);
    expect(() => loadSupervisorConfig({ MCP_STDIO_ALLOWED_COMMANDS: 'node **, **' })).toThrow(
      /MCP_STDIO_ALLOWED_COMMANDS/,
    );
  });

  it('has every operator variable in .env.example, and nothing else', () => {
    const example = readFileSync(new URL('../../../.env.example', import.meta.url), 'utf8');
    const listed = [...example.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]);
    expect([...listed].sort()).toEqual([...OPERATOR_ENV_VARS].sort());
  });
});
