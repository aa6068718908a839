// What the Prometheus metrics cost on a tool call (issue 15: ≤ 5 % of the throughput, ≤ 20 µs at p50):
// `POST /mcp/echo/echo` through two hubs on one Redis, supervisor and worker, one with metrics (the default)
// and one with HUB_METRICS=off, both with the admin token and at LOG_LEVEL=info:
//   - sequential calls alternating between the two hubs, call by call (one connection each): p50 of each and the
//     median of the paired differences, so that a noisy moment hits both alike;
//   - throughput at 64 callers in rounds in ABBA order (bench/load.mjs, its own process).
// Then the number of series the hub exposes after this traffic, and after one call of every tool of 20 more servers
// of 20 tools each (bench/many-tools-server.mjs): what a scrape costs as servers and tools grow.
// Usage: pnpm bench metrics. Env: BENCH_METRICS_PAIRS (4000), BENCH_METRICS_ROUNDS (6), BENCH_SECONDS (3),
// BENCH_METRICS_SERVERS (20), BENCH_METRICS_TOOLS (20).
import { randomBytes } from 'node:crypto';
import { Pool, request } from 'undici';
import { createRun, envNumber, startEchoStack, startHub, waitForCall, waitRunning } from './harness.mjs';
import { alive, descendantsOf, median, ROOT, sleep, table } from './lib.mjs';

const PAIRS = Math.round(envNumber('BENCH_METRICS_PAIRS', 4_000));
const ROUNDS = Math.round(envNumber('BENCH_METRICS_ROUNDS', 6));
const SECONDS = envNumber('BENCH_SECONDS', 3);
const WARMUP_PAIRS = 500;
const TOOL_PATH = '/mcp/echo/echo';
const SERVERS = Math.round(envNumber('BENCH_METRICS_SERVERS', 20));
const TOOLS = Math.round(envNumber('BENCH_METRICS_TOOLS', 20));
const MANY_TOOLS = `${ROOT}bench/many-tools-server.mjs`;

const run = createRun('metrics');
const startedAt = performance.now();
const rates = { on: [], off: [] };
let seq;
let series;
let manySeries;
let logSummary = [];

/** The sample lines of one scrape: in all, `mcp_*`, and the scrape's own time (ms) and size (bytes). */
async function countSeries(origin, authorization) {
  const started = performance.now();
  const scraped = await request(`${origin}/metrics`, { headers: { authorization } });
  const text = await scraped.body.text();
  const ms = performance.now() - started;
  const samples = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
  const byFamily = new Map();
  for (const line of samples) {
    const family = line.slice(0, line.search(/[{ ]/)).replace(/_(bucket|sum|count)$/, '');
    byFamily.set(family, (byFamily.get(family) ?? 0) + 1);
  }
  const top = [...byFamily].sort((a, b) => b[1] - a[1]).slice(0, 3);
  return { all: samples.length, mcp: samples.filter((l) => l.startsWith('mcp_')).length, ms, bytes: text.length, top };
}

/** Registers SERVERS servers of TOOLS tools, calls each tool once, counts the series, and removes the servers. */
async function manyServersSeries(stack, origin, headers) {
  const ids = Array.from({ length: SERVERS }, (_, i) => `many-${String(i + 1).padStart(2, '0')}`);
  const pids = [];
  run.defer('many-tools workers', async () => {
    for (const id of ids) await stack.registry.deleteServer(id).catch(() => {});
    await sleep(2_000);
    for (const pid of pids.flatMap((p) => [p, ...descendantsOf(p)])) if (alive(pid)) process.kill(pid, 'SIGKILL');
  });
  for (const id of ids) {
    await stack.registry.upsertServer(
      {
        id,
        name: id,
        namespace: id,
        transport: 'stdio',
        config: { command: process.execPath, args: [MANY_TOOLS], env: { TOOL_COUNT: String(TOOLS) } },
        tags: [],
        enabled: true,
        timeoutMs: 60_000,
      },
      'create',
    );
  }
  for (const id of ids) pids.push((await waitRunning(stack.registry, id, 120_000)).pid);
  const pool = new Pool(origin, { connections: 8 });
  const body = JSON.stringify({ message: 'x' });
  const calls = ids.flatMap((id) =>
    Array.from({ length: TOOLS }, (_, t) => `/mcp/${id}/t${String(t + 1).padStart(2, '0')}`),
  );
  for (let i = 0; i < calls.length; i += 8) {
    await Promise.all(
      calls.slice(i, i + 8).map(async (path) => {
        const res = await pool.request({ path, method: 'POST', headers, body });
        await res.body.text();
        if (res.statusCode !== 200) throw new Error(`${path} answered ${res.statusCode}`);
      }),
    );
  }
  await pool.close();
  return countSeries(origin, headers.authorization);
}

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

  series = await countSeries(on.origin, headers.authorization);

  run.progress(`${SERVERS} servers of ${TOOLS} tools, every tool called once…`);
  manySeries = await manyServersSeries(stack, on.origin, headers);
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
const top = manySeries.top.map(([name, n]) => `${name} ${n}`).join(', ');
console.log(
  `After one call of each tool of ${SERVERS} more servers of ${TOOLS} tools: ${manySeries.all} series ` +
    `(${manySeries.mcp} mcp_*; most: ${top}); one scrape ${manySeries.ms.toFixed(0)} ms, ` +
    `${(manySeries.bytes / 1024).toFixed(0)} KiB.`,
);
if (logSummary.length > 0) {
  console.log('\nWarnings and errors in the logs\n');
  console.log(table([['service', 'level', 'event', 'error', 'message', 'count'], ...logSummary]));
}
console.log('\nVerdicts (issue 15, this run)\n');
console.log(`${ratio >= 0.95 ? 'MET   ' : 'MISSED'} metrics cost ≤ 5 % of throughput: on/off ${ratio.toFixed(3)}`);
console.log(`${pairedUs <= 20 ? 'MET   ' : 'MISSED'} metrics cost ≤ 20 µs at p50: ${pairedUs.toFixed(1)} µs (paired)`);
