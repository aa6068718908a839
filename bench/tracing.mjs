// What tracing costs the hub on a tool call: `POST /mcp/echo/echo` through two hubs on one Redis, supervisor and
// worker (the worker does not trace: the hub's own cost is measured), one exporting its spans over OTLP/HTTP to a
// local receiver (OTEL_EXPORTER_OTLP_ENDPOINT) and one without (the default), both with the admin token and at
// LOG_LEVEL=info, compared side by side (bench/on-off.mjs). The receiver counts the spans it got.
// Usage: pnpm bench tracing. Env: BENCH_TRACING_PAIRS (4000), BENCH_TRACING_ROUNDS (6), BENCH_SECONDS (3).
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createRun, envNumber, startEchoStack, startHub, waitForCall } from './harness.mjs';
import { table } from './lib.mjs';
import { compareHubs, comparisonTable } from './on-off.mjs';

const PAIRS = Math.round(envNumber('BENCH_TRACING_PAIRS', 4_000));
const ROUNDS = Math.round(envNumber('BENCH_TRACING_ROUNDS', 6));
const SECONDS = envNumber('BENCH_SECONDS', 3);
const TOOL_PATH = '/mcp/echo/echo';

const run = createRun('tracing');
const startedAt = performance.now();
let compared;
let logSummary = [];
let exports = 0;
let exportedBytes = 0;

// The collector: takes every export (JSON) and answers 200, as a collector would.
const receiver = createServer((req, res) => {
  req.on('data', (chunk) => {
    exportedBytes += chunk.length;
  });
  req.on('end', () => {
    exports++;
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
});
await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
run.defer('OTLP receiver', () => new Promise((resolve) => receiver.close(resolve)));

try {
  const stack = await startEchoStack(run, { prefix: 'bench-tracing:' });
  const token = randomBytes(24).toString('hex');
  const env = { HUB_AUTH: 'token', HUB_ADMIN_TOKEN: token, LOG_LEVEL: 'info' };
  const endpoint = `http://127.0.0.1:${receiver.address().port}`;
  const on = {
    name: 'tracing on',
    ...(await startHub(run, stack, { name: 'hub', env: { ...env, OTEL_EXPORTER_OTLP_ENDPOINT: endpoint } })),
  };
  const off = { name: 'tracing off', ...(await startHub(run, stack, { name: 'hub-off', env })) };
  const headers = { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${token}` };
  for (const hub of [on, off]) await waitForCall(`${hub.origin}${TOOL_PATH}`, { authorization: headers.authorization });
  compared = await compareHubs(run, {
    a: on,
    b: off,
    path: TOOL_PATH,
    headers,
    pairs: PAIRS,
    rounds: ROUNDS,
    seconds: SECONDS,
  });
} finally {
  logSummary = await run.finish(['hub', 'hub-off', 'supervisor']);
}

console.log(
  `\nTracing on against off (pnpm bench tracing, ${((performance.now() - startedAt) / 1000).toFixed(0)} s)\n`,
);
const { text, ratio, pairedUs } = comparisonTable(
  { a: { name: 'tracing on' }, b: { name: 'tracing off' } },
  compared,
  ROUNDS,
);
console.log(text);
console.log(
  `\nPaired sequential difference (on − off, median of ${PAIRS} pairs): ${pairedUs.toFixed(1)} µs; ` +
    `throughput on/off ${ratio.toFixed(3)}. The receiver took ${exports} exports, ` +
    `${(exportedBytes / 2 ** 20).toFixed(1)} MiB (two spans a call: the request and the hop).`,
);
if (logSummary.length > 0) {
  console.log('\nWarnings and errors in the logs\n');
  console.log(table([['service', 'level', 'event', 'error', 'message', 'count'], ...logSummary]));
}
