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
 * One tool call's Server-Sent Events answer: headers flushed at once (proxies must not buffer it), the
 * contract's events (TOOL_CALL_EVENTS), and a keep-alive comment while nothing else is sent.
 */
export class SseStream {
  private readonly keepAlive: NodeJS.Timeout;
  private ended = false;
  /** How many progress events were dropped because the client read too slowly. */
  droppedProgress = 0;

  constructor(
    private readonly res: ServerResponse,
    headers: OutgoingHttpHeaders,
    keepAliveIntervalMs: number = SSE_KEEP_ALIVE_INTERVAL_MS,
  ) {
    res.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
      connection: 'keep-alive',
    });
    res.flushHeaders();
    this.keepAlive = setInterval(() => this.write(KEEP_ALIVE), keepAliveIntervalMs);
    this.keepAlive.unref();
    res.once('close', () => this.stop());
  }

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

  end(): void {
    if (this.ended) return;
    this.stop();
    this.res.end();
  }

  private write(chunk: string): void {
    if (this.open) this.res.write(chunk);
  }

  private stop(): void {
    this.ended = true;
    clearInterval(this.keepAlive);
  }
}
