// Call-path figures: the `echo` tool of the stdio fixture server, side by side on loopback through
//   (a) the MCP SDK client over stdio, in the load process (no hop),
//   (b) the worker's own `POST /tools/echo`,
//   (c) the hub's `POST /mcp/<id>/echo` (JSON; also SSE; and a hub at LOG_LEVEL=warn against one at info in
//       interleaved rounds),
//   and the proxies people use for the same job: supergateway (stdio → SSE, stdio → Streamable HTTP) and
//   mcp-proxy (Streamable HTTP and SSE endpoints), driven by the same SDK client.
// Then calls spread over 20 registered servers through the hub. The load runs in a separate process
// (bench/load.mjs); every process under test is measured from /proc (CPU user+sys, RSS).
// Usage: pnpm bench calls. Env (defaults keep the run near 4 minutes on 2 cores): BENCH_SECONDS per concurrency
// level (3), BENCH_SEQUENTIAL calls (2000), BENCH_WARMUP_SECONDS at 8 callers before each path (1),
// BENCH_SPREAD_SECONDS (30), BENCH_SPREAD_CALLERS (64); BENCH_KEEP_LOGS=1 keeps the processes' logs.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { createRun, ECHO, echoSpec, envNumber, startStore, waitForCall, waitForPort, waitRunning } from './harness.mjs';
import { alive, descendantsOf, freePort, median, ROOT, sleep, startApp, stopProcess, table } from './lib.mjs';

const SECONDS = envNumber('BENCH_SECONDS', 3);
const SEQUENTIAL = Math.round(envNumber('BENCH_SEQUENTIAL', 2_000));
const WARMUP = Math.min(200, SEQUENTIAL);
const WARMUP_SECONDS = envNumber('BENCH_WARMUP_SECONDS', 1);
const SPREAD_SECONDS = envNumber('BENCH_SPREAD_SECONDS', 30);
const SPREAD_CALLERS = Math.round(envNumber('BENCH_SPREAD_CALLERS', 64));
const SPREAD_SERVERS = 20;
const LEVEL_ROUNDS = Math.round(envNumber('BENCH_LEVEL_ROUNDS', 6));
const PROBE_N = Math.round(envNumber('BENCH_PROBE_N', 500));
const LEVELS = [1, 8, 32, 64];
const BIN = `${ROOT}node_modules/.bin/`;
const PREFIX = 'bench-calls:';

// Everything started is stopped in reverse order, on success, on error and on Ctrl-C; load generators
// first, so that no server is asked to drain connections that keep sending calls (bench/harness.mjs).
const run = createRun('calls');
const { defer, runLoad, logFile, progress, logs } = run;

/** Starts a proxy through its node_modules/.bin shim (which execs node, so the pid is the proxy's). */
async function startProxy(name, bin, args, port, logs) {
  const log = openSync(join(logs, `${name}.log`), 'w');
  const child = spawn(`${BIN}${bin}`, args, { stdio: ['ignore', log, log] });
  closeSync(log);
  defer(name, () => stopTree(child));
  await waitForPort(port, name);
  return child;
}

/** SIGTERM to a proxy, then SIGKILL to whatever it leaves behind (supergateway puts children in their own group). */
async function stopTree(child) {
  const descendants = child.pid ? descendantsOf(child.pid) : [];
  await stopProcess(child);
  await sleep(200);
  for (const pid of descendants) if (alive(pid)) process.kill(pid, 'SIGKILL');
}

const results = []; // { label, group, phases }
/** The probe's rounds: { hub: [...], bare: [...] } of { client, hub_p50_ms, worker_p50_ms, hub_adds_ms }. */
const probe = {};
// The hubs of this suite ask for the admin token, as a default install does.
const ADMIN_TOKEN = randomBytes(24).toString('base64url');
const HUB_AUTH_ENV = { HUB_AUTH: 'token', HUB_ADMIN_TOKEN: ADMIN_TOKEN };
const AUTH = { authorization: `Bearer ${ADMIN_TOKEN}` };

/** Runs bench/probe.mjs in its own process; resolves its four rounds. */
async function runProbe(target, workerUrl, auth, workerHeader) {
  const child = spawn(
    process.execPath,
    [join(ROOT, 'bench/probe.mjs'), target, workerUrl, auth, String(PROBE_N), workerHeader],
    { stdio: ['ignore', 'pipe', 'inherit'], cwd: ROOT },
  );
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  const code = await new Promise((resolve) => child.once('close', resolve));
  if (code !== 0) throw new Error(`the probe of ${target} exited ${code}`);
  return out
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));
}

async function measure(label, group, target) {
  const t0 = performance.now();
  progress(`${label}…`);
  const { phases } = await runLoad({
    label,
    warmupSeconds: WARMUP_SECONDS,
    sequential: SEQUENTIAL > 0 ? { warmup: WARMUP, calls: SEQUENTIAL } : null,
    levels: LEVELS,
    seconds: SECONDS,
    ...target,
  });
  results.push({ label, group, phases });
  progress(`${label}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

// ---- run ------------------------------------------------------------------------------------------------
const startedAt = performance.now();
let spread;
/** calls/s of the info and the warn hub per interleaved round. */
let levelRounds;
let logSummary = [];
const leftovers = [];

try {
  const { registry, common } = await startStore(run, PREFIX);

  const supervisorLog = logFile('supervisor'); // the workers inherit the supervisor's stdout
  const supervisor = startApp(
    'supervisor',
    { ...common, MCP_WORKER_BASE_PORT: String(await freePort()), MCP_WORKER_PORT_RANGE: '200' },
    { stdout: supervisorLog },
  );
  closeSync(supervisorLog);
  defer('supervisor and its workers', async () => {
    const runtimes = await Promise.all(['echo', ...spreadIds()].map((id) => registry.getRuntime(id).catch(() => null)));
    const workers = runtimes.flatMap((r) => (r?.pid ? [r.pid] : []));
    const all = [...workers, ...workers.flatMap((pid) => descendantsOf(pid))];
    await supervisor.stop();
    await sleep(300);
    for (const pid of all) {
      if (!alive(pid)) continue;
      leftovers.push(pid);
      process.kill(pid, 'SIGKILL');
    }
  });

  await registry.upsertServer(echoSpec('echo'), 'create');
  const worker = await waitRunning(registry, 'echo');

  const hubPort = await freePort();
  const hubLog = logFile('hub');
  const hub = startApp(
    'hub',
    { ...common, ...HUB_AUTH_ENV, HUB_PORT: String(hubPort), LOG_LEVEL: 'info' },
    { stdout: hubLog },
  );
  closeSync(hubLog);
  defer('hub', () => hub.stop());
  const hubOrigin = `http://127.0.0.1:${hubPort}`;
  await waitForPort(hubPort, 'hub');
  await waitForCall(`${hubOrigin}/mcp/echo/echo`, AUTH);

  const stack = (hubPid) => [
    ...(hubPid ? [{ label: 'hub', pids: [hubPid] }] : []),
    { label: 'worker', pids: [worker.pid] },
    { label: 'upstream', descendantsOf: [worker.pid] },
    { label: 'supervisor', pids: [supervisor.child.pid] },
  ];
  const proxyWatch = (pid) => [
    { label: 'proxy', pids: [pid] },
    { label: 'upstream', descendantsOf: [pid] },
  ];
  const json = 'application/json';

  await measure('a  SDK client → stdio server', 'direct', {
    kind: 'mcp-stdio',
    command: process.execPath,
    args: [ECHO],
    watch: [],
  });
  await measure('b  worker POST /tools/echo', 'worker', {
    kind: 'http',
    origin: `http://${worker.host ?? '127.0.0.1'}:${worker.port}`,
    paths: ['/tools/echo'],
    accept: json,
    headers: { 'x-mcp-worker-token': worker.workerToken ?? '' },
    watch: stack(null),
  });
  await measure('c  hub POST /mcp/echo/echo', 'hub', {
    kind: 'http',
    origin: hubOrigin,
    paths: ['/mcp/echo/echo'],
    accept: json,
    headers: AUTH,
    watch: stack(hub.child.pid),
  });
  await measure('c  hub, SSE answer', 'hub', {
    kind: 'http',
    origin: hubOrigin,
    paths: ['/mcp/echo/echo'],
    accept: 'text/event-stream',
    headers: AUTH,
    levels: [1, 32, 64],
    watch: stack(hub.child.pid),
  });

  // What one sequential client sees (issue 19): the probe's method against the hub with the admin token and
  // against the worker, then the same against a bare node:http proxy in front of the worker (the floor of any
  // hop on this machine), each in its own process.
  {
    const workerUrl = `http://${worker.host ?? '127.0.0.1'}:${worker.port}/tools/echo`;
    const workerHeader = `x-mcp-worker-token: ${worker.workerToken ?? ''}`;
    progress('probe: sequential client through the hub…');
    probe.hub = await runProbe(`${hubOrigin}/mcp/echo/echo`, workerUrl, AUTH.authorization, workerHeader);
    const port = await freePort();
    const bare = spawn(process.execPath, [join(ROOT, 'bench/bare-proxy.mjs'), String(port), workerUrl, workerHeader], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    defer('bare proxy', () => stopProcess(bare));
    await waitForPort(port, 'bare proxy');
    progress('probe: sequential client through a bare node:http proxy…');
    probe.bare = await runProbe(`http://127.0.0.1:${port}/mcp/echo/echo`, workerUrl, '-', workerHeader);
    await stopProcess(bare);
  }

  // A second hub at LOG_LEVEL=warn beside the first (the hub is stateless), both logging to files as a
  // deployment would; rounds at 64 callers alternate between them, so that a noisy moment of the machine hits
  // both. The worker logs at info for both.
  {
    const port = await freePort();
    const log = logFile('hub-warn');
    const hubWarn = startApp(
      'hub',
      { ...common, ...HUB_AUTH_ENV, HUB_PORT: String(port), LOG_LEVEL: 'warn' },
      { stdout: log },
    );
    closeSync(log);
    defer('hub (warn)', () => hubWarn.stop());
    await waitForPort(port, 'hub (warn)');
    await waitForCall(`http://127.0.0.1:${port}/mcp/echo/echo`, AUTH);
    const round = async (label, origin) => {
      const { phases } = await runLoad({
        label,
        kind: 'http',
        origin,
        paths: ['/mcp/echo/echo'],
        accept: json,
        headers: AUTH,
        warmupSeconds: 0.5,
        sequential: null,
        levels: [64],
        seconds: SECONDS,
        watch: [],
      });
      return phases.find((x) => x.name === 'c64')?.rate ?? 0;
    };
    levelRounds = { info: [], warn: [] };
    for (let i = 0; i < LEVEL_ROUNDS; i++) {
      progress(`log level round ${i + 1} of ${LEVEL_ROUNDS}…`);
      // ABBA order (info, warn, warn, info, …): a machine that slows down or speeds up over the rounds
      // favours neither.
      const order = i % 2 === 0 ? ['info', 'warn'] : ['warn', 'info'];
      for (const level of order) {
        const origin = level === 'info' ? hubOrigin : `http://127.0.0.1:${port}`;
        levelRounds[level].push(await round(`hub at ${level}`, origin));
      }
    }
    await hubWarn.stop();
  }

  const echoCommand = `${process.execPath} ${ECHO}`;
  {
    const port = await freePort();
    const proxy = await startProxy(
      'supergateway-sse',
      'supergateway',
      ['--stdio', echoCommand, '--port', String(port), '--outputTransport', 'sse', '--logLevel', 'none'],
      port,
      logs,
    );
    await measure('supergateway stdio → SSE', 'peer', {
      kind: 'mcp-sse',
      url: `http://127.0.0.1:${port}/sse`,
      watch: proxyWatch(proxy.pid),
    });
    await stopTree(proxy);
  }
  {
    const port = await freePort();
    const proxy = await startProxy(
      'supergateway-streamable',
      'supergateway',
      [
        '--stdio',
        echoCommand,
        '--port',
        String(port),
        '--outputTransport',
        'streamableHttp',
        '--stateful',
        '--logLevel',
        'none',
      ],
      port,
      logs,
    );
    await measure('supergateway stdio → Streamable HTTP', 'peer', {
      kind: 'mcp-streamable-http',
      url: `http://127.0.0.1:${port}/mcp`,
      watch: proxyWatch(proxy.pid),
    });
    await stopTree(proxy);
  }
  {
    const port = await freePort();
    const proxy = await startProxy(
      'mcp-proxy',
      'mcp-proxy',
      ['--port', String(port), '--host', '127.0.0.1', '--', process.execPath, ECHO],
      port,
      logs,
    );
    await measure('mcp-proxy Streamable HTTP', 'peer', {
      kind: 'mcp-streamable-http',
      url: `http://127.0.0.1:${port}/mcp`,
      watch: proxyWatch(proxy.pid),
    });
    await measure('mcp-proxy SSE', 'peer', {
      kind: 'mcp-sse',
      url: `http://127.0.0.1:${port}/sse`,
      watch: proxyWatch(proxy.pid),
    });
    await stopTree(proxy);
  }

  // 20 more servers, calls spread over them through the hub.
  progress(`registering ${SPREAD_SERVERS} servers…`);
  const ids = spreadIds();
  const t0 = performance.now();
  for (const id of ids) await registry.upsertServer(echoSpec(id), 'create');
  const spreadWorkers = [];
  for (const id of ids) spreadWorkers.push(await waitRunning(registry, id, 120_000));
  const allRunningMs = performance.now() - t0;
  for (const id of ids) await waitForCall(`${hubOrigin}/mcp/${id}/echo`, AUTH);
  progress(`${SPREAD_CALLERS} callers over ${SPREAD_SERVERS} servers for ${SPREAD_SECONDS} s…`);
  const workerPids = spreadWorkers.map((w) => w.pid);
  const { phases } = await runLoad({
    label: 'spread',
    kind: 'http',
    origin: hubOrigin,
    paths: ids.map((id) => `/mcp/${id}/echo`),
    accept: json,
    headers: AUTH,
    warmupSeconds: WARMUP_SECONDS,
    sequential: null,
    levels: [SPREAD_CALLERS],
    seconds: SPREAD_SECONDS,
    watch: [
      { label: 'hub', pids: [hub.child.pid] },
      { label: 'workers', pids: workerPids },
      { label: 'upstreams', descendantsOf: workerPids },
      { label: 'supervisor', pids: [supervisor.child.pid] },
    ],
  });
  spread = { phase: phases[0], allRunningMs };
} finally {
  // Stops everything, then summarizes the logs (before they are removed).
  logSummary = await run.finish(['hub', 'hub-warn', 'supervisor']);
}
report();

// ---- helpers used above ---------------------------------------------------------------------------------
/** One line per target of issue 14 that this suite measures: met or missed, with the figures. */
function printVerdicts(cpuOf) {
  const at = (label, n) => results.find((r) => r.label === label)?.phases.find((x) => x.name === `c${n}`);
  const peers = results
    .filter((r) => r.group === 'peer')
    .map((r) => ({ label: r.label.trim(), phase: at(r.label, 64) }))
    .filter((x) => x.phase);
  const peer = peers.reduce((a, x) => (a === undefined || x.phase.rate > a.phase.rate ? x : a), undefined);
  const json = at('c  hub POST /mcp/echo/echo', 64);
  const sse = at('c  hub, SSE answer', 64);
  const perCall = (p) => (cpuOf(p) / Math.max(1, p.ok)) * 1e6;
  const lines = [];
  const verdict = (ok, target, figures) => lines.push(`${ok ? 'MET   ' : 'MISSED'} ${target}: ${figures}`);
  if (peer && json) {
    const r = json.rate / peer.phase.rate;
    verdict(
      r >= 3,
      'hub JSON at 64 callers ≥ 3× the best peer',
      `${json.rate.toFixed(0)} vs ${peer.phase.rate.toFixed(0)} (${peer.label}) = ${r.toFixed(2)}×`,
    );
  }
  if (peer && sse) {
    const r = sse.rate / peer.phase.rate;
    verdict(
      r >= 3,
      'hub SSE at 64 callers ≥ 3× the best peer',
      `${sse.rate.toFixed(0)} vs ${peer.phase.rate.toFixed(0)} = ${r.toFixed(2)}×`,
    );
  }
  if (json && sse) {
    const r = sse.rate / json.rate;
    verdict(
      r >= 0.9,
      'SSE within 10 % of JSON at 64 callers',
      `${sse.rate.toFixed(0)} vs ${json.rate.toFixed(0)} = ${r.toFixed(2)}`,
    );
  }
  if (peer && json) {
    const r = perCall(json) / perCall(peer.phase);
    const direct = at('b  worker POST /tools/echo', 64);
    const floor = direct
      ? `; the worker + stdio server alone, no hub: ${perCall(direct).toFixed(0)} µs = ${(perCall(direct) / perCall(peer.phase)).toFixed(2)}×`
      : '';
    verdict(
      r <= 0.35,
      'CPU per call, hub + worker + stdio server ≤ 0.35× the best peer',
      `${perCall(json).toFixed(0)} vs ${perCall(peer.phase).toFixed(0)} µs = ${r.toFixed(2)}×${floor}`,
    );
  }
  if (levelRounds) {
    const r = median(levelRounds.info) / median(levelRounds.warn);
    verdict(r >= 0.9, 'LOG_LEVEL=info costs ≤ 10 % of warn (hub, interleaved medians)', `info/warn ${r.toFixed(2)}`);
  }
  if (spread) {
    const p = spread.phase;
    verdict(
      p.rate >= 3_000 && p.errors === 0,
      `${SPREAD_SERVERS} servers through the hub ≥ 3,000 calls/s, 0 failures`,
      `${p.rate.toFixed(0)} calls/s, ${p.errors} failed`,
    );
  }
  if (probe.hub) {
    const adds = probe.hub.map((r) => r.hub_adds_ms);
    const floor = probe.bare ? `; a bare node:http proxy adds ${probe.bare.map((r) => r.hub_adds_ms).join(' / ')}` : '';
    verdict(
      adds.every((v) => v <= 0.3),
      'a sequential client: the hub adds ≤ 0.3 ms at p50 in every probe round (issue 19)',
      `${adds.join(' / ')} ms (pool, fetch, pool, fetch)${floor}`,
    );
  }
  console.log(`\nVerdicts (issues 14 and 19, this run)\n\n${lines.join('\n')}`);
}

function spreadIds() {
  return Array.from({ length: SPREAD_SERVERS }, (_, i) => `spread-${String(i + 1).padStart(2, '0')}`);
}

// ---- report ---------------------------------------------------------------------------------------------
function report() {
  const ms = (v) => (v === null || v === undefined ? '—' : v.toFixed(2));
  const cpuOf = (phase, exclude = ['load']) =>
    Object.entries(phase.cpu)
      .filter(([label]) => !exclude.includes(label))
      .reduce((s, [, v]) => s + v, 0);

  console.log(
    `\nCall path: echo tool of test/fixtures/echo-server.mjs on loopback ` +
      `(Node ${process.version}, ${availableParallelism()} CPUs: ${cpus()[0]?.model?.trim() ?? 'unknown'})`,
  );
  console.log(
    `Load from a separate process (bench/load.mjs): HTTP via an undici Pool (one keep-alive connection per caller); ` +
      `MCP via the SDK v2 client, N calls in flight on one session. Per path: ${WARMUP_SECONDS} s warm-up at 8 ` +
      `callers, ${SEQUENTIAL} sequential calls after ${WARMUP} more, ${SECONDS} s per concurrency level. Hub, supervisor and worker at LOG_LEVEL=info (the default), logging to files.\n`,
  );

  const seqRows = [['path', 'p50 ms', 'p95 ms', 'p99 ms', 'calls/s', 'errors', 'CPU µs/call (servers)']];
  for (const r of results) {
    const p = r.phases.find((x) => x.name === 'sequential');
    if (!p) continue;
    seqRows.push([
      r.label,
      ms(p.p50),
      ms(p.p95),
      ms(p.p99),
      p.rate.toFixed(0),
      p.errors,
      ((cpuOf(p) / Math.max(1, p.ok)) * 1e6).toFixed(0),
    ]);
  }
  console.log('Sequential calls (one caller, one at a time)\n');
  console.log(table(seqRows));

  const levelRows = [['path', ...LEVELS.map((n) => `${n} callers`), 'errors']];
  for (const r of results) {
    const cells = LEVELS.map((n) => {
      const p = r.phases.find((x) => x.name === `c${n}`);
      return p ? `${p.rate.toFixed(0)} (p50 ${ms(p.p50)})` : '—';
    });
    const errors = r.phases.filter((x) => x.name !== 'sequential').reduce((s, x) => s + x.errors, 0);
    levelRows.push([r.label, ...cells, errors]);
  }
  if (probe.hub) {
    console.log(
      `\nOne sequential client (bench/probe.mjs, the method of latency-probe.mjs: ${PROBE_N} calls after 100, a fresh ` +
        'one-connection pool or fetch per path and round; the hub with the admin token)\n',
    );
    const rows = [
      ['round', 'client', 'hub p50 ms', 'worker p50 ms', 'hub adds ms', 'bare proxy p50 ms', 'bare proxy adds ms'],
    ];
    probe.hub.forEach((r, i) => {
      const b = probe.bare?.[i];
      rows.push([
        String(i + 1),
        r.client,
        ms(r.hub_p50_ms),
        ms(r.worker_p50_ms),
        ms(r.hub_adds_ms),
        b ? ms(b.hub_p50_ms) : '—',
        b ? ms(b.hub_adds_ms) : '—',
      ]);
    });
    console.log(table(rows));
  }
  console.log(`\nThroughput, calls/s (and p50 ms), ${SECONDS} s per level\n`);
  console.log(table(levelRows));

  const roles = ['hub', 'worker', 'upstream', 'supervisor', 'proxy', 'load'];
  const cpuRows = [
    ['path', 'callers', 'calls/s', 'servers µs/call', ...roles.map((r) => (r === 'load' ? 'load generator' : r))],
  ];
  for (const r of results) {
    const p = r.phases.filter((x) => x.name !== 'sequential').at(-1);
    if (!p) continue;
    cpuRows.push([
      r.label,
      p.callers,
      p.rate.toFixed(0),
      ((cpuOf(p) / Math.max(1, p.ok)) * 1e6).toFixed(0),
      ...roles.map((role) =>
        p.cpu[role] === undefined
          ? '—'
          : `${((p.cpu[role] / p.seconds) * 100).toFixed(0)}% ${p.rss[role].toFixed(0)} MiB`,
      ),
    ]);
  }
  console.log(
    '\nCPU (% of one core, user+sys from /proc) and RSS at the highest concurrency run; ' +
      '"servers µs/call": CPU of every process under test per call\n',
  );
  console.log(table(cpuRows));

  if (spread) {
    const p = spread.phase;
    const total = p.ok + p.errors;
    console.log(
      `\nSpread: ${SPREAD_SERVERS} echo servers (all running ${(spread.allRunningMs / 1000).toFixed(1)} s after ` +
        `registration), ${p.callers} callers round-robin over them through the hub for ${p.seconds.toFixed(1)} s\n`,
    );
    const cpu = (label) => `${((p.cpu[label] / p.seconds) * 100).toFixed(0)}%`;
    console.log(
      table([
        ['calls', 'calls/s', 'failed', 'p50 ms', 'p99 ms', 'hub CPU', '20 workers CPU', '20 upstreams CPU', 'load CPU'],
        [
          total,
          p.rate.toFixed(0),
          `${p.errors} (${((p.errors / Math.max(1, total)) * 100).toFixed(2)}%)`,
          ms(p.p50),
          ms(p.p99),
          cpu('hub'),
          cpu('workers'),
          cpu('upstreams'),
          cpu('load'),
        ],
      ]),
    );
    console.log(
      `RSS: hub ${p.rss.hub.toFixed(0)} MiB, 20 workers ${p.rss.workers.toFixed(0)} MiB, ` +
        `20 upstreams ${p.rss.upstreams.toFixed(0)} MiB, supervisor ${p.rss.supervisor.toFixed(0)} MiB`,
    );
  }

  const errorLines = [];
  for (const r of [...results, ...(spread ? [{ label: 'spread', phases: [spread.phase] }] : [])]) {
    for (const p of r.phases) {
      for (const e of p.errorSamples) errorLines.push(`- ${r.label} [${p.name}] ×${e.count}: ${e.message}`);
    }
  }
  if (errorLines.length > 0) console.log(`\nErrors seen by the load generator\n\n${errorLines.join('\n')}`);
  if (logSummary.length > 0) {
    console.log('\nWarnings and errors in the logs of hub, supervisor and workers\n');
    console.log(table([['service', 'level', 'event', 'error', 'message', 'count'], ...logSummary]));
  } else {
    console.log('\nNo warnings or errors in the logs of hub, supervisor and workers.');
  }
  if (leftovers.length > 0) console.log(`\nLeft behind after the supervisor stopped (killed): ${leftovers.join(', ')}`);

  const seq = (label) => results.find((r) => r.label === label)?.phases.find((x) => x.name === 'sequential');
  const best = (r) => r.phases.filter((x) => x.name !== 'sequential').reduce((a, x) => (x.rate > a.rate ? x : a));
  const b = seq('b  worker POST /tools/echo');
  const c = seq('c  hub POST /mcp/echo/echo');
  const peers = results.filter((r) => r.group === 'peer').map((r) => ({ label: r.label, phase: best(r) }));
  const bestPeer = peers.reduce((a, x) => (x.phase.rate > a.phase.rate ? x : a), peers[0]);
  const hubEntry = results.find((r) => r.label === 'c  hub POST /mcp/echo/echo');
  const hubBest = hubEntry ? best(hubEntry) : null;
  const parts = [];
  const at1 = (label) => results.find((r) => r.label === label)?.phases.find((x) => x.name === 'c1');
  const b1 = at1('b  worker POST /tools/echo');
  const c1 = at1('c  hub POST /mcp/echo/echo');
  if (probe.hub) {
    const adds = probe.hub.map((r) => r.hub_adds_ms);
    parts.push(
      `a sequential client sees the hub add ${median(adds).toFixed(2)} ms at p50 (median of the probe's rounds ` +
        `${adds.join(', ')}` +
        (probe.bare ? `; a bare node:http proxy: ${median(probe.bare.map((r) => r.hub_adds_ms)).toFixed(2)} ms)` : ')'),
    );
  } else if (b && c) {
    parts.push(
      `hub adds ${(c.p50 - b.p50).toFixed(2)} ms at p50 over the worker direct (c − b, sequential` +
        (b1 && c1 ? `; ${(c1.p50 - b1.p50).toFixed(2)} ms in the later ${SECONDS} s run at 1 caller)` : ')'),
    );
  }
  if (hubBest && bestPeer) {
    parts.push(
      `hub peak ${hubBest.rate.toFixed(0)} calls/s (${hubBest.callers} callers) = ` +
        `${(hubBest.rate / bestPeer.phase.rate).toFixed(2)}× the best peer ` +
        `(${bestPeer.label.trim()}: ${bestPeer.phase.rate.toFixed(0)} calls/s at ${bestPeer.phase.callers} callers)`,
    );
  }
  console.log(`\nSummary: ${parts.join('; ')}. Whole run ${((performance.now() - startedAt) / 1000).toFixed(0)} s.`);

  if (levelRounds) {
    const info = median(levelRounds.info);
    const warn = median(levelRounds.warn);
    console.log(
      `\nLog level, ${LEVEL_ROUNDS} interleaved rounds at 64 callers (calls/s): hub at info ` +
        `${levelRounds.info.map((v) => v.toFixed(0)).join(', ')} (median ${info.toFixed(0)}); hub at warn ` +
        `${levelRounds.warn.map((v) => v.toFixed(0)).join(', ')} (median ${warn.toFixed(0)}); info/warn ` +
        `${(info / warn).toFixed(2)}.`,
    );
  }
  printVerdicts(cpuOf);

  if (run.keepLogs) console.log(`Logs kept in ${logs}`);
}
