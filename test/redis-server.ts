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

/**
 * A redis-server of one test alone, on a fixed port, with an fsync'd AOF so that a SIGKILL loses nothing:
 * for tests of what happens while Redis is away and when it comes back (`kill`, then `start` again).
 */
export class DurableRedis {
  private child: ChildProcess | null = null;
  readonly dir = mkdtempSync(join(tmpdir(), 'mcp-hub-durable-redis-'));
  constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--dir',
        this.dir,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    this.child = child;
    const probe = new Redis({ port: this.port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
    probe.on('error', () => {});
    try {
      for (let i = 0; i < 200; i++) {
        if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
        const up = await probe.connect().then(
          () => true,
          () => false,
        );
        if (up) {
          // Connected; answers PONG once it has loaded its AOF (LOADING errors until then).
          for (let j = 0; j < 400; j++) {
            if ((await probe.ping().catch(() => null)) === 'PONG') return;
            await new Promise((r) => setTimeout(r, 25));
          }
          throw new Error(`redis-server on port ${this.port} did not finish loading`);
        }
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`redis-server did not answer on port ${this.port}`);
    } finally {
      probe.disconnect();
    }
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    await exited;
  }

  signal(signal: NodeJS.Signals): void {
    this.child?.kill(signal);
  }

  async destroy(): Promise<void> {
    this.signal('SIGCONT');
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
