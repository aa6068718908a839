// The faults of `pnpm chaos`, one per scenario, and the bar for each (issue 13, "Done when"). A
// scenario's `inject(ctx)` causes its fault while the load runs and resolves { at (epoch ms the fault hit),
// endAt? (when a fault with a duration ended), loadStopped? (it stopped the load itself), ...figures }.
// `bars(result)` lists [bar, met, detail] rows; a scenario passes when every row is met.
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'undici';
import { now, poll, serverSpec, sleep } from './stack.mjs';

/** The server every fault aims at: its calls are slow, so some are always in flight upstream. */
export const TARGET = 'slow';
const SUPERVISOR_GAP_MS = 1_000;
const RUNNING_AGAIN_TIMEOUT_MS = 60_000;
const LONG_CALLS = 10;
const LONG_CALL_MS = 3_000;
const HUB_EXIT_TIMEOUT_MS = 30_000;

const killPid = (pid) => {
  if (!pid) throw new Error('no pid to kill');
  process.kill(pid, 'SIGKILL');
  return now();
};

const noWrongAnswers = (r) => ['no wrong answer', r.wrongAnswers === 0, `${r.wrongAnswers} wrong`];
const cleanErrors = (r) => [
  'every failure a clean error (an error status, the error shape with a code)',
  r.brokenAnswers === 0,
  `${r.brokenAnswers} answers without one`,
];
/** What every scenario must hold besides its own bar. */
const always = (r) => [noWrongAnswers(r), cleanErrors(r)];
const noFailures = (r) => ['0 failed calls', r.failed === 0, `${r.failed} failed`];
const onlyReachedFail = (r) => [
  'failures only among calls that had reached the upstream',
  r.failedNotReached === 0,
  `${r.failedNotReached} failed without having reached it`,
];

/** The CHAOS_GENERATION the target's spec holds: a metadata PUT keeps it, a spec PUT bumps it. */
let generation = 1;

/** A fault that is one call of the admin API, which must answer `expected`. */
async function apiFault(stack, method, path, body, expected = 200) {
  const at = now();
  const res = await stack.api(method, path, body);
  if (res.status !== expected) throw new Error(`${method} ${path}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
  return { at };
}

export const SCENARIOS = [
  {
    name: 'restart',
    fault: 'POST /api/servers/<id>/restart',
    inject: ({ stack }) => apiFault(stack, 'POST', `/api/servers/${TARGET}/restart`, undefined, 202),
    bars: (r) => [noFailures(r), ...always(r)],
  },
  {
    name: 'meta-put',
    fault: 'PUT changing only tags and description',
    inject({ stack }) {
      const stamp = new Date().toISOString();
      return apiFault(stack, 'PUT', `/api/servers/${TARGET}`, {
        ...serverSpec(stack, TARGET, { CHAOS_GENERATION: String(generation) }),
        description: `chaos fixture ${TARGET}, described at ${stamp}`,
        tags: ['chaos', `meta-${stamp}`],
      });
    },
    bars: (r) => [
      ['the worker keeps its pid', r.pidBefore === r.pidAfter, `${r.pidBefore} → ${r.pidAfter}`],
      noFailures(r),
      ...always(r),
    ],
  },
  {
    name: 'spec-put',
    fault: 'PUT changing an env var of the spec',
    inject({ stack }) {
      generation++;
      return apiFault(
        stack,
        'PUT',
        `/api/servers/${TARGET}`,
        serverSpec(stack, TARGET, { CHAOS_GENERATION: String(generation) }),
      );
    },
    bars: (r) => [noFailures(r), ...always(r)],
  },
  {
    name: 'worker-kill',
    fault: 'kill -9 of a worker',
    async inject({ before }) {
      return { at: killPid(before.pid) };
    },
    bars: (r) => [onlyReachedFail(r), ...always(r)],
  },
  {
    name: 'stdio-kill',
    fault: "kill -9 of a worker's stdio server",
    async inject({ before }) {
      return { at: killPid(before.upstreamPid) };
    },
    bars: (r) => [onlyReachedFail(r), ...always(r)],
  },
  {
    name: 'supervisor-kill',
    fault: 'kill -9 of a supervisor, then of one of its workers',
    async inject({ stack, before, say }) {
      const owner = before.supervisor;
      const sup = stack.supervisors.get(owner);
      if (!sup) throw new Error(`${TARGET} is run by ${owner}, not a supervisor of this run`);
      const supervisorKilledAt = killPid(sup.child.pid);
      stack.supervisors.delete(owner);
      await sleep(SUPERVISOR_GAP_MS);
      const at = killPid(before.pid);
      const runtime = await poll(
        `${TARGET} running again after its supervisor and worker died`,
        async () => {
          const rt = await stack.runtime(TARGET);
          return rt?.status === 'running' && rt.pid !== before.pid ? rt : null;
        },
        RUNNING_AGAIN_TIMEOUT_MS,
      ).catch(() => null);
      const runningAgainMs = runtime ? now() - at : null;
      say(`killed ${owner}; the worker ran again after ${runningAgainMs?.toFixed(0)} ms under ${runtime?.supervisor}`);
      await stack.startSupervisor();
      return { at, supervisorKilledAt, runningAgainMs, newOwner: runtime?.supervisor ?? null };
    },
    bars: (r) => [
      [
        'running again within 3 s of the crash',
        r.runningAgainMs !== null && r.runningAgainMs <= 3_000,
        r.runningAgainMs === null ? 'never' : `${(r.runningAgainMs / 1_000).toFixed(1)} s`,
      ],
      ...always(r),
    ],
  },
  {
    name: 'redis-down',
    fault: 'Redis down',
    async inject({ stack, opts, say }) {
      const at = await stack.redis.stop();
      say(`redis stopped for ${opts.redisDownS} s`);
      await sleep(opts.redisDownS * 1_000);
      const endAt = await stack.redis.start();
      return { at, endAt };
    },
    bars: (r) => [noFailures(r), ...always(r)],
  },
  {
    name: 'hub-sigterm',
    fault: 'hub SIGTERM with keep-alive clients and long calls in flight',
    async inject({ stack, load }) {
      const long = Array.from({ length: LONG_CALLS }, (_, k) => longCall(stack.origin, `hub-sigterm-long-${k}`));
      // SIGTERM once every long call is being served upstream: in flight, not on its way.
      await poll('the long calls started upstream', () => longCallsStarted(stack) === LONG_CALLS, LONG_CALL_MS);
      const drained = load.stop(); // no new calls; those in flight go on, the keep-alive connections stay open
      await load.stopped;
      const hub = stack.hub;
      const at = now();
      hub.child.kill('SIGTERM');
      const exit = await Promise.race([hub.exit, sleep(HUB_EXIT_TIMEOUT_MS).then(() => null)]);
      const longResults = await Promise.all(long);
      await drained;
      stack.hub = null;
      if (exit === null) hub.child.kill('SIGKILL');
      return {
        at,
        loadStopped: true,
        hubExitCode: exit ? (exit.code ?? exit.signal) : 'still running',
        hubExitMs: exit ? exit.at - at : null,
        longCalls: LONG_CALLS,
        longCallsOk: longResults.filter((outcome) => outcome === 'ok').length,
        longCallFailures: longResults.filter((outcome) => outcome !== 'ok'),
      };
    },
    bars: (r) => [
      ['the long calls complete', r.longCallsOk === r.longCalls, `${r.longCallsOk}/${r.longCalls}`],
      // A call the load sent after the SIGTERM may be refused: only those sent before must complete.
      ['calls in flight complete', r.failedBeforeFault === 0, `${r.failedBeforeFault} failed`],
      [
        'the hub exits 0',
        r.hubExitCode === 0,
        `exit ${r.hubExitCode} after ${r.hubExitMs === null ? '?' : (r.hubExitMs / 1_000).toFixed(1)} s`,
      ],
      // Those refused while the hub closes are outside the bar (they show as failed by code in the table).
      noWrongAnswers(r),
    ],
  },
];

/** How many long calls the target's stdio server has started (its events file). */
function longCallsStarted(stack) {
  const file = stack.eventsFile(TARGET);
  if (!existsSync(file)) return 0;
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.includes('"id":"hub-sigterm-long-') && line.includes('"ev":"s"')).length;
}

/** One slow call on a keep-alive connection of its own; resolves "ok" for the right answer, else what came. */
async function longCall(origin, message) {
  try {
    const res = await request(`${origin}/mcp/${TARGET}/slow`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', 'x-request-id': `chaos-${message}` },
      body: JSON.stringify({ message, ms: LONG_CALL_MS }),
      headersTimeout: LONG_CALL_MS * 10,
      bodyTimeout: LONG_CALL_MS * 10,
    });
    const text = await res.body.text();
    const right = res.statusCode === 200 && text.includes(JSON.stringify(`${TARGET}|${message}`));
    return right ? 'ok' : `${res.statusCode} ${text.slice(0, 200)}`;
  } catch (err) {
    return `${err.code ?? err.name}: ${err.message}`;
  }
}
