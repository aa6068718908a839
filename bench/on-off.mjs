// Two hubs on one worker that differ in one setting (metrics, tracing), measured side by side in one run:
//   - sequential calls alternating between the two hubs, call by call (one connection each): p50 of each and the
//     median of the paired differences, so that a noisy moment hits both alike;
//   - throughput at 64 callers in rounds in ABBA order (bench/load.mjs, its own process).
import { randomBytes } from 'node:crypto';
import { Pool } from 'undici';
import { startHub, waitForCall } from './harness.mjs';
import { median, table } from './lib.mjs';

const WARMUP_PAIRS = 500;

/** Alternates sequential calls between the hubs; resolves p50s and the median paired difference (ms). */
async function pairedSequential(hubs, path, headers, pairs) {
  const pools = hubs.map((h) => new Pool(h.origin, { connections: 1 }));
  const times = hubs.map(() => []);
  const body = JSON.stringify({ message: 'x' });
  for (let i = 0; i < WARMUP_PAIRS + pairs; i++) {
    // The order flips every pair: neither hub always goes first.
    const order = i % 2 === 0 ? [0, 1] : [1, 0];
    for (const k of order) {
      const s = performance.now();
      const res = await pools[k].request({ path, method: 'POST', headers, body });
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`${hubs[k].name} answered ${res.statusCode}`);
      if (i >= WARMUP_PAIRS) times[k].push(performance.now() - s);
    }
  }
  await Promise.all(pools.map((p) => p.close()));
  return {
    a: median(times[0]),
    b: median(times[1]),
    paired: median(times[0].map((t, i) => t - times[1][i])),
  };
}

/**
 * Measures hubs `a` and `b` ({ name, origin }) on `path`: `pairs` sequential pairs, then `rounds` ABBA rounds of
 * `seconds` at 64 callers. Resolves { seq: { a, b, paired }, rates: { a: [], b: [] } }.
 */
export async function compareHubs(run, { a, b, path, headers, pairs, rounds, seconds }) {
  run.progress(`${pairs} sequential pairs…`);
  const seq = await pairedSequential([a, b], path, headers, pairs);
  const rates = { a: [], b: [] };
  for (let i = 0; i < rounds; i++) {
    run.progress(`throughput round ${i + 1} of ${rounds}…`);
    for (const hub of i % 2 === 0 ? [a, b] : [b, a]) {
      const out = await run.runLoad({
        label: hub.name,
        kind: 'http',
        origin: hub.origin,
        paths: [path],
        accept: 'application/json',
        headers: { authorization: headers.authorization },
        warmupSeconds: 0.5,
        sequential: null,
        levels: [64],
        seconds,
        watch: [],
      });
      rates[hub === a ? 'a' : 'b'].push(out.phases.find((p) => p.name === 'c64')?.rate ?? 0);
    }
  }
  return { seq, rates };
}

/** The table of a comparison, and the throughput ratio a/b and the paired p50 difference in µs. */
export function comparisonTable({ a, b }, { seq, rates }, rounds) {
  const ms = (v) => v.toFixed(3);
  const row = (hub, p50, list) => [
    hub.name,
    ms(p50),
    list.map((r) => r.toFixed(0)).join(', '),
    median(list).toFixed(0),
  ];
  return {
    text: table([
      ['hub', 'p50 sequential ms', `calls/s at 64 callers, ${rounds} ABBA rounds`, 'median calls/s'],
      row(a, seq.a, rates.a),
      row(b, seq.b, rates.b),
    ]),
    ratio: median(rates.a) / median(rates.b),
    pairedUs: seq.paired * 1000,
  };
}

/**
 * Two hubs on `stack`'s worker, both at LOG_LEVEL=info with one admin token, `a.env` and `b.env` added to each; waits
 * until both answer `path`. Resolves { a, b, headers } (a and b with their name and origin).
 */
export async function startHubPair(run, stack, { a, b, path }) {
  const token = randomBytes(24).toString('hex');
  const env = { HUB_AUTH: 'token', HUB_ADMIN_TOKEN: token, LOG_LEVEL: 'info' };
  const hubA = { name: a.name, ...(await startHub(run, stack, { name: 'hub', env: { ...env, ...a.env } })) };
  const hubB = { name: b.name, ...(await startHub(run, stack, { name: 'hub-off', env: { ...env, ...b.env } })) };
  const headers = { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${token}` };
  for (const hub of [hubA, hubB]) await waitForCall(`${hub.origin}${path}`, { authorization: headers.authorization });
  return { a: hubA, b: hubB, headers };
}

/** Prints the warnings and errors a run's logs held (run.finish), if any. */
export function printLogSummary(logSummary) {
  if (logSummary.length === 0) return;
  console.log('\nWarnings and errors in the logs\n');
  console.log(table([['service', 'level', 'event', 'error', 'message', 'count'], ...logSummary]));
}
