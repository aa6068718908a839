import { readFileSync } from 'node:fs';
import { execa } from 'execa';

export interface ExitInfo {
  code: number | null;
  signal: string | null;
}

export interface SpawnedWorker {
  pid: number;
  /** Resolves when the process exits (only for processes this supervisor started). */
  exited: Promise<ExitInfo>;
}

const POLL_MS = 25;
const KILL_WAIT_MS = 2_000;

/**
 * Starts a worker detached in its own process group with stdout/stderr inherited, so it outlives this
 * supervisor (a crash or upgrade interrupts no call) and its stdio MCP server shares its group. `env` is
 * the worker's whole environment: nothing of the supervisor's own is added (HUB_ADMIN_TOKEN stays here).
 */
export function spawnWorker(entry: string, env: Record<string, string>): SpawnedWorker {
  const child = execa(process.execPath, [entry], {
    env,
    extendEnv: false,
    detached: true,
    stdio: ['ignore', 'inherit', 'inherit'],
    cleanup: false,
    reject: false,
    buffer: false,
  });
  if (child.pid === undefined) throw new Error(`could not start worker ${entry}`);
  const exited = child.then((result) => ({
    code: result.exitCode ?? null,
    signal: result.signal ?? null,
  }));
  return { pid: child.pid, exited };
}

/** True while `pid` exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

/**
 * Whether `pid` is the worker started with `instance`: read from its environment on Linux. Guards against
 * killing an unrelated process that reused the pid of a dead worker. Undefined where /proc is unavailable.
 */
export function isWorkerInstance(pid: number, instance: string): boolean | undefined {
  try {
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
    return environ.split('\0').includes(`MCP_WORKER_INSTANCE=${instance}`);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? false : undefined;
  }
}

/** Signals a worker's process group. Workers lead their group, so no fallback to the bare pid: once the
 * group is gone, that pid may belong to someone else. */
function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is gone
  }
}

async function waitGone(pid: number, exited: Promise<unknown> | undefined, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  if (exited) {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const done = await Promise.race([exited.then(() => true as const), timeout]);
    clearTimeout(timer);
    return done;
  }
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  return !isAlive(pid);
}

/**
 * Stops a worker and everything in its process group: SIGTERM to the worker alone (it closes its stdio
 * server in order: stdin, SIGTERM, SIGKILL), SIGKILL to the whole group after `graceMs`, and SIGKILL to
 * whatever is left of the group once the worker is gone. Returns how it ended. `exited` is the exit promise
 * when this supervisor started the process; adopted ones are polled. `signal` WORKER_DRAIN_SIGNAL lets the
 * worker finish its calls first (then `graceMs` must cover them).
 */
export async function stopProcessGroup(
  pid: number,
  graceMs: number,
  exited?: Promise<unknown>,
  signal: NodeJS.Signals = 'SIGTERM',
): Promise<'terminated' | 'killed' | 'gone'> {
  if (!isAlive(pid)) {
    signalGroup(pid, 'SIGKILL'); // the worker may be gone while its children linger
    return 'gone';
  }
  try {
    process.kill(pid, signal);
  } catch {
    // gone between the check and the signal
  }
  if (await waitGone(pid, exited, graceMs)) {
    signalGroup(pid, 'SIGKILL');
    return 'terminated';
  }
  signalGroup(pid, 'SIGKILL');
  await waitGone(pid, exited, KILL_WAIT_MS);
  return 'killed';
}
