import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { backoffMs } from './backoff.js';

/**
 * How a connection behaves while Redis is away:
 * - `request`: fail fast (request paths answer 503 rather than hang);
 * - `loop`: retry forever (reconcile loops, workers' background writes);
 * - `subscriber`: a dedicated pub/sub connection that resubscribes after reconnecting;
 * - `limiter`: the rate limiter's own connection: no offline queue and a short command timeout, so a dead
 *   Redis costs a call at most that long before the limiter falls back to in-memory counters.
 */
export type RedisRole = 'request' | 'loop' | 'subscriber' | 'limiter';

const RECONNECT_BASE_DELAY_MS = 50;
const RECONNECT_MAX_DELAY_MS = 2_000;
const REQUEST_COMMAND_TIMEOUT_MS = 2_000;
const CONNECT_TIMEOUT_MS = 2_000;
/**
 * The limiter's hard cap on one command. The limiter itself decides sooner (DEFAULT_LIMITER_COMMAND_TIMEOUT_MS)
 * whether Redis is gone, and waits up to this long for a check queued behind a burst while Redis still answers.
 */
const LIMITER_COMMAND_TIMEOUT_MS = 5_000;

/** Opens an ioredis client for `role`, with an `error` listener that logs each distinct failure once. */
export function createRedis(url: string, role: RedisRole, log?: Logger, extra: RedisOptions = {}): Redis {
  const options: RedisOptions = {
    connectTimeout: CONNECT_TIMEOUT_MS,
    retryStrategy: (times) => backoffMs(times, RECONNECT_BASE_DELAY_MS, RECONNECT_MAX_DELAY_MS),
    connectionName: `mcp-hub:${role}`,
    lazyConnect: false,
    ...(role === 'request'
      ? { maxRetriesPerRequest: 1, commandTimeout: REQUEST_COMMAND_TIMEOUT_MS }
      : role === 'limiter'
        ? { maxRetriesPerRequest: 0, enableOfflineQueue: false, commandTimeout: LIMITER_COMMAND_TIMEOUT_MS }
        : { maxRetriesPerRequest: null }),
    ...extra,
  };
  const redis = new Redis(url, options);
  let lastError = '';
  redis.on('error', (err: Error) => {
    if (err.message === lastError) return;
    lastError = err.message;
    log?.warn({ event: 'redis.error', role, err }, 'redis connection error');
  });
  redis.on('ready', () => {
    if (lastError !== '') log?.info({ event: 'redis.ready', role }, 'redis connection restored');
    lastError = '';
  });
  return redis;
}

/** Closes a client politely, falling back to disconnect when QUIT cannot be sent. */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === 'end') return;
  // QUIT would wait in the offline queue for a connection that may never come.
  if (redis.status !== 'ready') {
    redis.disconnect();
    return;
  }
  try {
    await redis.quit();
  } catch {
    redis.disconnect();
  }
}

/** A Lua script to register as a command: how many of its arguments are keys, and its source. */
export interface ScriptDefinition {
  /** Omit for a variable number of keys: the command's first argument is then the key count. */
  numberOfKeys?: number;
  lua: string;
}

/**
 * Registers Lua scripts as commands on a client (ioredis sends EVALSHA, falling back to EVAL), once per
 * client however many stores share it. Returns the client typed with the commands.
 */
export function defineScripts<C>(redis: Redis, scripts: Record<keyof C & string, ScriptDefinition>): Redis & C {
  const client = redis as Redis & Record<string, unknown>;
  for (const [name, script] of Object.entries(scripts) as [string, ScriptDefinition][]) {
    if (typeof client[name] !== 'function') redis.defineCommand(name, script);
  }
  return redis as Redis & C;
}
