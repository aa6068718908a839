import { readdirSync, readFileSync } from 'node:fs';
import type { TestProject } from 'vitest/node';
import { startPrivateRedis } from './redis-server.js';

/** SIGKILLs every process group still pointed at the run's Redis: nothing a test started outlives the run. */
function killLeftovers(redisUrl: string): void {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (!readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0').includes(`REDIS_URL=${redisUrl}`)) continue;
      for (const target of [-Number(entry), Number(entry)]) {
        try {
          process.kill(target, 'SIGKILL');
        } catch {
          // gone
        }
      }
    } catch {
      // gone, or not ours to read
    }
  }
}

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

/** Uses REDIS_URL when given; otherwise starts a private redis-server for the run and stops it after. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const given = process.env.REDIS_URL;
  if (given) {
    project.provide('redisUrl', given);
    return async () => {};
  }
  const redis = await startPrivateRedis();
  project.provide('redisUrl', redis.url);
  return async () => {
    killLeftovers(redis.url);
    await redis.stop();
  };
}
