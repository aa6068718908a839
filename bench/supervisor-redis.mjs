// What one supervisor costs Redis at rest: commands per second with 0 and N running servers (default settings:
// lease 10 s renewed every 3.3 s, heartbeat 500 ms, health every 2 s, resync every 5 s), from INFO commandstats.
// Usage: pnpm bench supervisor-redis   (BENCH_SERVERS sets N, default 10; BENCH_WINDOW_S the window, default 10)
// BENCH_SUPERVISOR_MAIN runs another build's supervisor (e.g. main's apps/supervisor/dist/main.js) to compare.
import { spawn } from 'node:child_process';
import { createKeys, Registry } from '@mcp-hub/shared';
import { Redis } from 'ioredis';
import { ROOT, sleep, startRedis, stopProcess, table } from './lib.mjs';

const N = Number(process.env.BENCH_SERVERS ?? 10);
const WINDOW_S = Number(process.env.BENCH_WINDOW_S ?? 10);
const MAIN = process.env.BENCH_SUPERVISOR_MAIN ?? `${ROOT}apps/supervisor/dist/main.js`;
const ECHO = `${ROOT}test/fixtures/echo-server.mjs`;

/** Commands per second by command name over the window, the supervisor alone talking to Redis. */
async function measure(servers) {
  const redisServer = await startRedis();
  const prefix = 'bench:';
  const redis = new Redis(redisServer.url);
  const registry = new Registry(redis, createKeys(prefix));
  const supervisor = spawn(process.execPath, [MAIN], {
    env: {
      ...process.env,
      LOG_LEVEL: 'warn',
      REDIS_URL: redisServer.url,
      KEY_PREFIX: prefix,
      MCP_WORKER_BASE_PORT: '47000',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  for (let i = 0; i < servers; i++) {
    await registry.upsertServer(
      {
        id: `s${i}`,
        name: `s${i}`,
        namespace: `s${i}`,
        transport: 'stdio',
        config: { command: process.execPath, args: [ECHO], env: {} },
        tags: [],
        enabled: true,
        timeoutMs: 10_000,
      },
      'create',
    );
  }
  for (let i = 0; i < servers; i++) {
    while ((await registry.getRuntime(`s${i}`))?.status !== 'running') await sleep(100);
  }
  await sleep(2_000);
  await redis.config('RESETSTAT');
  await sleep(WINDOW_S * 1_000);
  const info = await redis.info('commandstats');
  const rates = {};
  for (const line of info.split('\n')) {
    const m = /^cmdstat_(\w+):calls=(\d+)/.exec(line.trim());
    if (m && !['config', 'info'].includes(m[1])) rates[m[1]] = Number(m[2]) / WINDOW_S;
  }
  await stopProcess(supervisor, 30_000);
  redis.disconnect();
  await redisServer.stop();
  return rates;
}

const runs = [
  [0, await measure(0)],
  [N, await measure(N)],
];
const names = [...new Set(runs.flatMap(([, r]) => Object.keys(r)))].sort();
const total = (r) => Object.values(r).reduce((a, b) => a + b, 0);
console.log(`\nOne supervisor at rest (${MAIN.replace(ROOT, '')}), Redis commands/s over ${WINDOW_S} s:\n`);
console.log(
  table([
    ['servers', 'total/s', ...names],
    ...runs.map(([n, r]) => [n, total(r).toFixed(1), ...names.map((c) => (r[c] ?? 0).toFixed(1))]),
  ]),
);
const perServer = (total(runs[1][1]) - total(runs[0][1])) / N;
console.log(`\nper server: ${perServer.toFixed(2)} commands/s; with no server: ${total(runs[0][1]).toFixed(1)}/s`);
