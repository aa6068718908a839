import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { type ToolCallEventName, type ToolCallEvents, toolCallFrame } from './worker-contract.js';

/** How often a comment line keeps an idle stream alive through proxies, in milliseconds. */
export const SSE_KEEP_ALIVE_INTERVAL_MS = 15_000;

const KEEP_ALIVE = ': keep-alive\n\n';
/**
 * Bytes a slow client may leave unread before progress events are dropped for it: progress is a status (the next
 * one supersedes it), while an upstream can send it faster than a client reads; results are never dropped.
 */
export const SSE_MAX_UNREAD_BYTES = 1024 * 1024;

/**
 * How long the headers of a stream with nothing to send yet wait for its first event before they go alone: a
 * call's first event usually follows at once, and headers and event then leave in one write (one syscall less
 * per call, on the hub and on the worker).
 */
export const SSE_HEADERS_FLUSH_MS = 50;

/**
 * One tool call's Server-Sent Events answer: headers sent with the first event, or alone after
 * SSE_HEADERS_FLUSH_MS (proxies must not buffer it); the contract's events (TOOL_CALL_EVENTS); a keep-alive
 * comment every interval; the last event and the end of the stream in one write (`finish`).
 */
export class SseStream {
  /** One timer per stream: first the headers' deadline, then the keep-alive interval. */
  private timer: NodeJS.Timeout;
  private ended = false;
  /** Whether anything went out after the headers (which then went with it). */
  private written = false;
  /** How many progress events were dropped because the client read too slowly. */
  droppedProgress = 0;

  constructor(
    private readonly res: ServerResponse,
    headers: OutgoingHttpHeaders,
    private readonly keepAliveIntervalMs: number = SSE_KEEP_ALIVE_INTERVAL_MS,
  ) {
    res.writeHead(200, {
      // Kept open by default; a caller's own Connection header (a client that asked to close) wins.
      connection: 'keep-alive',
      ...headers,
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    });
    this.timer = setTimeout(this.firstTick, Math.min(SSE_HEADERS_FLUSH_MS, keepAliveIntervalMs));
    this.timer.unref();
    res.once('close', () => this.stop());
  }

  /** The headers go now if no event took them; from here on the timer is the keep-alive interval. */
  private readonly firstTick = (): void => {
    if (!this.open) return;
    // (`headersSent` is true once writeHead ran, sent or not: whether anything was written is ours to know.)
    if (!this.written) this.res.flushHeaders();
    this.timer = setInterval(() => this.write(KEEP_ALIVE), this.keepAliveIntervalMs);
    this.timer.unref();
  };

  /** Whether the stream can still be written (not ended by us, not closed by the client). */
  get open(): boolean {
    return !this.ended && !this.res.destroyed;
  }

  /** Sends one event of the tool-call contract (WORKER_ROUTES.toolCall); progress is dropped for a slow reader. */
  send<E extends ToolCallEventName>(event: E, data: ToolCallEvents[E]): void {
    if (event === 'progress' && this.res.writableLength > SSE_MAX_UNREAD_BYTES) {
      this.droppedProgress++;
      return;
    }
    this.write(toolCallFrame(event, data));
  }

  /** Sends the last event and ends the stream, in one write. */
  finish<E extends ToolCallEventName>(event: E, data: ToolCallEvents[E]): void {
    if (this.ended) return;
    const open = this.open;
    this.stop();
    if (open) this.res.end(toolCallFrame(event, data));
  }

  end(): void {
    if (this.ended) return;
    this.stop();
    this.res.end();
  }

  private write(chunk: string): void {
    if (!this.open) return;
    this.written = true;
    this.res.write(chunk);
  }

  private stop(): void {
    this.ended = true;
    clearTimeout(this.timer);
  }
}
