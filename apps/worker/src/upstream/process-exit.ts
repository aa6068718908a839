import { setTimeout as delay } from 'node:timers/promises';

const POLL_INTERVAL_MS = 25;

/** Whether a process with this pid exists (a signal 0 probe: EPERM still means it exists). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await delay(POLL_INTERVAL_MS);
  }
  return true;
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Gone in the meantime.
  }
}

/**
 * Makes sure a child whose stdin was just closed is gone: waits `graceMs`, then SIGTERM and waits again,
 * then SIGKILL. Returns false only if it survived even SIGKILL for `graceMs`.
 */
export async function terminateProcess(pid: number, graceMs = 1_000): Promise<boolean> {
  if (await waitGone(pid, graceMs)) return true;
  signal(pid, 'SIGTERM');
  if (await waitGone(pid, graceMs)) return true;
  signal(pid, 'SIGKILL');
  return waitGone(pid, graceMs);
}
