// Rate limiter figures: one `check` (one EVALSHA: four window rules and a concurrency slot) and its `release`,
// sequentially against a real Redis, through the built hub (apps/hub/dist). Also the in-memory fallback.
// As a function: `benchLimiter({ redisUrl, n })`. Run alone: `node bench/limiter.mjs` (BENCH_N, default 5000)
// starts a private redis-server and prints the table.
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { closeRedis, createKeys, createLogger, createRedis } from '@mcp-hub/shared';
import { freePort, median, percentile, ROOT, startRedis, table } from './lib.mjs';

const WARMUP = 500;
const RULES = [
  { scope: 'key', window: 'hour', limit: 1e9 },
  { scope: 'key', window: 'day', limit: 1e9 },
  { scope: 'server', window: 'day', limit: 1e9 },
  { scope: 'tool', window: 'hour', limit: 1e9 },
];

/**
 * Measures `check` alone and `check` + awaited `release` over `n` sequential calls (after a warm-up), in Redis
 * mode and in memory mode. Returns milliseconds: { redis: {checkP50, checkP99, checkReleaseP50,
 * checkReleaseP99}, memory: {…} }. Deletes its keys afterwards.
 */
export async function benchLimiter({ redisUrl, n = 5_000 }) {
  const { RateLimiter } = await import(`${ROOT}apps/hub/dist/security/rate-limiter.js`);
  const log = createLogger({ service: 'hub', level: 'silent' });
  const prefix = `bench:limiter:${randomBytes(4).toString('hex')}:`;
  const keys = createKeys(prefix);
  const redis = createRedis(redisUrl, 'limiter', log);
  await redis.ping().catch(() => new Promise((resolve) => redis.once('ready', resolve)));
  const limiter = new RateLimiter(redis, keys, log);
  // The fallback path: a limiter whose Redis is not there (its first check fails at once and it stays in memory).
  const deadRedis = createRedis(`redis://127.0.0.1:${await freePort()}`, 'limiter', log);
  const fallback = new RateLimiter(deadRedis, keys, log);
  let seq = 0;
  const request = () => ({
    keyId: `key-${seq % 16}`,
    server: 'everything',
    tool: 'echo',
    rules: RULES,
    concurrent: 64,
    callId: `call-${++seq}`,
  });

  async function measure(limiter) {
    for (let i = 0; i < WARMUP; i++) await (await limiter.check(request())).release();
    const check = [];
    const both = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const decision = await limiter.check(request());
      const t1 = performance.now();
      await decision.release();
      const t2 = performance.now();
      if (!decision.allowed) throw new Error(`bench call denied by ${JSON.stringify(decision.rule)}`);
      check.push(t1 - t0);
      both.push(t2 - t0);
    }
    return {
      checkP50: median(check),
      checkP99: percentile(check, 99),
      checkReleaseP50: median(both),
      checkReleaseP99: percentile(both, 99),
    };
  }

  try {
    const inRedis = await measure(limiter);
    if (limiter.mode() !== 'redis') throw new Error(`limiter fell back to memory: ${limiter.status().lastError}`);
    const inMemory = await measure(fallback);
    if (fallback.mode() !== 'memory') throw new Error('the fallback limiter did not fall back');
    return { redis: inRedis, memory: inMemory };
  } finally {
    limiter.close();
    fallback.close();
    deadRedis.disconnect();
    const found = await redis.keys(`${prefix}*`).catch(() => []);
    if (found.length > 0) await redis.del(...found).catch(() => {});
    await closeRedis(redis);
  }
}

/** The figures as a markdown table. */
export function limiterTable(result, n) {
  const ms = (v) => v.toFixed(3);
  return table([
    ['limiter (4 rules + slot)', 'check p50 ms', 'check p99 ms', 'check+release p50 ms', 'check+release p99 ms'],
    ...Object.entries(result).map(([mode, r]) => [
      `${mode} (n=${n})`,
      ms(r.checkP50),
      ms(r.checkP99),
      ms(r.checkReleaseP50),
      ms(r.checkReleaseP99),
    ]),
  ]);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const n = Number(process.env.BENCH_N ?? 5_000);
  const server = await startRedis();
  try {
    console.log(limiterTable(await benchLimiter({ redisUrl: server.url, n }), n));
  } finally {
    await server.stop();
  }
}
