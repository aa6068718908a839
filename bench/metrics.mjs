import { Pool, request } from 'undici';
import { createRun, envNumber, startEchoStack, waitRunning } from './harness.mjs';
import { alive, descendantsOf, ROOT, sleep } from './lib.mjs';
import { compareHubs, comparisonTable, printLogSummary, startHubPair } from './on-off.mjs';

const PAIRS = Math.round(envNumber('BENCH_METRICS_PAIRS', 4_000));
const ROUNDS = Math.round(envNumber('BENCH_METRICS_ROUNDS', 6));
const SECONDS = envNumber('BENCH_SECONDS', 3);
const TOOL_PATH = '/mcp/echo/echo';
const SERVERS = Math.round(envNumber('BENCH_METRICS_SERVERS', 20));
const TOOLS = Math.round(envNumber('BENCH_METRICS_TOOLS', 20));
const MANY_TOOLS = `${ROOT}bench/many-tools-server.mjs`;

const run = createRun('metrics');
const startedAt = performance.now();
let compared;
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

try {
  const stack = await startEchoStack(run, { prefix: 'bench-metrics:' });
  const {
    a: on,
    b: off,
    headers,
  } = await startHubPair(run, stack, {
    a: { name: 'metrics on', env: {} },
    b: { name: 'metrics off', env: { HUB_METRICS: 'off' } },
    path: TOOL_PATH,
  });
  compared = await compareHubs(run, {
    a: on,
    b: off,
    path: TOOL_PATH,
    headers,
    pairs: PAIRS,
    rounds: ROUNDS,
    seconds: SECONDS,
  });

  series = await countSeries(on.origin, headers.authorization);

  run.progress(`${SERVERS} servers of ${TOOLS} tools, every tool called once…`);
  manySeries = await manyServersSeries(stack, on.origin, headers);
} finally {
  logSummary = await run.finish(['hub', 'hub-off', 'supervisor']);
}

console.log(
  `\nMetrics on against off (pnpm bench metrics, ${((performance.now() - startedAt) / 1000).toFixed(0)} s)\n`,
);
const { text, ratio, pairedUs } = comparisonTable(
  { a: { name: 'metrics on' }, b: { name: 'metrics off' } },
  compared,
  ROUNDS,
);
console.log(text);
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
printLogSummary(logSummary);
console.log('\nVerdicts (issue 15, this run)\n');
console.log(`${ratio >= 0.95 ? 'MET   ' : 'MISSED'} metrics cost ≤ 5 % of throughput: on/off ${ratio.toFixed(3)}`);
console.log(`${pairedUs <= 20 ? 'MET   ' : 'MISSED'} metrics cost ≤ 20 µs at p50: ${pairedUs.toFixed(1)} µs (paired)`);
