import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadHubConfig, loadSupervisorConfig, loadWorkerConfig, OPERATOR_ENV_VARS } from './config.js';

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

  it('has every operator variable in .env.example, and nothing else', () => {
    const example = readFileSync(new URL('../../../.env.example', import.meta.url), 'utf8');
    const listed = [...example.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]);
    expect([...listed].sort()).toEqual([...OPERATOR_ENV_VARS].sort());
  });
});
