import { randomBytes } from 'node:crypto';
import { WORKER_TOKEN_BYTES } from '@mcp-hub/shared';
import type { SupervisorContext } from './context.js';
import { NoFreePortError } from './port-allocator.js';
import { spawnWorker } from './process-manager.js';
import { Semaphore } from './semaphore.js';

const STARTUP_POLL_MS = 25;

export type SpawnedRun = ReturnType<typeof spawnWorker> & { instance: string; token: string; port: number };

/**
 * Starting worker processes, for a new run (`WorkerRuns`) and for a successor (`WorkerReplacement`) alike:
 * the start slots both share, a port claimed, and the process spawned with a fresh instance id and credential.
 */
export class WorkerSpawner {
  private readonly startSlots: Semaphore;

  constructor(
    private readonly ctx: SupervisorContext,
    /** The worker's entry script (its bundle, dist/bundle/worker.mjs). */
    private readonly entry: string,
  ) {
    this.startSlots = new Semaphore(ctx.config.startConcurrency);
  }

  /** Waits for a start slot (config.startConcurrency); the caller releases it once the start is settled. */
  acquireSlot(): Promise<() => void> {
    return this.startSlots.acquire();
  }

  /**
   * Claims a port and spawns a worker process for server `id` there, with a fresh instance id and credential.
   * When it fails the start slot is released (`release`); a full port range is returned, not thrown.
   */
  async claimAndSpawn(id: string, release: () => void): Promise<SpawnedRun | NoFreePortError> {
    const { ports } = this.ctx;
    let port: number;
    try {
      port = await ports.claim();
    } catch (err) {
      release();
      if (err instanceof NoFreePortError) return err;
      throw err;
    }
    try {
      return { ...this.spawnRun(id, port), port };
    } catch (err) {
      release();
      await ports.release(port);
      throw err;
    }
  }

  private spawnRun(id: string, port: number): Omit<SpawnedRun, 'port'> {
    const { config } = this.ctx;
    const instance = randomBytes(8).toString('hex');
    const token = randomBytes(WORKER_TOKEN_BYTES).toString('base64url');
    const spawned = spawnWorker(this.entry, {
      ...config.workerInheritedEnv,
      ...(config.secretKey === undefined ? {} : { HUB_SECRET_KEY: config.secretKey }),
      MCP_WORKER_TOKEN: token,
      MCP_SERVER_ID: id,
      MCP_WORKER_HOST: config.workerHost,
      MCP_WORKER_PORT: String(port),
      MCP_WORKER_INSTANCE: instance,
      REDIS_URL: config.redisUrl,
      KEY_PREFIX: config.keyPrefix,
      LOG_LEVEL: config.logLevel,
      MCP_UPSTREAM_MAX_MESSAGE_BYTES: String(config.upstreamMaxMessageBytes),
    });
    return { ...spawned, instance, token };
  }
}

/**
 * The pause between two /healthz polls of a starting process: fast at first (a healthy start takes a few
 * hundred ms), then backed off to spare a busy host.
 */
export function startupPause(startedAtMs: number): Promise<void> {
  const elapsed = Date.now() - startedAtMs;
  return new Promise((r) => setTimeout(r, elapsed < 2_000 ? STARTUP_POLL_MS : STARTUP_POLL_MS * 8));
}

/** Logs a watcher that failed (exit, startup, successor): it runs detached, so nobody else would hear of it. */
export function watchFailed(ctx: SupervisorContext, server: string, what: string) {
  return (err: unknown) =>
    ctx.log.error({ event: 'supervisor.watch_failed', server, what, err }, 'watching a worker failed');
}
