// What auth and the rate limiter cost on a tool call: `POST /mcp/echo/echo` (the stdio fixture server's echo)
// through the hub, side by side:
//   (i)   open: a hub with HUB_AUTH=none, no credentials (no auth, no limiter);
//   (ii)  admin: a hub with HUB_ADMIN_TOKEN, the token as Bearer (auth; the admin is not limited or counted);
//   (iii) key: the same hub, a project API key with limits {perHour 1e9, perDay 1e9, concurrent 1000}
//         (auth + key cache + limiter check/release in Redis + usage counting).
// The two hubs share one Redis, supervisor and worker (the hub is stateless). Measured in interleaved rounds
// (the order rotates every round) so that noise hits every configuration alike; each round is one load
// generator process (bench/load.mjs) per configuration: sequential calls, then calls at 32 callers. Reported:
// medians over the rounds, and the p50 differences paired within each round. Then bench/limiter.mjs's
// check + release figures on the same Redis.
// Usage: pnpm bench auth. Env: BENCH_AUTH_ROUNDS (6, after one unrecorded warm-up round), BENCH_AUTH_SEQUENTIAL
// calls per round (500), BENCH_AUTH_SECONDS at 32 callers per round (1.5), BENCH_N limiter samples (5000).
import { randomBytes } from 'node:crypto';
import { availableParallelism, cpus } from 'node:os';
import { request } from 'undici';
import { createRun, envNumber, startEchoStack, startHub, waitForCall } from './harness.mjs';
import { median, table } from './lib.mjs';
import { benchLimiter, limiterTable } from './limiter.mjs';

const ROUNDS = Math.round(envNumber('BENCH_AUTH_ROUNDS', 6));
const SEQUENTIAL = Math.round(envNumber('BENCH_AUTH_SEQUENTIAL', 500));
const SECONDS = envNumber('BENCH_AUTH_SECONDS', 1.5);
const LIMITER_N = Math.round(envNumber('BENCH_N', 5_000));
const CALLERS = 32;
const PREFIX = 'bench-auth:';
const PROJECT = 'bench';
const LIMITS = { perHour: 1e9, perDay: 1e9, concurrent: 1000 };
const TOOL_PATH = '/mcp/echo/echo';

const run = createRun('auth');
const startedAt = performance.now();
const rounds = []; // per round: { [config]: { seq, con } }
let configs = [];
let limiter;
let usage;
let keyCalls = 0;
let logSummary = [];

/** A JSON request to the hub's admin API; resolves the parsed answer, throws on a non-2xx status. */
async function api(origin, token, method, path, body) {
  const res = await request(`${origin}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode} ${text}`);
  return JSON.parse(text);
}

try {
  const stack = await startEchoStack(run, { prefix: PREFIX, spec: { project: PROJECT } });
  const token = randomBytes(24).toString('hex');
  const hub = await startHub(run, stack, { name: 'hub', env: { HUB_AUTH: 'token', HUB_ADMIN_TOKEN: token } });
  const open = await startHub(run, stack, { name: 'hub-open' });

  await api(hub.origin, token, 'POST', '/api/projects', { id: PROJECT, name: 'Bench' });
  const created = await api(hub.origin, token, 'POST', `/api/projects/${PROJECT}/keys`, {
    name: 'bench',
    role: 'owner',
    limits: LIMITS,
  });
  configs = [
    { name: 'open', label: '(i) open: no token, no key', hub: open, headers: {} },
    { name: 'admin', label: '(ii) admin token: auth', hub, headers: { authorization: `Bearer ${token}` } },
    {
      name: 'key',
      label: '(iii) API key: auth + limiter + usage',
      hub,
      headers: { authorization: `Bearer ${created.key}` },
    },
  ];
  for (const c of configs) await waitForCall(`${c.hub.origin}${TOOL_PATH}`, c.headers);
  await new Promise((r) => setTimeout(r, 500)); // the usage of the readiness calls lands
  const usageBefore = (await api(hub.origin, token, 'GET', `/api/usage/${created.id}`)).total.calls;
  // Without credentials the hub with the token must refuse: (i) is only open on the open hub.
  const refused = await request(`${hub.origin}${TOOL_PATH}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{"message":"hi"}',
  });
  await refused.body.dump();
  if (refused.statusCode !== 401) throw new Error(`the hub with a token answered ${refused.statusCode} without one`);

  for (let round = 0; round <= ROUNDS; round++) {
    const warmup = round === 0;
    run.progress(warmup ? 'warm-up round…' : `round ${round}/${ROUNDS}…`);
    const order = configs.map((_, i) => configs[(i + round) % configs.length]);
    const results = {};
    for (const c of order) {
      const out = await run.runLoad({
        label: c.name,
        kind: 'http',
        origin: c.hub.origin,
        paths: [TOOL_PATH],
        accept: 'application/json',
        headers: c.headers,
        warmupSeconds: warmup ? 1 : 0,
        sequential: { warmup: 200, calls: SEQUENTIAL },
        levels: [CALLERS],
        seconds: SECONDS,
        watch: stack.watch(c.hub.child.pid),
      });
      if (c.name === 'key') keyCalls += out.totals.ok + out.totals.errors;
      results[c.name] = {
        seq: out.phases.find((p) => p.name === 'sequential'),
        con: out.phases.find((p) => p.name === `c${CALLERS}`),
      };
    }
    if (!warmup) rounds.push(results);
  }

  // Usage is written in batches (every 100 ms): give the last one time to land.
  await new Promise((r) => setTimeout(r, 500));
  usage = await api(hub.origin, token, 'GET', `/api/usage/${created.id}`);
  usage.counted = usage.total.calls - usageBefore;

  run.progress(`limiter, ${LIMITER_N} sequential checks…`);
  limiter = await benchLimiter({ redisUrl: stack.redisUrl, n: LIMITER_N });
} finally {
  logSummary = await run.finish(['hub', 'hub-open', 'supervisor']);
}
report();

function report() {
  const ms = (v) => (v === null || v === undefined ? '—' : v.toFixed(2));
  const signed = (v, digits = 2) => `${v >= 0 ? '+' : ''}${v.toFixed(digits)}`;
  const of = (name, phase, field) => rounds.map((r) => r[name][phase][field]);
  const hubCpuPerCall = (p) => (p.cpu.hub / Math.max(1, p.ok)) * 1e6;

  console.log(
    `\nAuth + limiter: POST ${TOOL_PATH} (echo of test/fixtures/echo-server.mjs) through the hub on loopback ` +
      `(Node ${process.version}, ${availableParallelism()} CPUs: ${cpus()[0]?.model?.trim() ?? 'unknown'})`,
  );
  console.log(
    `${ROUNDS} interleaved rounds (after one warm-up round), the order rotating; per round and configuration one ` +
      `load process (undici, keep-alive): ${SEQUENTIAL} sequential calls after 200 more, then ${SECONDS} s at ` +
      `${CALLERS} callers. Medians over the rounds; Δ = median of the differences paired within a round ` +
      `(min … max). Key limits ${JSON.stringify(LIMITS)}.\n`,
  );
  const rows = [
    [
      'configuration',
      'p50 ms',
      'p99 ms',
      'Δp50 vs (i) ms',
      'Δp50 vs (ii) ms',
      'hub CPU µs/call seq',
      `calls/s (${CALLERS})`,
      `hub CPU µs/call (${CALLERS})`,
      `Redis CPU µs/call (${CALLERS})`,
      'errors',
    ],
  ];
  const paired = (a, b) => rounds.map((r) => r[a].seq.p50 - r[b].seq.p50);
  const delta = (a, b) => {
    if (a === b) return '—';
    const d = paired(a, b);
    return `${signed(median(d))} (${signed(Math.min(...d))} … ${signed(Math.max(...d))})`;
  };
  for (const c of configs) {
    rows.push([
      c.label,
      ms(median(of(c.name, 'seq', 'p50'))),
      ms(median(of(c.name, 'seq', 'p99'))),
      delta(c.name, 'open'),
      c.name === 'open' ? '—' : delta(c.name, 'admin'),
      median(rounds.map((r) => hubCpuPerCall(r[c.name].seq))).toFixed(0),
      median(of(c.name, 'con', 'rate')).toFixed(0),
      median(rounds.map((r) => hubCpuPerCall(r[c.name].con))).toFixed(0),
      median(rounds.map((r) => (r[c.name].con.cpu.redis / Math.max(1, r[c.name].con.ok)) * 1e6)).toFixed(0),
      rounds.reduce((s, r) => s + r[c.name].seq.errors + r[c.name].con.errors, 0),
    ]);
  }
  console.log(table(rows));

  console.log('\nSequential p50 per round, ms (calls/s at 32 callers)\n');
  console.log(
    table([
      ['round', ...configs.map((c) => c.name)],
      ...rounds.map((r, i) => [
        i + 1,
        ...configs.map((c) => `${ms(r[c.name].seq.p50)} (${r[c.name].con.rate.toFixed(0)})`),
      ]),
    ]),
  );

  console.log(`\nLimiter alone (bench/limiter.mjs on the same Redis, sequential, in the bench process)\n`);
  console.log(limiterTable(limiter, LIMITER_N));

  const counted = usage?.counted;
  console.log(
    `\nUsage of the key: ${counted} calls counted for ${keyCalls} made` +
      `${counted === keyCalls ? '' : ' (MISMATCH)'}, ${usage?.total?.errors} errors.`,
  );

  const errorLines = [];
  for (const [i, r] of rounds.entries()) {
    for (const [name, { seq, con }] of Object.entries(r)) {
      for (const p of [seq, con]) {
        for (const e of p.errorSamples)
          errorLines.push(`- round ${i + 1} ${name} [${p.name}] ×${e.count}: ${e.message}`);
      }
    }
  }
  if (errorLines.length > 0) console.log(`\nErrors seen by the load generator\n\n${errorLines.join('\n')}`);
  const expected = new Set(['auth.open', 'secrets.plaintext']);
  const unexpected = logSummary.filter((row) => !expected.has(row[2]));
  if (unexpected.length > 0) {
    console.log('\nWarnings and errors in the logs of the hubs, supervisor and worker\n');
    console.log(table([['service', 'level', 'event', 'error', 'message', 'count'], ...unexpected]));
  } else {
    console.log('\nNo warnings or errors in the logs (besides the open hub and plaintext secrets notices).');
  }

  const d = median(paired('key', 'open'));
  console.log(
    `\nSummary: auth + limiter + usage add ${d.toFixed(3)} ms p50 over the open hub ` +
      `(auth alone ${median(paired('admin', 'open')).toFixed(3)} ms; target < 0.3 ms: ${d < 0.3 ? 'met' : 'NOT met'}). ` +
      `Whole run ${((performance.now() - startedAt) / 1000).toFixed(0)} s.`,
  );
  if (run.keepLogs) console.log(`Logs kept in ${run.logs}`);
}
