// The load generator of `pnpm chaos`, a process of its own so that it shares no event loop with the suite or
// the servers. Open loop: call i is due at start + i / rate, whether or not earlier calls have answered, and
// its latency counts from when it was due (a stalled hub shows as latency, not as fewer calls).
//
// stdin: first line, JSON { origin, rate, timeoutMs, connections, tag, targets: [{ server, tool, args }] } (calls
// go round-robin over the targets, the message of call i is "<tag>-<i>", the right answer "<server>|<tag>-<i>"); then
// commands, one per line: "stop" (send no more: print {type:"stopped"} at once and {type:"drained"} when every
// call has answered),
// "close" (close the keep-alive connections and exit).
// stdout: JSON lines: {type:"started"} once its connections are open and the clock starts; {type:"call", i, s (target index), t0 (due, epoch ms), ts (sent: later than t0 when this
// process fell behind), t1 (answered), st (HTTP status, 0
// without one), c ("ok", "wrong_answer", "broken_answer", the error code of the body, "timeout" or "net:<code>"), b (a failure's answer, cut)};
// every 250 ms
// {type:"tick", sent, inflight, oldest (t0 of the oldest call in flight, null when none)}.
import { createInterface } from 'node:readline';
import { Pool } from 'undici';

const TICK_MS = 250;
const SCHEDULE_MS = 2;
/** Characters of a failed call's answer kept in its line (b), for the run's calls-<scenario>.jsonl. */
const MAX_BODY_SAMPLE = 300;

const lines = createInterface({ input: process.stdin });
const iterator = lines[Symbol.asyncIterator]();
const config = JSON.parse((await iterator.next()).value);
const pool = new Pool(config.origin, {
  connections: config.connections,
  pipelining: 1,
  keepAliveTimeout: 60_000,
  headersTimeout: config.timeoutMs,
  bodyTimeout: config.timeoutMs,
});
const now = () => performance.timeOrigin + performance.now();
const write = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const inflight = new Map(); // i → t0
let sent = 0;
let stopped = false;
let drained;
const drainedOnce = new Promise((resolve) => {
  drained = resolve;
});

async function call(i, t0) {
  const s = i % config.targets.length;
  const target = config.targets[s];
  const message = `${config.tag}-${i}`;
  // Every other call is an event-stream client (the card's main path), the others ask for one JSON body.
  const stream = i % 2 === 1;
  let st = 0;
  let c;
  let text = '';
  const ts = now();
  try {
    const res = await pool.request({
      path: `/mcp/${target.server}/${target.tool}`,
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: stream ? 'text/event-stream' : 'application/json',
        'x-request-id': `chaos-${message}`,
      },
      body: JSON.stringify({ ...target.args, message }),
      signal: AbortSignal.timeout(config.timeoutMs),
    });
    st = res.statusCode;
    text = await res.body.text();
    const expected = `${target.server}|${message}`;
    c = stream && st === 200 ? classifyStream(text, expected) : classify(st, text, expected);
  } catch (err) {
    c = err.name === 'TimeoutError' ? 'timeout' : `net:${err.code ?? err.name}`;
    text = String(err.message);
  }
  inflight.delete(i);
  write({ type: 'call', i, s, t0, ts, t1: now(), st, c, ...(c === 'ok' ? {} : { b: text.slice(0, MAX_BODY_SAMPLE) }) });
  if (stopped && inflight.size === 0) drained();
}

/**
 * "ok" for the right text of the right server; "wrong_answer" for another text; "broken_answer" for a body that is
 * no JSON (e.g. empty); else the error code of the error body.
 */
function classify(status, text, expected) {
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    return 'broken_answer';
  }
  if (status !== 200) return typeof body?.error?.code === 'string' ? body.error.code : 'no_error_code';
  if (body?.isError) return 'tool_error';
  return body?.content?.[0]?.text === expected ? 'ok' : 'wrong_answer';
}

/** An event-stream answer: its `result` event as `classify` judges a JSON body, or its `error` event's code. */
function classifyStream(text, expected) {
  const events = text
    .split('\n\n')
    .filter((frame) => frame.startsWith('event: '))
    .map((frame) => ({
      name: frame.slice(7, frame.indexOf('\n')),
      data: frame.slice(frame.indexOf('\ndata: ') + 7),
    }));
  const last = events.filter((e) => e.name === 'result' || e.name === 'error');
  if (last.length !== 1) return 'broken_answer';
  const [{ name, data }] = last;
  return name === 'result' ? classify(200, data, expected) : classify(500, `{"error":${data}}`, expected);
}

// Every keep-alive connection is open before the clock starts: a burst of new connections to a busy hub is a
// fault of its own (seen: some stalled for 30 s), not the one a scenario measures.
await Promise.all(
  Array.from({ length: config.connections }, async () => {
    const res = await pool.request({ path: '/healthz', method: 'GET', signal: AbortSignal.timeout(config.timeoutMs) });
    await res.body.dump();
  }),
);

write({ type: 'started' });
const start = now();
const scheduler = setInterval(() => {
  if (stopped) return;
  const due = Math.floor(((now() - start) * config.rate) / 1_000);
  while (sent < due) {
    const i = sent++;
    const t0 = start + (i * 1_000) / config.rate;
    inflight.set(i, t0);
    void call(i, t0);
  }
}, SCHEDULE_MS);
const ticker = setInterval(() => {
  const oldest = inflight.size > 0 ? inflight.values().next().value : null;
  write({ type: 'tick', sent, inflight: inflight.size, oldest });
}, TICK_MS);

for await (const command of { [Symbol.asyncIterator]: () => iterator }) {
  if (command === 'stop' && !stopped) {
    stopped = true;
    clearInterval(scheduler);
    write({ type: 'stopped', sent });
    if (inflight.size === 0) drained();
    void drainedOnce.then(() => write({ type: 'drained', sent }));
  } else if (command === 'close') {
    break;
  }
}
clearInterval(scheduler);
clearInterval(ticker);
await pool.close();
process.exit(0);
