// Helpers shared by the benchmark suites: a private Redis, the supervisor as a real process, process stats.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts a throwaway redis-server; returns { url, pid, stop }. It runs in its own process group, so that a
 * Ctrl-C in the terminal stops it only when the bench does, after the processes that need it.
 */
export async function startRedis() {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: 'ignore',
      detached: true,
    },
  );
  const { Redis } = await import('ioredis');
  const probe = new Redis({ port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  probe.on('error', () => {});
  for (let i = 0; i < 200; i++) {
    if (
      await probe.connect().then(
        () => true,
        () => false,
      )
    )
      break;
    await sleep(25);
  }
  probe.disconnect();
  return {
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid,
    async stop() {
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

/**
 * Runs an app's built main.js as a child process with `env`; stop() sends SIGTERM and waits.
 * `stdout` (a file descriptor) receives its JSON log lines; by default they are dropped.
 */
export function startApp(app, env, { stdout = 'ignore' } = {}) {
  const child = spawn(process.execPath, [`${ROOT}apps/${app}/dist/main.js`], {
    // LOG_LEVEL=info unless asked otherwise: figures are taken the way the apps run.
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', stdout, 'inherit'],
  });
  return { child, stop: () => stopProcess(child, 30_000) };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Resident memory of a process in MiB (VmRSS), 0 when it is gone. */
export function rssMiB(pid) {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** Fields of /proc/<pid>/stat after the command name (index 0 is field 3, the state), or null when it is gone. */
function procStat(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** Pids of the direct children of `pid`. */
export function childrenOf(pid) {
  const out = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    if (Number(procStat(entry)?.[1]) === pid) out.push(Number(entry));
  }
  return out;
}

/** Pids of every descendant of `pid` (children, their children, …). */
export function descendantsOf(pid) {
  const parentOf = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = procStat(entry);
    if (fields) parentOf.set(Number(entry), Number(fields[1]));
  }
  const out = [];
  const frontier = [pid];
  while (frontier.length > 0) {
    const parent = frontier.pop();
    for (const [child, ppid] of parentOf) {
      if (ppid === parent) {
        out.push(child);
        frontier.push(child);
      }
    }
  }
  return out;
}

/** Clock ticks per second of /proc/<pid>/stat times; 100 on every Linux this runs on (USER_HZ). */
const CLOCK_TICKS_PER_S = 100;

/** CPU time (user + system) a process has used, in seconds; 0 when it is gone. */
export function cpuSeconds(pid) {
  const fields = procStat(pid);
  return fields ? (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S : 0;
}

/** Whether a process exists (and is not a zombie). */
export function alive(pid) {
  const state = procStat(pid)?.[0];
  return state !== undefined && state !== 'Z';
}

/** The JSON objects of a text of JSON lines (pino logs); other lines are skipped. */
export function* jsonLines(text) {
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      yield JSON.parse(line);
    } catch {
      // a line cut short or not ours
    }
  }
}

export function table(rows) {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  const line = (r) => `| ${r.map((v, c) => String(v).padEnd(widths[c])).join(' | ')} |`;
  return [line(rows[0]), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.slice(1).map(line)].join('\n');
}

/** Sends SIGTERM to a child process and waits for its exit; SIGKILL after `graceMs` (default 10 s). */
export async function stopProcess(child, graceMs = 10_000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
