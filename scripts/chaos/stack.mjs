// The system `pnpm chaos` runs its faults against, all from dist/ as real processes: a private redis-server that
// can be stopped and started again on the same port with the same data, one hub, two supervisors (their workers
// log to the supervisor's file), and three stdio servers of test/fixtures/chaos-server.mjs registered through
// the hub's API. Every process of the run can be found afterwards by its KEY_PREFIX or by the run directory in
// its command line (the leak check).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createKeys, Registry } from '@mcp-hub/shared';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { waitForPort } from '../../bench/harness.mjs';
import { freePort, ROOT, sleep, startApp, stopProcess } from '../../bench/lib.mjs';

export const FIXTURE = join(ROOT, 'test/fixtures/chaos-server.mjs');
export const KEY_PREFIX = 'chaos:';
const READY_TIMEOUT_MS = 30_000;
const POLL_MS = 50;

/** Resolves `probe()`'s first truthy value, polling every POLL_MS; throws naming `what` after `timeoutMs`. */
export async function poll(what, probe, timeoutMs = READY_TIMEOUT_MS) {
  const deadline = performance.now() + timeoutMs;
  let last;
  while (performance.now() < deadline) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    await sleep(POLL_MS);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last: ${last.message})` : ''}`);
}

/** Epoch milliseconds with sub-millisecond precision: the clock every process of the run shares. */
export const now = () => performance.timeOrigin + performance.now();

/**
 * A redis-server on a fixed port whose data survives `stop()` + `start()`: stop is `SHUTDOWN SAVE` (an RDB in the
 * run directory), start loads it again. Keys with a TTL keep their absolute expiry across the gap.
 */
class RestartableRedis {
  constructor(port, dir) {
    this.port = port;
    this.dir = dir;
    this.child = null;
  }

  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start() {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', ''];
    this.child = spawn('redis-server', [...args, '--appendonly', 'no'], { stdio: 'ignore', detached: true });
    const probe = new Redis({ port: this.port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    probe.on('error', () => {});
    try {
      await poll(`redis-server on port ${this.port}`, async () => {
        if (this.child.exitCode !== null) throw new Error(`redis-server exited with ${this.child.exitCode}`);
        if (probe.status !== 'ready') await probe.connect().catch(() => {});
        return (await probe.ping().catch(() => null)) === 'PONG';
      });
    } finally {
      probe.disconnect();
    }
    return now();
  }

  /** Saves the data and exits; resolves the moment it stopped answering. */
  async stop() {
    const client = new Redis({ port: this.port, lazyConnect: true, retryStrategy: () => null });
    client.on('error', () => {});
    const exited = once(this.child, 'exit');
    await client.connect();
    await client.call('SHUTDOWN', 'SAVE').catch(() => {}); // the connection closes instead of an answer
    client.disconnect();
    await exited;
    return now();
  }

  async kill() {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      const exited = once(this.child, 'exit');
      this.child.kill('SIGKILL');
      await exited;
    }
  }
}

/** A stdio server of the run: `slow` servers are called with their slow tool. */
export function serverSpec(stack, name, env = { CHAOS_GENERATION: '1' }) {
  return {
    id: name,
    description: `chaos fixture ${name}`,
    transport: 'stdio',
    config: { command: process.execPath, args: [FIXTURE, name, stack.eventsFile(name)], env },
    tags: ['chaos'],
    timeoutMs: 30_000,
  };
}

export async function createStack({ runDir, servers, say }) {
  const redis = new RestartableRedis(await freePort(), runDir);
  await redis.start();
  const client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  const keys = createKeys(KEY_PREFIX);
  const registry = new Registry(client, keys);
  const hubPort = await freePort();
  const origin = `http://127.0.0.1:${hubPort}`;
  const workerBasePort = await freePort();
  const common = {
    REDIS_URL: redis.url,
    KEY_PREFIX,
    HUB_AUTH: 'none',
    MCP_WORKER_BASE_PORT: String(workerBasePort),
    MCP_WORKER_PORT_RANGE: '100',
    // As it runs in production: every call and every step of a restart is logged (the logs are in runDir).
    LOG_LEVEL: 'info',
  };
  const logFd = (name) => openSync(join(runDir, `${name}.log`), 'a');

  const stack = {
    runDir,
    redis,
    client,
    keys,
    registry,
    origin,
    hub: null,
    /** supervisor id → { child, exit (promise of { code, signal }) } */
    supervisors: new Map(),
    supervisorCount: 0,
    eventsFile: (name) => join(runDir, `events-${name}.jsonl`),

    async startHub() {
      const fd = logFd('hub');
      const app = startApp('hub', { ...common, HUB_PORT: String(hubPort) }, { stdout: fd });
      closeSync(fd);
      const exit = once(app.child, 'exit').then(([code, signal]) => ({ code, signal, at: now() }));
      stack.hub = { ...app, exit };
      await waitForPort(hubPort, 'hub');
      return stack.hub;
    },

    /** Starts one more supervisor (ids chaos-sup-1, chaos-sup-2, …); resolves its id. */
    async startSupervisor() {
      const id = `chaos-sup-${++stack.supervisorCount}`;
      const fd = logFd(id);
      // A kill in one scenario and one in the next are separate faults, not a crash loop to back off from.
      const env = {
        ...common,
        MCP_SUPERVISOR_ID: id,
        MCP_WORKER_STABLE_AFTER: process.env.MCP_WORKER_STABLE_AFTER ?? '2s',
      };
      const app = startApp('supervisor', env, { stdout: fd });
      closeSync(fd);
      const exit = once(app.child, 'exit').then(([code, signal]) => ({ code, signal }));
      stack.supervisors.set(id, { ...app, exit });
      return id;
    },

    /** The hub's admin API (open mode: the caller acts as admin). Resolves { status, body }. */
    async api(method, path, body) {
      const res = await request(`${origin}${path}`, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      });
      const text = await res.body.text();
      return { status: res.statusCode, body: text ? JSON.parse(text) : null };
    },

    async runtime(id) {
      return registry.getRuntime(id);
    },

    /**
     * Waits until `id` runs (optionally: as another pid than `notPid`) and is settled: its worker has taken in
     * every restart request and the spec's current rev (a planned restart's successor switched in, a metadata
     * change noted), so that the pid read next is not replaced by a change still under way; then until it
     * answers a call through the hub.
     */
    async waitServing(id, { notPid, timeoutMs } = {}) {
      const runtime = await poll(
        `${id} running and settled`,
        async () => {
          const [rt, spec, requested] = await Promise.all([
            registry.getRuntime(id),
            registry.getServer(id),
            client.hget(keys.restarts, id),
          ]);
          const settled =
            (rt?.restartRequests ?? 0) >= Number(requested ?? 0) && (spec === null || rt?.specRev === spec.rev);
          return rt?.status === 'running' && rt.pid !== notPid && settled ? rt : null;
        },
        timeoutMs,
      );
      await poll(`${id} answering through the hub`, async () => {
        const res = await request(`${origin}/mcp/${id}/echo`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json' },
          body: JSON.stringify({ message: 'ready' }),
        });
        const text = await res.body.text();
        return res.statusCode === 200 && JSON.parse(text).content?.[0]?.text === `${id}|ready`;
      });
      return runtime;
    },

    /** Pid of the worker's stdio server (its one child), or undefined. */
    upstreamPid(workerPid) {
      return processes().find((p) => p.ppid === workerPid && p.cmdline.includes(FIXTURE))?.pid;
    },

    /** Processes of this run still alive (workers by KEY_PREFIX and REDIS_URL, stdio servers by the run dir). */
    leftoverProcesses() {
      const marker = `REDIS_URL=${redis.url}`;
      return processes().filter(
        (p) => p.pid !== redis.child.pid && (p.environ.includes(marker) || p.cmdline.includes(runDir)),
      );
    },
  };

  say(`redis ${redis.url}, hub ${origin}, worker ports from ${workerBasePort}, logs in ${runDir}`);
  await stack.startHub();
  await stack.startSupervisor();
  await stack.startSupervisor();
  for (const name of servers) {
    const res = await stack.api('POST', '/api/servers', serverSpec(stack, name));
    if (res.status !== 201) throw new Error(`registering ${name}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
  }
  for (const name of servers) await stack.waitServing(name);
  return stack;
}

/** Every process readable in /proc: { pid, ppid, cmdline, environ }. */
function processes() {
  const out = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z') continue;
      out.push({
        pid: Number(entry),
        ppid: Number(fields[1]),
        cmdline: readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' '),
        environ: readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0'),
      });
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

/** Stops what is left of the stack: hub, supervisors, any process of the run, Redis. */
export async function stopStack(stack) {
  if (stack.hub) await stopProcess(stack.hub.child, 15_000).catch(() => {});
  for (const sup of stack.supervisors.values()) await stopProcess(sup.child, 15_000).catch(() => {});
  for (const p of stack.leftoverProcesses()) {
    for (const target of [-p.pid, p.pid]) {
      try {
        process.kill(target, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  stack.client.disconnect();
  await stack.redis.kill();
}

export { sleep };
