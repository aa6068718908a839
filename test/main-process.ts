import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { ROOT } from './processes.js';

export interface MainRun {
  lines: Record<string, unknown>[];
  stderr: string;
  /** Resolves with the first log line that has `event`. */
  waitForEvent(event: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Stops reading the process's stdout for `ms` (its pipe fills up, as with a slow log shipper). */
  holdOutput(ms: number): void;
  exited: Promise<number | null>;
}

/**
 * Runs an app's built `main.js` with only `env` (and PATH), from `cwd` (default `/`, where no .env file is
 * read; a test that needs a working directory of its own passes an empty temporary one).
 */
export function runMain(
  app: 'hub' | 'supervisor' | 'worker',
  env: Record<string, string>,
  { cwd = '/' } = {},
): MainRun {
  const child = spawn(process.execPath, [`${ROOT}apps/${app}/dist/main.js`], {
    env: { PATH: process.env.PATH ?? '', ...env },
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr?.on('data', (chunk) => {
    stderr += String(chunk);
  });
  const waiters: { event: string; resolve: (line: Record<string, unknown>) => void }[] = [];
  const reader = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  reader.on('line', (text) => {
    try {
      const line = JSON.parse(text) as Record<string, unknown>;
      lines.push(line);
      for (const w of waiters.filter((x) => x.event === line.event)) w.resolve(line);
    } catch {
      // not a log line
    }
  });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return {
    lines,
    get stderr() {
      return stderr;
    },
    exited,
    // A deadline for a line that may never come, not a speed bar: a loaded machine takes seconds to start Node.
    waitForEvent(event, timeoutMs = 30_000) {
      const found = lines.find((l) => l.event === event);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${event} line within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          event,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
      });
    },
    holdOutput(ms) {
      reader.pause();
      setTimeout(() => reader.resume(), ms);
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}
