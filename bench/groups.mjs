// What routing through a server group costs a call (issue 16: ≤ 0.05 ms at p50 over POST /mcp/<id>/<tool>, with 10
// rules): one hub, one worker (the echo fixture in a project), and a group of it whose 10 rules are looked at in
// turn (9 do not match, the 10th sends the call to the server). Sequential calls alternate between the direct
// route and the group's, call by call on one connection each, at LOG_LEVEL=info with the admin token: the p50 of
// each and the median of the paired differences.
// Usage: pnpm bench groups. Env: BENCH_GROUPS_PAIRS (4000).
import { randomBytes } from 'node:crypto';
import { Pool, request } from 'undici';
import { createRun, envNumber, startEchoStack, startHub, waitForCall } from './harness.mjs';
import { median, table } from './lib.mjs';
import { printLogSummary } from './on-off.mjs';

const PAIRS = Math.round(envNumber('BENCH_GROUPS_PAIRS', 4_000));
const WARMUP = 500;
const PROJECT = 'bench';
const DIRECT = '/mcp/echo/echo';
const GROUPED = `/api/projects/${PROJECT}/groups/routed/tools/echo`;

const run = createRun('groups');
const startedAt = performance.now();
let result;
let logSummary = [];

try {
  const stack = await startEchoStack(run, { prefix: 'bench-groups:', spec: { project: PROJECT } });
  const token = randomBytes(24).toString('hex');
  const hub = await startHub(run, stack, {
    env: { HUB_AUTH: 'token', HUB_ADMIN_TOKEN: token, LOG_LEVEL: 'info' },
  });
  const authorization = `Bearer ${token}`;
  const admin = { authorization, 'content-type': 'application/json' };
  const post = async (path, body, method = 'POST') => {
    const res = await request(`${hub.origin}${path}`, { method, headers: admin, body: JSON.stringify(body) });
    const text = await res.body.text();
    if (res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode} ${text}`);
  };
  await post('/api/projects', { id: PROJECT, name: PROJECT });
  const rules = Array.from({ length: 9 }, (_, i) => ({
    id: `miss-${i}`,
    priority: 100 - i,
    condition: { tool: `other_${i}_*` },
    target: { server: 'echo' },
  }));
  rules.push({ id: 'hit', priority: 0, condition: { tool: 'ech*' }, target: { server: 'echo' } });
  await post(`/api/projects/${PROJECT}/groups/routed`, { name: 'routed', serverIds: ['echo'], rules }, 'PUT');
  await waitForCall(`${hub.origin}${DIRECT}`, { authorization });
  await waitForCall(`${hub.origin}${GROUPED}`, { authorization });

  run.progress(`${PAIRS} sequential pairs…`);
  const pools = [new Pool(hub.origin, { connections: 1 }), new Pool(hub.origin, { connections: 1 })];
  const paths = [GROUPED, DIRECT];
  const times = [[], []];
  const headers = { authorization, 'content-type': 'application/json', accept: 'application/json' };
  const body = JSON.stringify({ message: 'x' });
  for (let i = 0; i < WARMUP + PAIRS; i++) {
    for (const k of i % 2 === 0 ? [0, 1] : [1, 0]) {
      const s = performance.now();
      const res = await pools[k].request({ path: paths[k], method: 'POST', headers, body });
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`${paths[k]} answered ${res.statusCode}`);
      if (i >= WARMUP) times[k].push(performance.now() - s);
    }
  }
  await Promise.all(pools.map((p) => p.close()));
  result = {
    grouped: median(times[0]),
    direct: median(times[1]),
    paired: median(times[0].map((t, i) => t - times[1][i])),
  };
} finally {
  logSummary = await run.finish(['hub', 'supervisor']);
}

console.log(
  `\nA call through a group of 10 rules against the direct route (pnpm bench groups, ${((performance.now() - startedAt) / 1000).toFixed(0)} s)\n`,
);
console.log(
  table([
    ['route', 'p50 sequential ms'],
    [`POST ${GROUPED}`, result.grouped.toFixed(3)],
    [`POST ${DIRECT}`, result.direct.toFixed(3)],
  ]),
);
const pairedMs = result.paired;
console.log(`\nPaired difference (group − direct, median of ${PAIRS} pairs): ${(pairedMs * 1000).toFixed(1)} µs.`);
printLogSummary(logSummary);
console.log('\nVerdict (issue 16, this run)\n');
console.log(
  `${pairedMs <= 0.05 ? 'MET   ' : 'MISSED'} a call through 10 rules ≤ 0.05 ms over the direct route: ${(pairedMs * 1000).toFixed(1)} µs`,
);
