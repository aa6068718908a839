// What the HTTP suites (`bench/mcp.mjs`, `bench/auth.mjs`) share: a run that stops everything it started
// (on success, error and Ctrl-C), the load generator as a process, readiness waits, and the standard
// stack (private Redis, supervisor, the echo fixture server's worker, hubs).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKeys, Registry } from '@mcp-hub/shared';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { alive, descendantsOf, freePort, jsonLines, ROOT, sleep, startApp, startRedis, stopProcess } from './lib.mjs';

export const ECHO = `${ROOT}test/fixtures/echo-server.mjs`;
const READY_TIMEOUT_MS = 30_000;

export function envNumber(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return value;
}

/**
 * One suite's run: `defer(label, fn)` registers a stop (run in reverse order by `cleanup()`, once), load
 * generators are stopped first; `runLoad(target)` runs bench/load.mjs; `logs` is a temporary directory
 * (kept with BENCH_KEEP_LOGS=1); `finish(logNames)` stops everything and summarizes the logs.
 */
export function createRun(name) {
  const cleanups = [];
  const loads = new Set();
  const keepLogs = process.env.BENCH_KEEP_LOGS === '1';
  const logs = mkdtempSync(join(tmpdir(), `mcp-hub-bench-${name}-`));
  let cleaning;
  const defer = (label, fn) => cleanups.push({ label, fn });
  function cleanup() {
    cleaning ??= (async () => {
      for (const child of loads) await stopProcess(child, 2_000).catch(() => {});
      while (cleanups.length > 0) {
        const { label, fn } = cleanups.pop();
        try {
          await fn();
        } catch (err) {
          console.error(`bench ${name}: stopping ${label} failed: ${err.message}`);
        }
      }
    })();
    return cleaning;
  }
  const onSignal = (signal) => {
    console.error(`bench ${name}: ${signal}, stopping everything`);
    void cleanup().finally(() => {
      if (!keepLogs) rmSync(logs, { recursive: true, force: true });
      process.exit(130);
    });
  };
  for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, onSignal);
  defer('signal handlers', () => {
    for (const signal of ['SIGINT', 'SIGTERM']) process.off(signal, onSignal);
  });

  /** Runs bench/load.mjs on `target` in its own process; resolves its parsed results. */
  async function runLoad(target) {
    const child = spawn(process.execPath, ['--no-warnings', `${ROOT}bench/load.mjs`], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    loads.add(child);
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      out += chunk;
    });
    child.stdin.end(JSON.stringify(target));
    const [code] = await once(child, 'exit');
    loads.delete(child);
    if (code !== 0) throw new Error(`load generator exited with code ${code} for ${target.label}`);
    return JSON.parse(out);
  }

  /** Stops everything, then returns the warnings and errors of the `logNames` logs and removes the logs. */
  async function finish(logNames) {
    await cleanup();
    const summary = summarizeLogs(logs, logNames);
    if (!keepLogs) rmSync(logs, { recursive: true, force: true });
    return summary;
  }

  return {
    logs,
    keepLogs,
    defer,
    finish,
    runLoad,
    logFile: (file) => openSync(join(logs, `${file}.log`), 'w'),
    progress: (message) => process.stderr.write(`bench ${name}: ${message}\n`),
  };
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
export async function waitForPort(port, what) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const socket = createConnection({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`${what} did not listen on port ${port} within ${READY_TIMEOUT_MS} ms`);
}

/** Polls until a tool-call POST answers 200 (the hub learns a new server's tools and runtime from Redis). */
export async function waitForCall(url, headers = {}) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await request(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
        body: JSON.stringify({ message: 'hi' }),
        headersTimeout: 5_000,
        bodyTimeout: 5_000,
      });
      last = `${res.statusCode} ${await res.body.text()}`;
      if (res.statusCode === 200) return;
    } catch (err) {
      last = err.message;
    }
    await sleep(100);
  }
  throw new Error(`${url} did not answer 200 within ${READY_TIMEOUT_MS} ms (last: ${last})`);
}

export async function waitRunning(registry, id, timeoutMs = READY_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  let runtime = null;
  while (Date.now() < deadline) {
    runtime = await registry.getRuntime(id);
    if (runtime?.status === 'running' && runtime.port !== undefined) return runtime;
    await sleep(100);
  }
  throw new Error(
    `server ${id} not running after ${timeoutMs} ms (status ${runtime?.status}, last_error ${runtime?.lastError})`,
  );
}

/** The spec of a stdio server running the echo fixture. */
export const echoSpec = (id, extra = {}) => ({
  id,
  name: id,
  namespace: id,
  transport: 'stdio',
  config: { command: process.execPath, args: [ECHO], env: {} },
  tags: [],
  enabled: true,
  timeoutMs: 60_000,
  ...extra,
});

/**
 * A private Redis (stopped by `run`) and a registry on it under `prefix`; `common` is the environment every app of
 * the run shares. Hubs of the bench listen on 127.0.0.1 only and measure the call path: open mode unless a suite
 * sets a token.
 */
export async function startStore(run, prefix) {
  const redisServer = await startRedis();
  run.defer('redis', () => redisServer.stop());
  const redis = new Redis(redisServer.url);
  redis.on('error', () => {});
  run.defer('redis client', () => redis.disconnect());
  const registry = new Registry(redis, createKeys(prefix));
  const common = { REDIS_URL: redisServer.url, KEY_PREFIX: prefix, HUB_AUTH: 'none' };
  return { redisServer, redis, registry, common };
}

/**
 * A private Redis, a supervisor and one `echo` server (the fixture) running in its worker. `spec` adds
 * fields to the server's spec (e.g. its project). Returns { redisUrl, common (env for hubs), registry,
 * worker (runtime record), supervisor, workerOrigin, workerHeaders, watch(hubPid?) }.
 */
export async function startEchoStack(run, { prefix, spec = {} }) {
  const { redisServer, registry, common } = await startStore(run, prefix);
  const supervisorLog = run.logFile('supervisor'); // the workers inherit the supervisor's stdout
  const supervisor = startApp(
    'supervisor',
    { ...common, MCP_WORKER_BASE_PORT: String(await freePort()), MCP_WORKER_PORT_RANGE: '200' },
    { stdout: supervisorLog },
  );
  closeSync(supervisorLog);
  let worker;
  run.defer('supervisor and its worker', async () => {
    const all = worker?.pid ? [worker.pid, ...descendantsOf(worker.pid)] : [];
    await supervisor.stop();
    await sleep(300);
    for (const pid of all) if (alive(pid)) process.kill(pid, 'SIGKILL');
  });
  await registry.upsertServer(echoSpec('echo', spec), 'create');
  worker = await waitRunning(registry, 'echo');
  return {
    redisUrl: redisServer.url,
    common,
    registry,
    supervisor,
    worker,
    workerOrigin: `http://${worker.host ?? '127.0.0.1'}:${worker.port}`,
    /** The worker's credential header: it answers nothing without it. */
    workerHeaders: { 'x-mcp-worker-token': worker.workerToken ?? '' },
    /** Processes whose CPU and RSS the load generator reports. */
    watch: (hubPid) => [
      ...(hubPid ? [{ label: 'hub', pids: [hubPid] }] : []),
      { label: 'worker', pids: [worker.pid] },
      { label: 'upstream', descendantsOf: [worker.pid] },
      { label: 'supervisor', pids: [supervisor.child.pid] },
      { label: 'redis', pids: [redisServer.pid] },
    ],
  };
}

/** Starts a hub on the stack's Redis (`env` adds to its environment); resolves { child, origin, stop }. */
export async function startHub(run, stack, { name = 'hub', env = {} } = {}) {
  const port = await freePort();
  const log = run.logFile(name);
  const hub = startApp('hub', { ...stack.common, HUB_PORT: String(port), ...env }, { stdout: log });
  closeSync(log);
  run.defer(name, () => hub.stop());
  await waitForPort(port, name);
  return { child: hub.child, origin: `http://127.0.0.1:${port}`, stop: hub.stop };
}

/** Warnings and errors in the logs `names` of `dir`, counted by service, level, event, error and message. */
function summarizeLogs(dir, names) {
  const counts = new Map();
  for (const name of names) {
    let text = '';
    try {
      text = readFileSync(join(dir, `${name}.log`), 'utf8');
    } catch {
      continue;
    }
    for (const entry of jsonLines(text)) {
      if (!['warn', 'error', 'fatal'].includes(entry.level)) continue;
      const key = [entry.service, entry.level, entry.event ?? '', entry.error ?? '', entry.msg ?? ''].join('\u0000');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return [...counts].map(([key, count]) => [...key.split('\u0000'), count]);
}
