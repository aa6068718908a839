import { createServer } from 'node:http';
import { createRun, envNumber, startEchoStack } from './harness.mjs';
import { compareHubs, comparisonTable, printLogSummary, startHubPair } from './on-off.mjs';

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
  const endpoint = `http://127.0.0.1:${receiver.address().port}`;
  const {
    a: on,
    b: off,
    headers,
  } = await startHubPair(run, stack, {
    a: { name: 'tracing on', env: { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint } },
    b: { name: 'tracing off', env: {} },
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
printLogSummary(logSummary);
