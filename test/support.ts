import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { createKeys, createLogger, type Logger, type RedisKeys } from '@mcp-hub/shared';
import { Redis } from 'ioredis';
import { expect, inject } from 'vitest';

export const redisUrl = (): string => inject('redisUrl');

/**
 * A key prefix of its own for each test file (or test), so tests never see each other's keys. It names the test
 * file: a key, a worker or a process left behind (their KEY_PREFIX) says which file started it.
 */
export function testPrefix(): string {
  const file =
    (expect.getState().testPath ?? 'x')
      .split('/')
      .pop()
      ?.replace(/\.test\.ts$/, '') ?? 'x';
  return `test:${file}:${randomBytes(6).toString('hex')}:`;
}

/** A plain client on the test Redis; `cleanup()` deletes every key of the prefix and disconnects. */
export function testRedis(prefix: string = testPrefix()): {
  redis: Redis;
  keys: RedisKeys;
  prefix: string;
  cleanup(): Promise<void>;
} {
  const redis = new Redis(redisUrl(), { maxRetriesPerRequest: 1 });
  return {
    redis,
    keys: createKeys(prefix),
    prefix,
    async cleanup() {
      const found = await redis.keys(`${prefix}*`);
      if (found.length > 0) await redis.del(...found);
      redis.disconnect();
    },
  };
}

/** A logger whose JSON lines are kept in `lines` so tests can read what was logged. */
export function captureLogger(service: 'hub' | 'supervisor' | 'worker' = 'hub'): {
  log: Logger;
  lines: Record<string, unknown>[];
  text(): string;
} {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) {
        if (line.trim() === '') continue;
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { log: createLogger({ service, level: 'debug', destination }), lines, text: () => raw.join('\n') };
}
