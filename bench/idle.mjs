// Many servers, few busy: BENCH_IDLE_SERVERS (300) echo servers registered on one supervisor with
// MCP_WORKER_IDLE_TTL (BENCH_IDLE_TTL, 10s), of which BENCH_IDLE_BUSY (30) get a steady trickle of calls through
// the hub and keep their workers; the others start, go idle and are stopped. Reports the total RSS once they
// have, and the wake-up of an idle server: a call to it through the hub, from the request until its answer
// (BENCH_IDLE_WAKES, 20, one after the other), while the busy ones go on being called.
// Usage: pnpm bench idle (about 3 minutes on 2 cores; not in the default run).
import { Pool } from 'undici';
import { createRun, echoSpec, envNumber, startHub, startStore } from './harness.mjs';
import { descendantsOf, freePort, median, percentile, rssMiB, sleep, startApp, table } from './lib.mjs';

const SERVERS = Math.round(envNumber('BENCH_IDLE_SERVERS', 300));
const BUSY = Math.round(envNumber('BENCH_IDLE_BUSY', 30));
const TTL_S = envNumber('BENCH_IDLE_TTL', 10);
const WAKES = Math.round(envNumber('BENCH_IDLE_WAKES', 20));
/** Calls per second to each busy server: enough to keep it from idling, little CPU. */
const BUSY_RATE = 2;
const PREFIX = 'bench-idle:';
const SETTLE_TIMEOUT_MS = 10 * 60_000;

const run = createRun('idle');
const ids = Array.from({ length: SERVERS }, (_, i) => `idle-${String(i + 1).padStart(3, '0')}`);
const busyIds = ids.slice(0, BUSY);
const idleIds = ids.slice(BUSY);
const busy = { ok: 0, failed: 0, latencies: [] };
let stopBusy = false;
let result;

try {
  const store = await startStore(run, PREFIX);
  const { redisServer, registry, common } = store;

  const supervisorLog = run.logFile('supervisor');
  const supervisor = startApp(
    'supervisor',
    {
      ...common,
      MCP_WORKER_BASE_PORT: String(await freePort()),
      MCP_WORKER_PORT_RANGE: String(SERVERS * 3),
      MCP_WORKER_MAX: String(SERVERS + 10),
      MCP_WORKER_MAX_PER_PROJECT: String(SERVERS + 10),
      MCP_WORKER_IDLE_TTL: `${TTL_S}s`,
    },
    { stdout: supervisorLog },
  );
  run.defer('supervisor and its workers', async () => {
    const all = descendantsOf(supervisor.child.pid);
    for (const id of ids) await registry.deleteServer(id).catch(() => {});
    await supervisor.stop();
    await sleep(300);
    for (const pid of all) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });
  const hub = await startHub(run, store);
  const pool = new Pool(hub.origin, { connections: 64 });
  run.defer('pool', () => pool.close());
  const call = async (id, message) => {
    const t0 = performance.now();
    const res = await pool.request({
      path: `/mcp/${id}/echo`,
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ message }),
    });
    const text = await res.body.text();
    const ok = res.statusCode === 200 && text.includes(`"${message}"`);
    return { ok, ms: performance.now() - t0, status: res.statusCode };
  };

  run.progress(`registering ${SERVERS} servers…`);
  const registeredAt = performance.now();
  for (const id of ids) await registry.upsertServer(echoSpec(id), 'create');

  // The busy servers' trickle: BUSY_RATE calls per second each, from when they first run.
  const busyLoops = busyIds.map(async (id, n) => {
    let i = 0;
    while (!stopBusy) {
      const runtime = await registry.getRuntime(id);
      if (runtime?.status === 'running') {
        const r = await call(id, `busy-${n}-${i++}`).catch(() => ({ ok: false, ms: 0 }));
        if (r.ok) {
          busy.ok++;
          busy.latencies.push(r.ms);
        } else busy.failed++;
      }
      await sleep(1_000 / BUSY_RATE);
    }
  });

  run.progress(`waiting for the ${idleIds.length} others to start and go idle (TTL ${TTL_S} s)…`);
  const settled = async () => {
    const runtimes = await Promise.all(ids.map((id) => registry.getRuntime(id)));
    const stopped = runtimes.filter((r, i) => i >= BUSY && r?.status === 'stopped' && r.reason === 'idle').length;
    const running = runtimes.filter((r, i) => i < BUSY && r?.status === 'running').length;
    return { stopped, running };
  };
  let state = await settled();
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  while (state.stopped < idleIds.length || state.running < BUSY) {
    if (Date.now() > deadline) throw new Error(`not settled: ${JSON.stringify(state)}`);
    await sleep(2_000);
    state = await settled();
  }
  const settledS = (performance.now() - registeredAt) / 1000;
  await sleep(2_000);

  const workers = descendantsOf(supervisor.child.pid);
  const rss = {
    hub: rssMiB(hub.child.pid),
    supervisor: rssMiB(supervisor.child.pid),
    redis: rssMiB(redisServer.pid),
    // Workers and their stdio servers: every process under the supervisor.
    processes: workers.reduce((s, pid) => s + rssMiB(pid), 0),
    count: workers.length,
  };

  run.progress(`waking ${WAKES} idle servers one after the other…`);
  const wakes = [];
  for (const id of idleIds.slice(0, WAKES)) {
    const r = await call(id, `wake-${id}`);
    if (!r.ok) throw new Error(`waking ${id} failed with ${r.status}`);
    wakes.push(r.ms);
  }
  stopBusy = true;
  await Promise.all(busyLoops);
  result = { settledS, rss, wakes };
} finally {
  stopBusy = true;
  await run.finish([]);
}

const { rss, wakes, settledS } = result;
const total = rss.hub + rss.supervisor + rss.redis + rss.processes;
console.log(
  `\nMany servers, few busy (Node ${process.version}): ${SERVERS} echo servers, MCP_WORKER_IDLE_TTL=${TTL_S}s, ` +
    `${BUSY} of them called ${BUSY_RATE}×/s each through the hub; the others idle-stopped ${settledS.toFixed(0)} s after ` +
    'registration began.\n',
);
console.log(
  table([
    ['measure', 'value'],
    ['processes under the supervisor (workers + stdio servers)', rss.count],
    ['their RSS', `${rss.processes.toFixed(0)} MiB`],
    ['hub + supervisor + Redis RSS', `${(rss.hub + rss.supervisor + rss.redis).toFixed(0)} MiB`],
    ['total RSS', `${total.toFixed(0)} MiB`],
    [
      `wake-up of an idle server, call to answer (${wakes.length})`,
      `p50 ${median(wakes).toFixed(0)} ms, p99 ${percentile(wakes, 99).toFixed(0)} ms`,
    ],
    [
      'busy servers meanwhile',
      `${busy.ok} calls ok, ${busy.failed} failed, p50 ${median(busy.latencies).toFixed(1)} ms, p99 ${percentile(busy.latencies, 99).toFixed(1)} ms`,
    ],
  ]),
);
