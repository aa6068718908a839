import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import getPort from 'get-port';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { killGroup, ROOT, waitFor } from '../../../test/processes.js';

/**
 * `pnpm start`'s private Redis (security review of issue 10, finding A): it listened without a password and
 * kept its data in world-readable directories, so any local user could read worker tokens and secrets, or
 * write a spec for the supervisor to run. Runs the real script (from a copy of the checkout's layout, so its
 * `.data` is a temporary one) and attacks the Redis it starts as another local process would.
 */

const work = mkdtempSync(join(tmpdir(), 'start-script-'));
const data = join(work, '.data');
const running: ChildProcess[] = [];

afterAll(async () => {
  for (const child of running) if (child.pid && child.exitCode === null) killGroup(child.pid);
  rmSync(work, { recursive: true, force: true });
});

/** Runs `scripts/start.mjs` with `work` as the checkout; resolves once the hub answers, with its output. */
async function start(): Promise<{ child: ChildProcess; output: () => string; redisPort: number }> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? work,
    HUB_PORT: String(await getPort()),
    MCP_WORKER_BASE_PORT: String(30_000 + Math.floor(Math.random() * 300) * 100),
    LOG_LEVEL: 'warn',
  };
  // --private-redis: this host may run a Redis on 6379 of its own; the script's private one is under test.
  const child = spawn(process.execPath, [join(work, 'scripts', 'start.mjs'), '--private-redis'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  running.push(child);
  let output = '';
  child.stdout?.on('data', (chunk) => {
    output += String(chunk);
  });
  child.stderr?.on('data', (chunk) => {
    output += String(chunk);
  });
  await waitFor('the hub to listen', () => output.includes('MCP Hub is listening'), 30_000, 100);
  const port = /started a private redis-server on 127\.0\.0\.1:(\d+)/.exec(output)?.[1];
  expect(port, output).toBeDefined();
  return { child, output: () => output, redisPort: Number(port) };
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}

/** Sends one inline command as a client without credentials would, and resolves with the first reply. */
function rawCommand(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('error', reject);
    socket.once('connect', () => socket.write(`${command}\r\n`));
    socket.once('data', (reply) => {
      socket.destroy();
      resolve(String(reply));
    });
  });
}

const mode = (path: string) => statSync(path).mode & 0o777;

describe('pnpm start: the private Redis', () => {
  it('wants a password kept in a private .data, never shown; the next start reuses it', async () => {
    mkdirSync(join(work, 'scripts'));
    copyFileSync(join(ROOT, 'scripts', 'start.mjs'), join(work, 'scripts', 'start.mjs'));
    symlinkSync(join(ROOT, 'apps'), join(work, 'apps'));
    // As an older start (or a plain mkdir) left them: readable by every local user.
    mkdirSync(join(data, 'redis'), { recursive: true, mode: 0o755 });

    const first = await start();
    expect(mode(data)).toBe(0o700);
    expect(mode(join(data, 'redis'))).toBe(0o700);
    expect(mode(join(data, 'redis-password'))).toBe(0o600);
    const password = readFileSync(join(data, 'redis-password'), 'utf8').trim();
    expect(password).toMatch(/^[0-9a-f]{64}$/);

    // Another local process, without the password, can neither read nor write anything.
    expect(await rawCommand(first.redisPort, 'HGETALL mcp:servers')).toMatch(/^-NOAUTH/);
    expect(await rawCommand(first.redisPort, 'HSET mcp:servers x {}')).toMatch(/^-NOAUTH/);
    // The hub and supervisor got it: the hub stored its data there (its admin token is in the same .data).
    const insider = new Redis({ port: first.redisPort, password, lazyConnect: true });
    try {
      expect(await insider.ping()).toBe('PONG');
    } finally {
      insider.disconnect();
    }
    expect(mode(join(data, 'admin-token'))).toBe(0o600);

    // Never printed, and not on redis-server's command line (which every user's `ps` shows).
    expect(first.output()).toContain('password in .data/redis-password');
    expect(first.output()).not.toContain(password);
    const commandLines = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    expect(commandLines).toContain(`127.0.0.1:${first.redisPort}`);
    expect(commandLines).not.toContain(password);
    // Files Redis writes are its user's only (umask 077), even without the directory's protection.
    const aof = join(data, 'redis', 'appendonlydir');
    await waitFor('the AOF directory', () => statSync(aof, { throwIfNoEntry: false }));
    expect(mode(aof) & 0o077).toBe(0);

    await stop(first.child);
    const second = await start();
    expect(readFileSync(join(data, 'redis-password'), 'utf8').trim()).toBe(password);
    const again = new Redis({ port: second.redisPort, password, lazyConnect: true });
    try {
      expect(await again.ping()).toBe('PONG');
    } finally {
      again.disconnect();
    }
    await stop(second.child);
  }, 90_000);
});
