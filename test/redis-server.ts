import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import getPort from 'get-port';
import { Redis } from 'ioredis';

export interface PrivateRedis {
  url: string;
  port: number;
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 10_000;

/** Starts a throwaway `redis-server` on a free loopback port, persisting nothing. */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await getPort({ host: '127.0.0.1' });
  const dir = mkdtempSync(join(tmpdir(), 'mcp-hub-redis-'));
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const failed = once(child, 'error');
  const deadline = Date.now() + READY_TIMEOUT_MS;
  const probe = new Redis({
    port,
    host: '127.0.0.1',
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  probe.on('error', () => {});
  try {
    for (;;) {
      const ready = await Promise.race([
        probe.connect().then(
          () => true,
          () => false,
        ),
        failed.then(([err]) => {
          throw new Error(`could not start redis-server (is it on PATH?): ${(err as Error).message}`);
        }),
      ]);
      if (ready) break;
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${port}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    probe.disconnect();
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
