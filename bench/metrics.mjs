// What the Prometheus metrics cost on a tool call (issue 15: ≤ 5 % of the throughput, ≤ 20 µs at p50):
// `POST /mcp/echo/echo` through two hubs on one Redis, supervisor and worker, one with metrics (the default)
// and one with HUB_METRICS=off, both with the admin token and at LOG_LEVEL=info:
//   - sequential calls alternating between the two hubs, call by call (one connection each): p50 of each and the
//     median of the paired differences, so that a noisy moment hits both alike;
//   - throughput at 64 callers in rounds in ABBA order (bench/load.mjs, its own process).
// Then the number of series the hub exposes after this traffic.
// Usage: pnpm bench metrics. Env: BENCH_METRICS_PAIRS (4000), BENCH_METRICS_ROUNDS (6), BENCH_SECONDS (3).
import { randomBytes } from 'node:crypto';
import { Pool, request } from 'undici';
import { createRun, envNumber, startEchoStack, startHub, waitForCall } from './harness.mjs';
import { median, table } from './lib.mjs';

const PAIRS = Math.round(envNumber('BENCH_METRICS_PAIRS', 4_000));
const ROUNDS = Math.round(envNumber('BENCH_METRICS_ROUNDS', 6));
const SECONDS = envNumber('BENCH_SECONDS', 3);
const WARMUP_PAIRS = 500;
const TOOL_PATH = '/mcp/echo/echo';

const run = createRun('metrics');
const startedAt = performance.now();
const rates = { on: [], off: [] };
let seq;
let series;
let logSummary = [];

/** Alternates sequential calls between the hubs; resolves p50s and the median paired difference (ms). */
async function pairedSequential(hubs, headers) {
  const pools = hubs.map((h) => new Pool(h.origin, { connections: 1 }));
  const times = hubs.map(() => []);
  const body = JSON.stringify({ message: 'x' });
  for (let i = 0; i < WARMUP_PAIRS + PAIRS; i++) {
    // The order flips every pair: neither hub always goes first.
    const order = i % 2 === 0 ? [0, 1] : [1, 0];
    for (const k of order) {
      const s = performance.now();
      const res = await pools[k].request({ path: TOOL_PATH, method: 'POST', headers, body });
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`${hubs[k].name} answered ${res.statusCode}`);
      if (i >= WARMUP_PAIRS) times[k].push(performance.now() - s);
    }
  }
  await Promise.all(pools.map((p) => p.close()));
  return {
    on: median(times[0]),
    off: median(times[1]),
    paired: median(times[0].map((t, i) => t - times[1][i])),
  };
}

try {
  const stack = await startEchoStack(run, { prefix: 'bench-metrics:' });
  const token = randomBytes(24).toString('hex');
  const env = { HUB_AUTH: 'token', HUB_ADMIN_TOKEN: token, LOG_LEVEL: 'info' };
  const on = { name: 'metrics on', ...(await startHub(run, stack, { name: 'hub', env })) };
  const off = {
    name: 'metrics off',
    ...(await startHub(run, stack, { name: 'hub-off', env: { ...env, HUB_METRICS: 'off' } })),
  };
  const headers = { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${token}` };
  for (const hub of [on, off]) await waitForCall(`${hub.origin}${TOOL_PATH}`, { authorization: headers.authorization });

  run.progress(`${PAIRS} sequential pairs…`);
  seq = await pairedSequential([on, off], headers);

  for (let i = 0; i < ROUNDS; i++) {
    run.progress(`throughput round ${i + 1} of ${ROUNDS}…`);
    const order = i % 2 === 0 ? [on, off] : [off, on];
    for (const hub of order) {
      const out = await run.runLoad({
        label: hub.name,
        kind: 'http',
        origin: hub.origin,
        paths: [TOOL_PATH],
        accept: 'application/json',
        headers: { authorization: headers.authorization },
        warmupSeconds: 0.5,
        sequential: null,
        levels: [64],
        seconds: SECONDS,
        watch: [],
      });
      rates[hub === on ? 'on' : 'off'].push(out.phases.find((p) => p.name === 'c64')?.rate ?? 0);
    }
  }

  const scraped = await request(`${on.origin}/metrics`, { headers: { authorization: headers.authorization } });
  const text = await scraped.body.text();
  const samples = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
  series = { all: samples.length, mcp: samples.filter((l) => l.startsWith('mcp_')).length };
} finally {
  logSummary = await run.finish(['hub', 'hub-off', 'supervisor']);
}

const ms = (v) => v.toFixed(3);
console.log(
  `\nMetrics on against off (pnpm bench metrics, ${((performance.now() - startedAt) / 1000).toFixed(0)} s)\n`,
);
console.log(
  table([
    ['hub', 'p50 sequential ms', `calls/s at 64 callers, ${ROUNDS} ABBA rounds`, 'median calls/s'],
    ['metrics on', ms(seq.on), rates.on.map((r) => r.toFixed(0)).join(', '), median(rates.on).toFixed(0)],
    ['metrics off', ms(seq.off), rates.off.map((r) => r.toFixed(0)).join(', '), median(rates.off).toFixed(0)],
  ]),
);
const ratio = median(rates.on) / median(rates.off);
const pairedUs = seq.paired * 1000;
console.log(
  `\nPaired sequential difference (on − off, median of ${PAIRS} pairs): ${pairedUs.toFixed(1)} µs. ` +
    `Series exposed after this traffic: ${series.all} (${series.mcp} of them mcp_*).`,
);
if (logSummary.length > 0) {
  console.log('\nWarnings and errors in the logs\n');
  console.log(table([['service', 'level', 'event', 'error', 'message', 'count'], ...logSummary]));
}
console.log('\nVerdicts (issue 15, this run)\n');
console.log(`${ratio >= 0.95 ? 'MET   ' : 'MISSED'} metrics cost ≤ 5 % of throughput: on/off ${ratio.toFixed(3)}`);
console.log(`${pairedUs <= 20 ? 'MET   ' : 'MISSED'} metrics cost ≤ 20 µs at p50: ${pairedUs.toFixed(1)} µs (paired)`);
