// The load generator of `bench/calls.mjs`, run as its own process so that it shares no event loop with
// the servers under test. Reads one target description (JSON) on stdin, runs its phases and prints one
// JSON object of results on stdout.
//
// Target: {
//   kind: 'http' | 'mcp-stdio' | 'mcp-sse' | 'mcp-streamable-http',
//   http:  origin, paths[] (calls go round-robin over them), accept ('application/json' | 'text/event-stream')
//   mcp:   url (sse, streamable-http) or command + args (stdio: the server becomes this process's child)
//   warmupSeconds (8 callers, before anything is measured), sequential: { warmup, calls } | null,
//   levels: [concurrency…], seconds,
//   watch: [{ label, pids?: [pid…], descendantsOf?: [pid…] }]   processes whose CPU and RSS are reported
// }
// MCP concurrency is N calls in flight on ONE client session (one upstream connection), as an
// application sharing one MCP client would do; HTTP concurrency is N keep-alive connections of one Pool.
import { Pool } from 'undici';
// The v2 MCP client is a dependency of the worker, not of the root: imported from there, so that the bench
// drives the same client the worker uses upstream.
import {
  Client,
  SSEClientTransport,
  StreamableHTTPClientTransport,
} from '../apps/worker/node_modules/@modelcontextprotocol/client/dist/index.mjs';
import { StdioClientTransport } from '../apps/worker/node_modules/@modelcontextprotocol/client/dist/stdio.mjs';
import { cpuSeconds, descendantsOf, percentile, rssMiB } from './lib.mjs';

const CALL_TIMEOUT_MS = 10_000;
const MESSAGE = 'hi';
const BODY = JSON.stringify({ message: MESSAGE });
const MAX_ERROR_SAMPLES = 5;
const WARMUP_CALLERS = 8;

// Started with --no-warnings: each distinct warning is printed once, not once per call (the SDK's HTTP client
// transports, SSE and Streamable HTTP, add an abort listener per POST to one long-lived signal, which trips
// MaxListenersExceededWarning on every call past 1,500 on a session).
const warned = new Set();
process.on('warning', (warning) => {
  if (warned.has(warning.name)) return;
  warned.add(warning.name);
  process.stderr.write(`load: ${warning.name}: ${warning.message} (printed once)\n`);
});

const target = JSON.parse(await readStdin());

async function readStdin() {
  let text = '';
  for await (const chunk of process.stdin) text += chunk;
  return text;
}

/** Returns { call(i), watchExtra[], close() } for the target. */
async function connect(t) {
  if (t.kind === 'http') return connectHttp(t);
  const client = new Client({ name: 'mcp-hub-bench', version: '1.0.0' });
  let transport;
  if (t.kind === 'mcp-stdio') {
    transport = new StdioClientTransport({ command: t.command, args: t.args, stderr: 'ignore' });
  } else if (t.kind === 'mcp-sse') {
    transport = new SSEClientTransport(new URL(t.url));
  } else if (t.kind === 'mcp-streamable-http') {
    transport = new StreamableHTTPClientTransport(new URL(t.url));
  } else {
    throw new Error(`unknown target kind ${t.kind}`);
  }
  await client.connect(transport);
  const watchExtra = t.kind === 'mcp-stdio' ? [{ label: 'upstream', pids: [transport.pid] }] : [];
  return {
    watchExtra,
    async call() {
      const result = await client.callTool(
        { name: 'echo', arguments: { message: MESSAGE } },
        { timeout: CALL_TIMEOUT_MS },
      );
      if (result.isError || result.content?.[0]?.text !== MESSAGE) {
        throw new Error(`unexpected result ${JSON.stringify(result).slice(0, 200)}`);
      }
    },
    async close() {
      if (t.kind === 'mcp-streamable-http') await transport.terminateSession?.().catch(() => {});
      await client.close();
    },
  };
}

function connectHttp(t) {
  const headers = { 'content-type': 'application/json', accept: t.accept };
  const sse = t.accept === 'text/event-stream';
  let pool = null;
  return {
    watchExtra: [],
    /** One Pool per phase, with as many keep-alive connections as callers. */
    setConcurrency(n) {
      const old = pool;
      pool = new Pool(t.origin, {
        connections: n,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        headersTimeout: CALL_TIMEOUT_MS,
        bodyTimeout: CALL_TIMEOUT_MS,
      });
      return old?.close();
    },
    async call(i) {
      const path = t.paths[i % t.paths.length];
      const res = await pool.request({ path, method: 'POST', headers, body: BODY });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode} ${path}: ${text.slice(0, 200)}`);
      let result;
      if (sse) {
        const match = /event: (result|error)\ndata: (.*)\n/.exec(text);
        if (!match) throw new Error(`no result event ${path}: ${text.slice(0, 200)}`);
        if (match[1] === 'error') throw new Error(`error event ${path}: ${match[2].slice(0, 200)}`);
        result = JSON.parse(match[2]);
      } else {
        result = JSON.parse(text);
      }
      if (result.isError || result.content?.[0]?.text !== MESSAGE) {
        throw new Error(`unexpected result ${path}: ${text.slice(0, 200)}`);
      }
    },
    close: () => pool?.close(),
  };
}

/** Resolves the watched processes now (descendants change as sessions open), as { label: [pid…] }. */
function resolveWatch(watch) {
  const out = {};
  for (const w of watch) {
    const pids = [...(w.pids ?? []), ...(w.descendantsOf ?? []).flatMap((pid) => descendantsOf(pid))];
    out[w.label] = pids;
  }
  return out;
}

function cpuSnapshot(watched) {
  const snap = { load: process.cpuUsage() };
  for (const [label, pids] of Object.entries(watched)) snap[label] = pids.reduce((s, pid) => s + cpuSeconds(pid), 0);
  return snap;
}

/** CPU of each watched process group over the phase, in seconds. */
function cpuDelta(before, after) {
  const out = {};
  for (const label of Object.keys(before)) {
    if (label === 'load') {
      const user = after.load.user - before.load.user;
      const system = after.load.system - before.load.system;
      out.load = (user + system) / 1e6;
    } else {
      out[label] = after[label] - before[label];
    }
  }
  return out;
}

/**
 * Runs `callers` loops of calls, each until `calls` calls are done in total or `seconds` have passed.
 * Returns latency percentiles (ms), the rate of successful calls (calls/s), errors and CPU of the watched processes.
 */
async function phase(conn, name, { callers, calls = Infinity, seconds = Infinity }) {
  const watched = resolveWatch([...target.watch, ...conn.watchExtra]);
  const latencies = [];
  const errorSamples = new Map();
  let errors = 0;
  let started = 0;
  const before = cpuSnapshot(watched);
  const t0 = performance.now();
  const deadline = t0 + seconds * 1_000;
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (started < calls && performance.now() < deadline) {
        const i = started++;
        const c0 = performance.now();
        try {
          await conn.call(i);
          latencies.push(performance.now() - c0);
        } catch (err) {
          errors++;
          const message = String(err?.message ?? err).slice(0, 300);
          errorSamples.set(message, (errorSamples.get(message) ?? 0) + 1);
        }
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1_000;
  const cpu = cpuDelta(before, cpuSnapshot(watched));
  const rss = {};
  for (const [label, pids] of Object.entries(watched)) rss[label] = pids.reduce((s, pid) => s + rssMiB(pid), 0);
  rss.load = process.memoryUsage.rss() / 1_048_576;
  return {
    name,
    callers,
    seconds: elapsed,
    ok: latencies.length,
    errors,
    errorSamples: [...errorSamples].slice(0, MAX_ERROR_SAMPLES).map(([message, count]) => ({ message, count })),
    rate: latencies.length / elapsed,
    p50: percentile(latencies, 50) ?? null,
    p95: percentile(latencies, 95) ?? null,
    p99: percentile(latencies, 99) ?? null,
    cpu,
    rss,
  };
}

const conn = await connect(target);
const phases = [];
try {
  // Every process on the path is JIT-cold at first: a short burst of concurrent calls warms them all the
  // same way for every target, so that no target profits from one measured before it.
  if (target.warmupSeconds > 0) {
    conn.setConcurrency?.(WARMUP_CALLERS);
    await phase(conn, 'warmup', { callers: WARMUP_CALLERS, seconds: target.warmupSeconds });
  }
  if (target.sequential) {
    await conn.setConcurrency?.(1);
    await phase(conn, 'warmup', { callers: 1, calls: target.sequential.warmup });
    phases.push(await phase(conn, 'sequential', { callers: 1, calls: target.sequential.calls }));
  }
  for (const callers of target.levels ?? []) {
    await conn.setConcurrency?.(callers);
    // Opens the connections (and warms the JIT) before the clock starts.
    await phase(conn, 'warmup', { callers, calls: callers * 10 });
    phases.push(await phase(conn, `c${callers}`, { callers, seconds: target.seconds }));
  }
} finally {
  await conn.close();
}
process.stdout.write(`${JSON.stringify({ phases })}\n`);
