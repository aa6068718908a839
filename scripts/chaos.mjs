#!/usr/bin/env node
// `pnpm chaos`: the fault-injection suite of issue 13. Starts a private Redis, a hub and two supervisors from
// dist/, registers three stdio servers (test/fixtures/chaos-server.mjs; `slow` answers after --slow-ms, so calls
// are always in flight there), and for each scenario drives a fixed open-loop load (--rate calls/s over the
// three, each answer checked: the right text of the right server) from a separate process while it injects one
// fault (scripts/chaos/scenarios.mjs). Prints per scenario: calls sent, failed (by status and code), calls that
// had reached the upstream when the fault hit, time until 100 % success again, the slowest answer, the target's
// worker pid before and after, the hub's warn/error log lines; then a leak check (no process of the run, no
// port claim, lease or runtime record left in Redis). Exit code 0 when every scenario meets the bar,
// 1 otherwise (the failed bars are printed), 2 on a bad argument.
//
// Options: --scenario NAME (repeatable; default: all), --rate N (calls/s, default 200), --redis-down S (seconds,
// default 30), --slow-ms N (default 500), --json (machine-readable summary on stdout). Logs of the hub, the
// supervisors (with their workers) and the fixtures' event files stay in .data/chaos/last-run/.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { jsonLines, percentile, ROOT } from '../bench/lib.mjs';
import { missedBars, printReport } from './chaos/report.mjs';
import { SCENARIOS, TARGET } from './chaos/scenarios.mjs';
import { createStack, now, poll, sleep, stopStack } from './chaos/stack.mjs';

const SERVERS = ['alpha', 'beta', TARGET];
const RUN_DIR = join(ROOT, '.data/chaos/last-run');
const USAGE = `pnpm chaos [--json] [--rate N] [--redis-down S] [--slow-ms N] [--scenario ${SCENARIOS.map((s) => s.name).join('|')}]…`;
/** Load before the fault: the baseline every scenario starts from. */
const WARM_MS = 2_000;
/** 100 % success this long (every call sent in it answered right) ends a scenario. */
const SETTLE_MS = 3_000;
/** A scenario that is not back to 100 % this long after its fault ends is reported as not recovered. */
const MAX_RECOVERY_MS = 60_000;
const CALL_TIMEOUT_MS = 30_000;
/** The load's keep-alive connections, all opened before a scenario's clock starts; more calls in flight wait in
 * the load process (sent, not yet on the wire: a hub that closes meanwhile refuses them). */
const CONNECTIONS = 256;
/** Keys with a TTL (leases, port locks) may take this long to expire after their holder is gone. */
const LEAK_WAIT_MS = 15_000;
/** A load process sending this late (p99) measures a busy machine as much as the system under test. */
const LAG_WARN_MS = 100;

const say = (message) => process.stderr.write(`[chaos] ${message}\n`);

function parseArgs(argv) {
  const opts = { json: false, rate: 200, redisDownS: 30, slowMs: 500, scenarios: [] };
  const positive = (flag, value) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0) usage(`${flag} needs a positive number, got "${value}"`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') continue;
    if (arg === '--json') opts.json = true;
    else if (arg === '--rate') opts.rate = positive(arg, argv[++i]);
    else if (arg === '--redis-down') opts.redisDownS = positive(arg, argv[++i]);
    else if (arg === '--slow-ms') opts.slowMs = positive(arg, argv[++i]);
    else if (arg === '--scenario') {
      const name = argv[++i];
      if (!SCENARIOS.some((s) => s.name === name)) usage(`unknown scenario "${name}"`);
      opts.scenarios.push(name);
    } else usage(`unknown argument ${arg}`);
  }
  return opts;
}

function usage(problem) {
  say(`${problem}; usage: ${USAGE}`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------------------------
// The load process (scripts/chaos/load.mjs) as seen from here.

function startLoad(stack, opts, tag) {
  const child = spawn(process.execPath, [join(ROOT, 'scripts/chaos/load.mjs')], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const calls = [];
  let tick = { sent: 0, inflight: 0, oldest: null };
  let onDrained;
  const drained = new Promise((resolve) => {
    onDrained = resolve;
  });
  let onStarted;
  const started = new Promise((resolve) => {
    onStarted = resolve;
  });
  let onStopped;
  const stopped = new Promise((resolve) => {
    onStopped = resolve;
  });
  const callsLog = openSync(join(stack.runDir, `calls-${tag}.jsonl`), 'w');
  const lines = createInterface({ input: child.stdout });
  lines.on('line', (line) => {
    const msg = JSON.parse(line);
    if (msg.type === 'call') {
      calls.push(msg);
      writeSync(callsLog, `${line}\n`);
    } else if (msg.type === 'tick') tick = msg;
    else if (msg.type === 'started') onStarted();
    else if (msg.type === 'stopped') onStopped();
    else if (msg.type === 'drained') onDrained();
  });
  const exited = Promise.all([once(child, 'exit'), once(lines, 'close').then(() => closeSync(callsLog))]);
  const targets = SERVERS.map((server) =>
    server === TARGET ? { server, tool: 'slow', args: { ms: opts.slowMs } } : { server, tool: 'echo', args: {} },
  );
  child.stdin.write(
    `${JSON.stringify({ origin: stack.origin, rate: opts.rate, timeoutMs: CALL_TIMEOUT_MS, connections: CONNECTIONS, targets, tag })}\n`,
  );
  let stopSent = false;
  const load = {
    calls,
    startedAt: now(),
    /** Resolves once the load's connections are open and its clock runs. */
    started,
    /** Resolves once the load process has sent its last call (after stop()). */
    stopped,
    /** Sends no more calls; resolves when every call sent has answered. */
    stop() {
      if (!stopSent) child.stdin.write('stop\n');
      stopSent = true;
      return drained;
    },
    async close() {
      await load.stop();
      child.stdin.end('close\n');
      await exited;
    },
    /**
     * Resolves once every call due in SETTLE_MS after `since` (or after the last failure, if later) answered
     * right; false when that did not happen within MAX_RECOVERY_MS.
     */
    async settled(since) {
      const deadline = since + MAX_RECOVERY_MS;
      for (;;) {
        const lastFail = calls.reduce((m, c) => (c.c !== 'ok' && c.ts > m ? c.ts : m), since);
        const windowEnd = lastFail + SETTLE_MS;
        if (now() >= windowEnd && (tick.oldest === null || tick.oldest > windowEnd)) return true;
        if (now() > deadline) return false;
        await sleep(100);
      }
    },
  };
  return load;
}

// ---------------------------------------------------------------------------------------------------------------
// One scenario: healthy stack, load, fault, back to 100 %, figures.

async function ensureHealthy(stack) {
  if (!stack.hub) await stack.startHub();
  while (stack.supervisors.size < 2) await stack.startSupervisor();
  for (const name of SERVERS) await stack.waitServing(name);
}

async function runScenario(stack, scenario, opts) {
  await ensureHealthy(stack);
  const runtime = await stack.runtime(TARGET);
  const before = { pid: runtime.pid, supervisor: runtime.supervisor, upstreamPid: stack.upstreamPid(runtime.pid) };
  say(
    `${scenario.name}: ${scenario.fault} (${TARGET}: worker ${before.pid}, stdio ${before.upstreamPid}, ${before.supervisor})`,
  );
  const load = startLoad(stack, opts, scenario.name);
  await load.started;
  await sleep(WARM_MS);
  const fault = await scenario.inject({ stack, load, before, opts, say });
  const recovered = fault.loadStopped ? true : await load.settled(fault.endAt ?? fault.at);
  const endedAt = now();
  await load.close();
  await ensureHealthy(stack);
  const after = await stack.runtime(TARGET);
  const result = analyze(stack, scenario, load, fault, { recovered, endedAt, upstreamPid: before.upstreamPid });
  result.pidBefore = before.pid;
  result.pidAfter = after?.pid ?? null;
  // A scenario measured with next to no calls proves nothing: at least the baseline's worth must have run.
  const minimum = Math.floor((opts.rate * WARM_MS) / 1_000);
  const loadRan = ['the load ran', result.sent >= minimum, `${result.sent} calls sent, at least ${minimum} needed`];
  result.bars = [loadRan, ...scenario.bars(result)].map(([bar, met, detail]) => ({ bar, met, detail }));
  result.met = result.bars.every((b) => b.met);
  return result;
}

/** The figures of one scenario from its calls, the fixtures' event files and the hub's log. */
function analyze(stack, scenario, load, fault, { recovered, endedAt, upstreamPid }) {
  const { calls } = load;
  const failedCalls = calls.filter((c) => c.c !== 'ok');
  const byCode = {};
  for (const c of failedCalls) {
    const key = c.st ? `${c.st} ${c.c}` : c.c;
    byCode[key] = (byCode[key] ?? 0) + 1;
  }
  const { reached, startedBy } = reachedUpstream(stack, `${scenario.name}-`, fault.at, upstreamPid);
  // Before or after the fault by when a call was sent: the due time (t0) is earlier when the load fell behind.
  const lastFail = failedCalls.reduce((m, c) => Math.max(m, c.ts), Number.NEGATIVE_INFINITY);
  const afterFault = calls.filter((c) => c.c === 'ok' && c.ts >= fault.at).map((c) => c.t1 - c.t0);
  const beforeFault = calls.filter((c) => c.c === 'ok' && c.ts < fault.at).map((c) => c.t1 - c.t0);
  const lag = calls.map((c) => c.ts - c.t0);
  const { at, endAt, loadStopped, ...figures } = fault;
  return {
    scenario: scenario.name,
    fault: scenario.fault,
    sent: calls.length,
    failed: failedCalls.length,
    failedByCode: byCode,
    failedBeforeFault: failedCalls.filter((c) => c.ts < fault.at).length,
    wrongAnswers: calls.filter((c) => c.c === 'wrong_answer').length,
    /** Failures not in the one error shape: a 200 without a body, an error body without a code. */
    brokenAnswers: calls.filter((c) => c.c === 'broken_answer' || c.c === 'no_error_code').length,
    reachedUpstream: reached.size,
    // A failed call the stdio server of the fault's moment started (whenever: a worker killed -9 leaves its child
    // a moment, which still runs what the worker had written to its stdin) had reached it too.
    failedNotReached: failedCalls.filter((c) => {
      const id = `${scenario.name}-${c.i}`;
      return !reached.has(id) && !startedBy.has(id);
    }).length,
    faultDurationMs: endAt === undefined ? null : Math.round(endAt - at),
    recovered,
    backTo100PctMs: failedCalls.length === 0 ? 0 : Math.max(0, Math.round(lastFail - at)),
    latencyMs: {
      p50Before: round(percentile(beforeFault, 50)),
      p99After: round(percentile(afterFault, 99)),
      maxAfter: round(Math.max(0, ...afterFault)),
    },
    /** How late the load process sent calls (a busy machine): figures above are only as exact as this. */
    loadLagMs: { p99: round(percentile(lag, 99)), max: round(Math.max(0, ...lag)) },
    hubLog: hubLogLines(stack, load.startedAt, endedAt),
    ...figures,
  };
}

const round = (ms) => (ms === undefined ? null : Math.round(ms));

/**
 * `reached`: ids (messages) of the calls of this scenario that had started upstream and not answered at `at`;
 * `startedBy`: those the target's stdio server of that moment (`upstreamPid`) started at any time.
 */
function reachedUpstream(stack, idPrefix, at, upstreamPid) {
  const started = new Map();
  const finished = new Map();
  const startedBy = new Set();
  for (const name of SERVERS) {
    const file = stack.eventsFile(name);
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (!line.startsWith(`{"pid":`) || !line.includes(`"id":"${idPrefix}`)) continue;
      const e = JSON.parse(line);
      if (e.ev === 's' && e.pid === upstreamPid) startedBy.add(e.id);
      if (e.ev === 's') started.set(e.id, Math.min(e.t, started.get(e.id) ?? Number.POSITIVE_INFINITY));
      else finished.set(e.id, e.t);
    }
  }
  const reached = new Set();
  for (const [id, t] of started)
    if (t <= at && !((finished.get(id) ?? Number.POSITIVE_INFINITY) <= at)) reached.add(id);
  return { reached, startedBy };
}

/** The hub's warn and error lines logged between `from` and `to`, by level. */
function hubLogLines(stack, from, to) {
  const counts = { warn: 0, error: 0 };
  const file = join(stack.runDir, 'hub.log');
  if (!existsSync(file)) return counts;
  for (const entry of jsonLines(readFileSync(file, 'utf8'))) {
    const t = Date.parse(entry.time);
    if (t >= from && t <= to && entry.level in counts) counts[entry.level]++;
  }
  return counts;
}

// ---------------------------------------------------------------------------------------------------------------
// Leak check: every server deleted, every supervisor and the hub stopped, then nothing of the run may be left.

async function leakCheck(stack) {
  await ensureHealthy(stack).catch((err) => say(`before the leak check: ${err.message}`));
  for (const name of SERVERS) {
    const res = await stack.api('DELETE', `/api/servers/${name}`);
    if (res.status !== 204) say(`DELETE ${name}: HTTP ${res.status}`);
  }
  await poll('runtime records removed', async () => {
    const records = await Promise.all(SERVERS.map((name) => stack.runtime(name)));
    return records.every((r) => r === null);
  }).catch((err) => say(err.message));
  const exits = {};
  for (const [id, sup] of stack.supervisors) {
    sup.child.kill('SIGTERM');
    exits[id] = (await sup.exit).code;
  }
  stack.supervisors.clear();
  stack.hub.child.kill('SIGTERM');
  exits.hub = (await stack.hub.exit).code;
  stack.hub = null;
  let leaks;
  await poll(
    'nothing of the run left',
    async () => {
      leaks = await findLeaks(stack);
      return leaks.processes.length + leaks.keys.length + leaks.ports.length === 0;
    },
    LEAK_WAIT_MS,
  ).catch(() => {});
  return { ...leaks, exits, clean: leaks.processes.length + leaks.keys.length + leaks.ports.length === 0 };
}

async function findLeaks(stack) {
  const { client, keys } = stack;
  const found = [];
  for (const pattern of ['server_runtime:*', 'lease:*', 'port_lock:*']) {
    let cursor = '0';
    do {
      const [next, batch] = await client.scan(cursor, 'MATCH', `${keys.prefix}${pattern}`, 'COUNT', 500);
      cursor = next;
      found.push(...batch);
    } while (cursor !== '0');
  }
  return {
    processes: stack.leftoverProcesses().map((p) => `${p.pid} ${p.cmdline.slice(0, 120)}`),
    keys: found,
    ports: await client.smembers(keys.runtimePorts),
  };
}

// ---------------------------------------------------------------------------------------------------------------

const opts = parseArgs(process.argv.slice(2));
const chosen = opts.scenarios.length > 0 ? SCENARIOS.filter((s) => opts.scenarios.includes(s.name)) : SCENARIOS;
rmSync(RUN_DIR, { recursive: true, force: true });
mkdirSync(RUN_DIR, { recursive: true });
const started = now();
let stack;
const onSignal = (signal) => {
  say(`${signal}: stopping everything`);
  void (stack ? stopStack(stack) : Promise.resolve()).finally(() => process.exit(130));
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);

let exitCode = 1;
try {
  stack = await createStack({ runDir: RUN_DIR, servers: SERVERS, say });
  const results = [];
  for (const scenario of chosen) results.push(await runScenario(stack, scenario, opts));
  say('leak check');
  const leaks = await leakCheck(stack);
  const durationS = Math.round((now() - started) / 1_000);
  if (opts.json) {
    const missed = missedBars(results, leaks);
    const ok = missed.length === 0;
    console.log(
      JSON.stringify({ rate: opts.rate, redisDownS: opts.redisDownS, durationS, results, leaks, missed, ok }, null, 2),
    );
    exitCode = ok ? 0 : 1;
  } else {
    const missed = printReport(results, leaks, opts, { servers: SERVERS, target: TARGET, lagWarnMs: LAG_WARN_MS });
    console.log(`(${durationS} s; logs in ${RUN_DIR})`);
    exitCode = missed.length === 0 ? 0 : 1;
  }
} catch (err) {
  say(`failed: ${err.stack ?? err.message}`);
} finally {
  if (stack) await stopStack(stack);
}
process.exit(exitCode);
