// MCP endpoint figures: `tools/call` of the stdio fixture server's `echo`, side by side on loopback through
//   (a) the worker's own `POST /tools/echo` (no MCP framing, the reference),
//   (b) the worker's MCP endpoint `POST /mcp` (direct),
//   (c) the hub's per-server `POST /mcp/echo` (passed through to (b)),
//   (d) the hub's aggregated `POST /mcp`, tool `echo__echo` (the hub's own MCP server, calling the worker's
//       `/tools/echo` by the call path),
// each MCP endpoint in the 2026-07-28 era (stateless: one plain JSON-RPC POST per call) and in the 2025 era
// (one initialized session per connection, Mcp-Session-Id reused). The requests are the ones the SDK v2 client
// sends (captured once per path by the load generator with a logging fetch), replayed with undici from a
// separate process (bench/load.mjs); every process under test is measured from /proc (CPU user+sys, RSS).
// Usage: pnpm bench mcp. Env: BENCH_MCP_SEQUENTIAL calls (1000), BENCH_MCP_CALLERS (32), BENCH_SECONDS at that
// concurrency (3), BENCH_WARMUP_SECONDS at 8 callers before each path (1); BENCH_KEEP_LOGS=1 keeps the logs.
import { availableParallelism, cpus } from 'node:os';
import { createRun, envNumber, startEchoStack, startHub, waitForCall } from './harness.mjs';
import { table } from './lib.mjs';

const SECONDS = envNumber('BENCH_SECONDS', 3);
const SEQUENTIAL = Math.round(envNumber('BENCH_MCP_SEQUENTIAL', 1_000));
const WARMUP = Math.min(200, SEQUENTIAL);
const WARMUP_SECONDS = envNumber('BENCH_WARMUP_SECONDS', 1);
const CALLERS = Math.round(envNumber('BENCH_MCP_CALLERS', 32));
const PREFIX = 'bench-mcp:';

const run = createRun('mcp');
const startedAt = performance.now();
const results = []; // { label, era, phases, shapes }
const captured = {}; // era → the SDK's tools/call request (headers, body)
let logSummary = [];

async function measure(label, era, target) {
  const t0 = performance.now();
  run.progress(`${label} (${era})…`);
  const out = await run.runLoad({
    label,
    warmupSeconds: WARMUP_SECONDS,
    sequential: { warmup: WARMUP, calls: SEQUENTIAL },
    levels: [CALLERS],
    seconds: SECONDS,
    ...target,
  });
  results.push({ label, era, phases: out.phases, shapes: out.shapes ?? {} });
  if (out.captured && !captured[era]) captured[era] = out.captured;
  run.progress(`${label} (${era}): ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

try {
  const stack = await startEchoStack(run, { prefix: PREFIX });
  const hub = await startHub(run, stack);
  await waitForCall(`${hub.origin}/mcp/echo/echo`);

  await measure('a  worker POST /tools/echo', 'REST', {
    kind: 'http',
    origin: stack.workerOrigin,
    paths: ['/tools/echo'],
    accept: 'application/json',
    headers: stack.workerHeaders,
    watch: stack.watch(null),
  });
  await measure('a′ hub POST /mcp/echo/echo', 'REST', {
    kind: 'http',
    origin: hub.origin,
    paths: ['/mcp/echo/echo'],
    accept: 'application/json',
    watch: stack.watch(hub.child.pid),
  });
  const endpoints = [
    ['b  worker POST /mcp', stack.workerOrigin, '/mcp', 'echo', stack.watch(null), stack.workerHeaders],
    ['c  hub POST /mcp/echo', hub.origin, '/mcp/echo', 'echo', stack.watch(hub.child.pid), {}],
    ['d  hub POST /mcp (aggregated)', hub.origin, '/mcp', 'echo__echo', stack.watch(hub.child.pid), {}],
  ];
  for (const era of ['modern', 'legacy']) {
    for (const [label, origin, path, tool, watch, headers] of endpoints) {
      await measure(label, era, { kind: 'mcp-http', era, origin, path, tool, watch, headers });
    }
  }
} finally {
  logSummary = await run.finish(['hub', 'supervisor']);
}
report();

function report() {
  const ms = (v) => (v === null || v === undefined ? '—' : v.toFixed(2));
  const eraName = { REST: 'REST (JSON)', modern: '2026-07-28 stateless', legacy: '2025 session/connection' };
  const servers = (p) =>
    Object.entries(p.cpu)
      .filter(([label]) => label !== 'load')
      .reduce((s, [, v]) => s + v, 0);
  const perCall = (p) => ((servers(p) / Math.max(1, p.ok)) * 1e6).toFixed(0);

  console.log(
    `\nMCP endpoints: tools/call echo of test/fixtures/echo-server.mjs on loopback ` +
      `(Node ${process.version}, ${availableParallelism()} CPUs: ${cpus()[0]?.model?.trim() ?? 'unknown'})`,
  );
  console.log(
    `Load from a separate process (bench/load.mjs), undici, one keep-alive connection per caller; the SDK v2 ` +
      `client's own requests replayed. Per path: ${WARMUP_SECONDS} s warm-up at 8 callers, ${SEQUENTIAL} ` +
      `sequential calls after ${WARMUP} more, then ${SECONDS} s at ${CALLERS} callers. Hub, supervisor and worker at LOG_LEVEL=info (the default).\n`,
  );
  const rows = [
    [
      'path',
      'era',
      'p50 ms',
      'p99 ms',
      'seq CPU µs/call',
      `calls/s (${CALLERS})`,
      `p50 / p99 ms (${CALLERS})`,
      `CPU µs/call (${CALLERS})`,
      'errors',
      'answer',
    ],
  ];
  for (const r of results) {
    const seq = r.phases.find((x) => x.name === 'sequential');
    const con = r.phases.find((x) => x.name === `c${CALLERS}`);
    rows.push([
      r.label,
      eraName[r.era],
      ms(seq?.p50),
      ms(seq?.p99),
      seq ? perCall(seq) : '—',
      con ? con.rate.toFixed(0) : '—',
      con ? `${ms(con.p50)} / ${ms(con.p99)}` : '—',
      con ? perCall(con) : '—',
      r.phases.reduce((s, x) => s + x.errors, 0),
      r.era === 'REST' ? 'JSON' : Object.keys(r.shapes).join(', ') || '—',
    ]);
  }
  console.log(table(rows));

  const roles = ['hub', 'worker', 'upstream', 'supervisor', 'redis', 'load'];
  const cpuRows = [['path', 'era', ...roles.map((r) => (r === 'load' ? 'load generator' : r))]];
  for (const r of results) {
    const p = r.phases.find((x) => x.name === `c${CALLERS}`);
    if (!p) continue;
    cpuRows.push([
      r.label,
      eraName[r.era],
      ...roles.map((role) =>
        p.cpu[role] === undefined
          ? '—'
          : `${((p.cpu[role] / p.seconds) * 100).toFixed(0)}% ${p.rss[role].toFixed(0)} MiB`,
      ),
    ]);
  }
  console.log(`\nCPU (% of one core, user+sys from /proc) and RSS at ${CALLERS} callers\n`);
  console.log(table(cpuRows));

  for (const [era, requests] of Object.entries(captured)) {
    const call = requests['tools/call'];
    // The first capture may be the worker's, which carries the worker's credential: not for a report.
    const headers = Object.entries(call.headers)
      .filter(([k]) => k !== 'x-mcp-worker-token')
      .map(([k, v]) => `${k}: ${v}`)
      .join('; ');
    console.log(`\nThe SDK v2 client's tools/call (${eraName[era]}, d): ${headers}; body ${JSON.stringify(call.body)}`);
  }

  const errorLines = [];
  for (const r of results) {
    for (const p of r.phases) {
      for (const e of p.errorSamples) errorLines.push(`- ${r.label} (${r.era}) [${p.name}] ×${e.count}: ${e.message}`);
    }
  }
  if (errorLines.length > 0) console.log(`\nErrors seen by the load generator\n\n${errorLines.join('\n')}`);
  if (logSummary.length > 0) {
    console.log('\nWarnings and errors in the logs of hub, supervisor and worker\n');
    console.log(table([['service', 'level', 'event', 'error', 'message', 'count'], ...logSummary]));
  } else {
    console.log('\nNo warnings or errors in the logs of hub, supervisor and worker.');
  }

  const seq = (label, era) =>
    results.find((r) => r.label.startsWith(label) && r.era === era)?.phases.find((x) => x.name === 'sequential');
  const parts = [];
  const a = seq('a', 'REST');
  for (const era of ['modern', 'legacy']) {
    const [b, c, d] = ['b', 'c', 'd'].map((x) => seq(x, era));
    if (a && b && c && d) {
      parts.push(
        `${eraName[era]}: worker MCP framing adds ${(b.p50 - a.p50).toFixed(2)} ms p50 over its REST route, ` +
          `the hub's pass-through ${(c.p50 - b.p50).toFixed(2)} ms, the aggregated endpoint ${(d.p50 - a.p50).toFixed(2)} ms over the REST route`,
      );
    }
  }
  console.log(`\nSummary: ${parts.join('; ')}. Whole run ${((performance.now() - startedAt) / 1000).toFixed(0)} s.`);

  // Issue 14: tools/call through /mcp/<id> reaches ≥ 0.7× the calls/s of POST /mcp/<id>/<tool>, in both eras.
  const rate = (label, era) =>
    results.find((r) => r.label.startsWith(label) && r.era === era)?.phases.find((x) => x.name === `c${CALLERS}`)?.rate;
  const rest = rate('a′', 'REST');
  const verdicts = [];
  for (const era of ['modern', 'legacy']) {
    const mcp = rate('c', era);
    if (!rest || !mcp) continue;
    const r = mcp / rest;
    verdicts.push(
      `${r >= 0.7 ? 'MET   ' : 'MISSED'} tools/call through /mcp/<id> (${eraName[era]}) ≥ 0.7× POST /mcp/<id>/<tool>: ` +
        `${mcp.toFixed(0)} vs ${rest.toFixed(0)} calls/s at ${CALLERS} callers = ${r.toFixed(2)}×`,
    );
  }
  console.log(`\nVerdicts (issue 14's targets, this run)\n\n${verdicts.join('\n')}`);
  if (run.keepLogs) console.log(`Logs kept in ${run.logs}`);
}
