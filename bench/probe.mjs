// Sequential latency the way one client sees it, with the method of ../shared/tools/latency-probe.mjs (kept
// here so the bench runs from a clean checkout): N calls one after another to the hub's tool route and to the
// worker's own route, each path measured with a fresh one-connection undici Pool and with fetch, in the order
// pool, fetch, pool, fetch; 100 calls of warm-up per path and round; every answer checked (a non-200 stops it).
// Prints one JSON line per round: { client, hub_p50_ms, worker_p50_ms, hub_adds_ms }.
// Usage: node bench/probe.mjs <hubCallUrl> <workerCallUrl> [authorization|-] [N=500] ['Header: value' for the worker|-]
import { Pool } from 'undici';

const [hub, worker, auth = '-', n = '500', workerHeader = '-'] = process.argv.slice(2);
const N = Number(n);
const H = { 'content-type': 'application/json', accept: 'application/json' };
const HH = auth === '-' ? H : { ...H, authorization: auth };
const WH =
  workerHeader === '-'
    ? H
    : {
        ...H,
        [workerHeader.split(':')[0].trim().toLowerCase()]: workerHeader.slice(workerHeader.indexOf(':') + 1).trim(),
      };

async function seq(kind, url, count, headers) {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: 1 });
  const t = [];
  for (let i = 0; i < count; i++) {
    const body = JSON.stringify({ message: `m${i}` });
    const s = performance.now();
    let status;
    let text;
    if (kind === 'pool') {
      const r = await pool.request({ path: u.pathname, method: 'POST', headers, body });
      status = r.statusCode;
      text = await r.body.text();
    } else {
      const r = await fetch(url, { method: 'POST', headers, body });
      status = r.status;
      text = await r.text();
    }
    if (status !== 200) throw new Error(`${url} answered ${status}: ${text.slice(0, 120)}`);
    t.push(performance.now() - s);
  }
  await pool.close();
  t.sort((a, b) => a - b);
  return +t[count >> 1].toFixed(3);
}

for (const kind of ['pool', 'fetch', 'pool', 'fetch']) {
  await seq(kind, hub, 100, HH);
  await seq(kind, worker, 100, WH);
  const a = await seq(kind, hub, N, HH);
  const b = await seq(kind, worker, N, WH);
  console.log(JSON.stringify({ client: kind, hub_p50_ms: a, worker_p50_ms: b, hub_adds_ms: +(a - b).toFixed(3) }));
}
