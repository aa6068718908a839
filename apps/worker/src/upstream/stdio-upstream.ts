import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import type { ServerSpec } from '@mcp-hub/shared';
import { type Client, type JSONRPCMessage, serializeMessage } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { NOT_DELIVERED_RPC_CODE } from './mcp-calls.js';
import { type McpSession, type McpSessionOptions, McpSessionUpstream } from './mcp-session.js';
import { terminateProcess } from './process-exit.js';
import { type StdioLauncher, UNCONFINED } from './stdio-sandbox.js';
import type { Upstream } from './upstream.js';

export type StdioServerSpec = Extract<ServerSpec, { transport: 'stdio' }>;

export interface StdioUpstreamOptions extends McpSessionOptions {
  spec: StdioServerSpec;
  /** How the command is started (inside a sandbox, or as given). Default: as given. */
  launcher?: StdioLauncher;
}

/** How long to wait for the last stderr lines of an exited child before describing its exit. */
const STDERR_DRAIN_MS = 500;
const STDERR_TAIL_LINES = 5;
const STDERR_LINE_MAX_CHARS = 4_000;

/**
 * Remembers the child's pid once spawned: the SDK forgets it as soon as closing starts (including the close
 * it does itself when `initialize` fails), and the worker must still see the child gone.
 */
class PidTrackingStdioTransport extends StdioClientTransport {
  spawnedPid: number | undefined;

  override async start(): Promise<void> {
    await super.start();
    this.spawnedPid = this.pid ?? undefined;
  }

  /**
   * The SDK's send, but a request whose line the child's stdin refused (EPIPE: the child had died) is answered
   * at once with NOT_DELIVERED_RPC_CODE: the server never read it, so the call may run elsewhere. Without this
   * it would end with the session's "Connection closed", which cannot be told from a call the server had.
   */
  override send(message: JSONRPCMessage): Promise<void> {
    // The child's stdin is the SDK's own (a private field of its transport; absent: the SDK's send, as it is).
    const stdin = (this as unknown as { _process?: ChildProcess })._process?.stdin;
    if (!stdin || !('method' in message) || !('id' in message)) return super.send(message);
    const { id } = message;
    return new Promise((resolve) => {
      const written = stdin.write(serializeMessage(message), (error) => {
        if (!error) return;
        const refusal = { code: NOT_DELIVERED_RPC_CODE, message: `the stdio server had exited: ${error.message}` };
        this.onmessage?.({ jsonrpc: '2.0', id, error: refusal });
      });
      if (written) resolve();
      else stdin.once('drain', resolve);
    });
  }
}

interface StdioSession extends McpSession {
  transport: PidTrackingStdioTransport;
  /** Resolves when the child's stderr has ended. */
  stderrDone: Promise<void>;
  stderrTail: string[];
}

/** Creates the upstream of a stdio MCP server: one child process, never restarted here (the supervisor does). */
export function createStdioUpstream(options: StdioUpstreamOptions): Upstream {
  return new StdioUpstream(options);
}

class StdioUpstream extends McpSessionUpstream<StdioSession> {
  constructor(private readonly stdio: StdioUpstreamOptions) {
    super(stdio);
  }

  override get pid(): number | undefined {
    return this.session?.transport.pid ?? undefined;
  }

  protected get transportName(): string {
    return 'stdio';
  }

  protected firstConnect(): Promise<void> {
    return this.openSession();
  }

  protected async openTransport(client: Client): Promise<StdioSession> {
    const { config } = this.stdio.spec;
    // The sandbox is prepared (and probed) before each spawn; if it cannot run, the start fails here.
    const launch = await (this.stdio.launcher ?? UNCONFINED).prepare({
      command: config.command,
      args: config.args,
      env: config.env,
      cwd: config.cwd,
    });
    const transport = new PidTrackingStdioTransport({
      command: launch.command,
      args: launch.args,
      // Merged over the SDK's safe inherited variables (PATH, HOME, …) by the transport itself.
      env: launch.env,
      cwd: launch.cwd,
      stderr: 'pipe',
      maxBufferSize: this.options.maxMessageBytes,
    });
    const stderrTail: string[] = [];
    const stderrDone = this.forwardStderr(transport, stderrTail);
    return { client, transport, stderrDone, stderrTail };
  }

  /** Turns each stderr line of the child into a log line (stdout is the JSON-RPC channel and never logged). */
  private forwardStderr(transport: PidTrackingStdioTransport, tail: string[]): Promise<void> {
    const stderr = transport.stderr;
    if (!stderr) return Promise.resolve();
    const lines = createInterface({
      input: stderr as unknown as NodeJS.ReadableStream,
      crlfDelay: Number.POSITIVE_INFINITY,
    });
    lines.on('line', (raw: string) => {
      const line = raw.length > STDERR_LINE_MAX_CHARS ? `${raw.slice(0, STDERR_LINE_MAX_CHARS)}…` : raw;
      if (line.trim() === '') return;
      tail.push(line);
      if (tail.length > STDERR_TAIL_LINES) tail.shift();
      this.log.info({ event: 'upstream.stderr', line }, 'upstream stderr');
    });
    return new Promise((resolve) => lines.once('close', () => resolve()));
  }

  /** The child exited: the upstream is down for good (the worker exits and the supervisor restarts it). */
  protected sessionClosed(session: StdioSession): void {
    this.session = undefined;
    this.machine.transition('down', 'the stdio server exited');
    void (async () => {
      await Promise.race([session.stderrDone, delay(STDERR_DRAIN_MS)]);
      await this.disposeSession(session);
      const reason = withStderr('the stdio server exited', session.stderrTail);
      this.log.error({ event: 'upstream.exited', reason }, 'the stdio server exited');
      this.closeListener?.(new Error(reason));
    })();
  }

  protected async describeFailure(session: StdioSession, message: string): Promise<string> {
    await Promise.race([session.stderrDone, delay(STDERR_DRAIN_MS)]);
    return withStderr(`the stdio server failed to start (${message})`, session.stderrTail);
  }

  /**
   * The SDK's close ends the child's stdin first, then escalates on fixed 2 s timers; the same escalation
   * runs here alongside on shorter ones, so that even a server ignoring SIGTERM is gone in about 2 s.
   */
  protected override async whileDisposing(session: StdioSession): Promise<void> {
    const pid = session.transport.spawnedPid;
    if (pid !== undefined && !(await terminateProcess(pid))) {
      this.log.error({ event: 'upstream.kill_failed', pid }, 'the stdio server survived SIGKILL');
    }
  }
}

function withStderr(reason: string, tail: string[]): string {
  const last = tail.at(-1);
  return last === undefined ? reason : `${reason}; last stderr line: ${last}`;
}
