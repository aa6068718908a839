import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Registry, RuntimeRecord, ServerSpecBody } from '@mcp-hub/shared';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

/** The spec of a stdio server running the echo fixture (`extra` overrides fields). */
export function echoServer(id: string, extra: Partial<ServerSpecBody> = {}): ServerSpecBody {
  return {
    id,
    name: id,
    namespace: id,
    transport: 'stdio',
    config: { command: process.execPath, args: [fixture('echo-server.mjs')], env: {} },
    tags: [],
    enabled: true,
    timeoutMs: 10_000,
    ...extra,
  } as ServerSpecBody;
}
export const EVERYTHING_ENTRY = fileURLToPath(
  new URL('../node_modules/@modelcontextprotocol/server-everything/dist/index.js', import.meta.url),
);

/** Polls `probe` until it returns a truthy value, or fails after `timeoutMs` naming `what`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T> | T,
  timeoutMs = 10_000,
  everyMs = 25,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value as NonNullable<T>;
      last = value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${String(last)})`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = execFileSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' }).trim();
    return stat !== '' && !stat.startsWith('Z');
  } catch {
    return false;
  }
}

/** Pids of the processes whose command line contains `needle` (never this process). */
export function pidsMatching(needle: string): number[] {
  try {
    const out = execFileSync('pgrep', ['-f', needle], { encoding: 'utf8' });
    return out
      .split('\n')
      .filter(Boolean)
      .map(Number)
      .filter((pid) => pid !== process.pid);
  } catch {
    return [];
  }
}

/** Kills a process group (and the process) with SIGKILL; for test cleanup. */
export function killGroup(pid: number): void {
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/** Pids of live worker processes for server `id` under key prefix `prefix`, found by their environment (Linux). */
export function workerPids(prefix: string, id: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const env = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
      if (env.includes(`KEY_PREFIX=${prefix}`) && env.includes(`MCP_SERVER_ID=${id}`) && isAlive(Number(entry))) {
        found.push(Number(entry));
      }
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

/** Pids of the direct children of `pid` (Linux). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // gone
    }
  }
  return out;
}

/**
 * The last line of test cleanup: SIGKILLs every process (and its group) whose environment carries
 * `KEY_PREFIX=<prefix>` — supervisors and workers a test started, even if its normal shutdown hung.
 */
export function killByKeyPrefix(prefix: string): number {
  let killed = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const env = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
      if (!env.includes(`KEY_PREFIX=${prefix}`)) continue;
      killGroup(Number(entry));
      killed++;
    } catch {
      // gone, or not ours to read
    }
  }
  return killed;
}

/** Stops a supervisor process a test started: SIGTERM (it stops its workers), SIGKILL after `graceMs`. */
export async function stopProcess(child: ChildProcess | undefined, graceMs = 10_000): Promise<void> {
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, graceMs))]);
  killGroup(child.pid);
}

/** How long a whole-stack test waits for its hub to close before going on with the teardown. */
const HUB_CLOSE_WAIT_MS = 5_000;

/**
 * Tears a whole-stack test down in the order that leaves nothing behind: the supervisor process first (it stops
 * its workers), then the hub (a close that hangs is not waited out), then whatever a hung shutdown left under
 * `prefix`.
 */
export async function stopStack(
  supervisor: ChildProcess | undefined,
  hub: { close(): Promise<unknown> } | undefined,
  prefix: string,
): Promise<void> {
  await stopProcess(supervisor);
  await Promise.race([hub?.close(), new Promise((resolve) => setTimeout(resolve, HUB_CLOSE_WAIT_MS))]);
  killByKeyPrefix(prefix);
}

/**
 * Runs the built supervisor as its own process (detached, so a test can kill it like a crash) against the
 * test Redis under `prefix`, on a random worker port range. `env` adds to or overrides the defaults.
 */
export function startSupervisorProcess(
  redisUrl: string,
  prefix: string,
  env: Record<string, string> = {},
  stdout: 'pipe' | 'ignore' = 'ignore',
): ChildProcess {
  return spawn(process.execPath, [`${ROOT}apps/supervisor/dist/main.js`], {
    env: {
      ...process.env,
      REDIS_URL: redisUrl,
      KEY_PREFIX: prefix,
      LOG_LEVEL: 'warn',
      MCP_WORKER_BASE_PORT: String(30_000 + Math.floor(Math.random() * 300) * 100),
      ...env,
    },
    stdio: ['ignore', stdout, 'inherit'],
    detached: true,
  });
}

/**
 * A supervisor process for a hub test: fast resync and health intervals, a short stop grace, info-level JSON
 * lines collected into `lines`. `env` overrides or adds settings.
 */
export function startWatchedSupervisor(
  redisUrl: string,
  prefix: string,
  lines: Record<string, unknown>[],
  env: Record<string, string> = {},
): ChildProcess {
  const child = startSupervisorProcess(
    redisUrl,
    prefix,
    {
      LOG_LEVEL: 'info',
      MCP_RESYNC_INTERVAL: '500ms',
      MCP_HEALTH_INTERVAL: '200ms',
      MCP_WORKER_STOP_GRACE: '1s',
      ...env,
    },
    'pipe',
  );
  collectJsonLines(child, lines);
  return child;
}

/** Appends every JSON log line of a process's piped stdout to `into` (lines that are not JSON are skipped). */
export function collectJsonLines(child: ChildProcess, into: Record<string, unknown>[]): void {
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    try {
      into.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a log line
    }
  });
}

/** Waits until server `id` runs (as another instance than `notInstance`, when given) and answers its record. */
export function runningRecord(
  registry: Registry,
  id: string,
  notInstance?: string,
  timeoutMs = 20_000,
): Promise<RuntimeRecord> {
  return waitFor(
    `${id} running${notInstance ? ' as a new instance' : ''}`,
    async () => {
      const r = await registry.getRuntime(id);
      return r?.status === 'running' && r.instance !== notInstance ? r : null;
    },
    timeoutMs,
  );
}
