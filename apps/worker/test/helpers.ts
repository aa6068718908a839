import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import {
  type Logger,
  loadWorkerConfig,
  Registry,
  type ServerInput,
  ServerInputSchema,
  specBodyFromInput,
  WORKER_TOKEN_HEADER,
} from '@mcp-hub/shared';
import type { Redis } from 'ioredis';
import { isAlive, waitFor } from '../../../test/processes.js';
import { redisUrl } from '../../../test/support.js';
import { startWorker, type Worker, type WorkerDeps, type WorkerOptions } from '../src/index.js';

export { isAlive, waitFor };

const root = (path: string) => fileURLToPath(new URL(`../../../${path}`, import.meta.url));

export const FIXTURES = {
  echo: root('test/fixtures/echo-server.mjs'),
  crash: root('test/fixtures/crash-server.mjs'),
  hang: root('test/fixtures/hang-server.mjs'),
  stubborn: root('test/fixtures/stubborn-server.mjs'),
  confinement: root('test/fixtures/confinement-server.mjs'),
};
export const EVERYTHING = root('node_modules/@modelcontextprotocol/server-everything/dist/index.js');
/** What the supervisor spawns: the bundle of dist/main.js. */
export const WORKER_MAIN = root('apps/worker/dist/bundle/worker.mjs');

/** Timings small enough for tests (a test of a hanging upstream passes its own short connect timeout). */
export const FAST_OPTIONS: Partial<WorkerOptions> = {
  // Room for server-everything to start on a loaded machine: 5 s ran out with four test files at a time.
  connectTimeoutMs: 15_000,
  pingIntervalMs: 200,
  reconnectBaseDelayMs: 100,
  reconnectMaxDelayMs: 500,
};

/** Registers a server the way the admin API does (defaults applied). */
export async function registerServer(redis: Redis, keys: Registry['keys'], input: ServerInput): Promise<number> {
  const { spec } = await new Registry(redis, keys).upsertServer(
    specBodyFromInput(ServerInputSchema.parse(input)),
    'create',
  );
  return spec.rev;
}

/** The credential of every test worker (the supervisor makes a random one per run). */
export const TEST_WORKER_TOKEN = randomBytes(32).toString('base64url');
/** The header a test sends to reach a worker, as the hub does. */
export const WORKER_AUTH: Readonly<Record<string, string>> = Object.freeze({
  [WORKER_TOKEN_HEADER]: TEST_WORKER_TOKEN,
});

export function testInstance(): string {
  return `test-${randomBytes(4).toString('hex')}`;
}

/** Starts a worker in-process on `port` for a registered server. */
export function startTestWorker(args: {
  serverId: string;
  prefix: string;
  port: number;
  log: Logger;
  instance?: string;
  onFatal?: WorkerDeps['onFatal'];
  options?: Partial<WorkerOptions>;
  /** More worker environment (MCP_UPSTREAM_MAX_MESSAGE_BYTES, MCP_STDIO_SANDBOX …). */
  env?: Record<string, string>;
}): Promise<Worker> {
  const config = loadWorkerConfig({
    ...args.env,
    REDIS_URL: redisUrl(),
    KEY_PREFIX: args.prefix,
    MCP_SERVER_ID: args.serverId,
    MCP_WORKER_PORT: String(args.port),
    MCP_WORKER_INSTANCE: args.instance ?? testInstance(),
    MCP_WORKER_TOKEN: TEST_WORKER_TOKEN,
  });
  return startWorker({
    config,
    log: args.log,
    onFatal: args.onFatal,
    options: { ...FAST_OPTIONS, ...args.options },
  });
}

export interface SseEvent {
  event: string;
  data: Record<string, unknown>;
}

/** Splits an SSE body into its events (comments are counted apart). */
export function parseSse(text: string): { events: SseEvent[]; comments: string[] } {
  const events: SseEvent[] = [];
  const comments: string[] = [];
  for (const block of text.split('\n\n')) {
    let event = 'message';
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) comments.push(line.slice(1).trim());
      else if (line.startsWith('event: ')) event = line.slice('event: '.length);
      else if (line.startsWith('data: ')) data.push(line.slice('data: '.length));
    }
    if (data.length > 0) events.push({ event, data: JSON.parse(data.join('\n')) as Record<string, unknown> });
  }
  return { events, comments };
}

/** POSTs a call and reads the whole SSE answer. */
export async function callSse(
  port: number,
  tool: string,
  args: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; events: SseEvent[]; comments: string[] }> {
  const res = await fetch(`http://127.0.0.1:${port}/tools/${encodeURIComponent(tool)}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...WORKER_AUTH, ...headers },
    body: JSON.stringify(args),
  });
  const text = await res.text();
  if (!res.headers.get('content-type')?.startsWith('text/event-stream')) {
    return {
      status: res.status,
      headers: res.headers,
      events: [{ event: 'body', data: JSON.parse(text) }],
      comments: [],
    };
  }
  return { status: res.status, headers: res.headers, ...parseSse(text) };
}

/** POSTs a call in JSON mode. */
export async function callJson(
  port: number,
  tool: string,
  args: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}/tools/${encodeURIComponent(tool)}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...WORKER_AUTH, ...headers },
    body: JSON.stringify(args),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

export async function getHealth(port: number): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`, { headers: WORKER_AUTH });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** A child process started by a test, killed (whole group) by `stop()`. */
export interface TestChild {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<void>;
}

/** Spawns a process in its own group, keeping its output lines; `ready` matches a stderr or stdout line. */
export async function spawnChild(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; ready?: RegExp; readyTimeoutMs?: number } = {},
): Promise<TestChild> {
  const child = spawn(command, args, {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const collect = (sink: string[]) => {
    let rest = '';
    return (chunk: Buffer) => {
      const lines = (rest + chunk.toString('utf8')).split('\n');
      rest = lines.pop() ?? '';
      sink.push(...lines);
    };
  };
  child.stdout?.on('data', collect(stdout));
  child.stderr?.on('data', collect(stderr));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(-(child.pid as number), 'SIGKILL');
    } catch {
      // Already gone.
    }
    await exited;
  };
  const ready = options.ready;
  if (ready) {
    await waitFor(
      `${command} ${args.join(' ')} to print ${ready}`,
      () => {
        if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}: ${stderr.join('\n')}`);
        return [...stdout, ...stderr].some((line) => ready.test(line));
      },
      options.readyTimeoutMs ?? 15_000,
    );
  }
  return { child, stdout, stderr, exited, stop };
}
