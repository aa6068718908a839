// The load generator of `bench/calls.mjs`, run as its own process so that it shares no event loop with
// the servers under test. Reads one target description (JSON) on stdin, runs its phases and prints one
// JSON object of results on stdout.
//
// Target: {
//   kind: 'http' | 'mcp-stdio' | 'mcp-sse' | 'mcp-streamable-http' | 'mcp-http',
//   http:  origin, paths[] (calls go round-robin over them), accept ('application/json' | 'text/event-stream'),
//          headers? (added to every call, e.g. authorization)
//   mcp-http: JSON-RPC `tools/call` POSTs replayed with undici, one keep-alive connection per caller: origin, path,
//          tool, era ('modern': 2026-07-28, stateless; 'legacy': one 2025 session per caller, opened before the
//          clock starts), headers?. The requests are those the SDK v2 client sends, captured once at start.
//   mcp:   url (sse, streamable-http) or command + args (stdio: the server becomes this process's child)
//   warmupSeconds (8 callers, before anything is measured), sequential: { warmup, calls } | null,
//   levels: [concurrency…], seconds,
//   watch: [{ label, pids?: [pid…], descendantsOf?: [pid…] }]   processes whose CPU and RSS are reported
// }
// MCP concurrency is N calls in flight on ONE client session (one upstream connection), as an
// application sharing one MCP client would do; HTTP concurrency is N keep-alive connections of one Pool.
import { Pool, Client as UndiciClient } from 'undici';
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
  if (t.kind === 'mcp-http') return connectMcpHttp(t);
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
  const headers = { 'content-type': 'application/json', accept: t.accept, ...t.headers };
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

/**
 * Captures the POSTs the SDK v2 client makes for one `tools/call` of `t.tool` on `t.origin + t.path` (and, in
 * the 2025 era, its `initialize` and `notifications/initialized`), with a logging fetch: { [method]: { headers, body } }.
 */
async function captureSdkRequests(t) {
  const captured = {};
  const loggingFetch = async (url, init = {}) => {
    if ((init.method ?? 'GET') === 'POST' && typeof init.body === 'string') {
      const message = JSON.parse(init.body);
      if (!Array.isArray(message)) {
        captured[message.method] = { headers: Object.fromEntries(new Headers(init.headers)), body: message };
      }
    }
    return fetch(url, init);
  };
  const client = new Client(
    { name: 'mcp-hub-bench', version: '1.0.0' },
    t.era === 'modern' ? { versionNegotiation: { mode: { pin: '2026-07-28' } } } : {},
  );
  const transport = new StreamableHTTPClientTransport(new URL(t.path, t.origin), {
    fetch: loggingFetch,
    requestInit: { headers: t.headers ?? {} },
  });
  await client.connect(transport);
  try {
    const result = await client.callTool(
      { name: t.tool, arguments: { message: MESSAGE } },
      { timeout: CALL_TIMEOUT_MS },
    );
    if (result.isError || result.content?.[0]?.text !== MESSAGE) {
      throw new Error(`SDK client: unexpected result ${JSON.stringify(result).slice(0, 200)}`);
    }
  } finally {
    if (t.era !== 'modern') await transport.terminateSession?.().catch(() => {});
    await client.close();
  }
  const needed = t.era === 'modern' ? ['tools/call'] : ['initialize', 'notifications/initialized', 'tools/call'];
  for (const method of needed) if (!captured[method]) throw new Error(`the SDK client sent no ${method} POST`);
  return captured;
}

/** The JSON-RPC message answering `id` in a JSON or SSE (`data:` lines) body. */
function rpcAnswer(text, contentType, id) {
  if (contentType.includes('text/event-stream')) {
    for (const line of text.split('\n')) {
      // A resumable stream starts with a priming event whose data is empty.
      if (!line.startsWith('data:') || line.slice(5).trim() === '') continue;
      const message = JSON.parse(line.slice(5));
      if (message.id === id) return message;
    }
    return undefined;
  }
  const message = JSON.parse(text);
  return message.id === id ? message : undefined;
}

async function connectMcpHttp(t) {
  const captured = await captureSdkRequests(t);
  const modern = t.era === 'modern';
  const options = {
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: CALL_TIMEOUT_MS,
    bodyTimeout: CALL_TIMEOUT_MS,
  };
  const strip = (headers) => {
    const out = { ...headers, ...t.headers };
    delete out['mcp-session-id'];
    return out;
  };
  const call = captured['tools/call'];
  const callHeaders = strip(call.headers);
  let nextId = 1_000_000;
  const shapes = {}; // content types answered, for the report

  async function post(client, path, headers, body) {
    const res = await client.request({ path, method: 'POST', headers, body: JSON.stringify(body) });
    const text = await res.body.text();
    const type = String(res.headers['content-type'] ?? '');
    return { status: res.statusCode, type, text, sessionId: res.headers['mcp-session-id'] };
  }

  /** Opens a 2025 session on `client` as the SDK client did: initialize, then notifications/initialized. */
  async function openSession(client) {
    const id = nextId++;
    const init = await post(client, t.path, strip(captured.initialize.headers), { ...captured.initialize.body, id });
    if (init.status !== 200 || !init.sessionId) {
      throw new Error(`initialize: HTTP ${init.status} (session ${init.sessionId}): ${init.text.slice(0, 200)}`);
    }
    const note = captured['notifications/initialized'];
    const ack = await post(client, t.path, { ...strip(note.headers), 'mcp-session-id': init.sessionId }, note.body);
    if (ack.status !== 202 && ack.status !== 200) throw new Error(`notifications/initialized: HTTP ${ack.status}`);
    return init.sessionId;
  }

  let callers = []; // { client, sessionId }
  async function closeAll(list) {
    await Promise.all(
      list.map(async ({ client, sessionId }) => {
        if (sessionId) {
          await client
            .request({
              path: t.path,
              method: 'DELETE',
              headers: { ...strip(call.headers), 'mcp-session-id': sessionId },
            })
            .then((res) => res.body.dump())
            .catch(() => {});
        }
        await client.close();
      }),
    );
  }

  return {
    watchExtra: [],
    shapes,
    /** One keep-alive connection per caller; in the 2025 era, one session per connection. */
    async setConcurrency(n) {
      const old = callers;
      callers = await Promise.all(
        Array.from({ length: n }, async () => {
          const client = new UndiciClient(t.origin, options);
          return { client, sessionId: modern ? undefined : await openSession(client) };
        }),
      );
      await closeAll(old);
    },
    async call(_i, caller) {
      const { client, sessionId } = callers[caller];
      const id = nextId++;
      const headers = sessionId ? { ...callHeaders, 'mcp-session-id': sessionId } : callHeaders;
      const res = await post(client, t.path, headers, { ...call.body, id });
      if (res.status !== 200) throw new Error(`HTTP ${res.status} ${t.path}: ${res.text.slice(0, 200)}`);
      const answer = rpcAnswer(res.text, res.type, id);
      const shape = res.type.split(';')[0];
      shapes[shape] = (shapes[shape] ?? 0) + 1;
      if (!answer) throw new Error(`no answer to id ${id} (${res.type}): ${res.text.slice(0, 200)}`);
      if (answer.error || answer.result?.isError || answer.result?.content?.[0]?.text !== MESSAGE) {
        throw new Error(`unexpected answer ${t.path}: ${JSON.stringify(answer).slice(0, 200)}`);
      }
    },
    close: () => closeAll(callers),
    captured,
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
  let nextCaller = 0;
  const before = cpuSnapshot(watched);
  const t0 = performance.now();
  const deadline = t0 + seconds * 1_000;
  await Promise.all(
    Array.from({ length: callers }, async () => {
      const caller = nextCaller++;
      while (started < calls && performance.now() < deadline) {
        const i = started++;
        const c0 = performance.now();
        try {
          await conn.call(i, caller);
          latencies.push(performance.now() - c0);
          totals.ok++;
        } catch (err) {
          errors++;
          totals.errors++;
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

/** Calls made in every phase, warm-ups included. */
const totals = { ok: 0, errors: 0 };
const conn = await connect(target);
const phases = [];
try {
  // Every process on the path is JIT-cold at first: a short burst of concurrent calls warms them all the
  // same way for every target, so that no target profits from one measured before it.
  if (target.warmupSeconds > 0) {
    await conn.setConcurrency?.(WARMUP_CALLERS);
    await phase(conn, 'warmup', { callers: WARMUP_CALLERS, seconds: target.warmupSeconds });
  }
  if (target.sequential) {
    await conn.setConcurrency?.(1);
    await phase(conn, 'warmup', { callers: 1, calls: target.sequential.warmup });
    phases.push(await phase(conn, 'sequential', { callers: 1, calls: target.sequential.calls }));
  }
  for (const callers of target.levels ?? []) {
    await conn.setConcurrency?.(callers);
    // Opens the connections (and sessions; and warms the JIT) before the clock starts.
    await phase(conn, 'warmup', { callers, calls: callers * 10 });
    phases.push(await phase(conn, `c${callers}`, { callers, seconds: target.seconds }));
  }
} finally {
  await conn.close();
}
process.stdout.write(`${JSON.stringify({ phases, totals, captured: conn.captured, shapes: conn.shapes })}\n`);
