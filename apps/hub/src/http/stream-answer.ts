import type { OutgoingHttpHeaders } from 'node:http';
import { AppError, type Logger, SseStream } from '@mcp-hub/shared';
import type { FastifyReply } from 'fastify';

/**
 * A tool call's event-stream answer to its client (`POST /mcp/:id/:tool` with `Accept: text/event-stream`):
 * opened once, when the first worker's stream starts, and kept open if the call is sent again to the worker's
 * successor, so the client sees one stream whichever worker ran the call. Headers are the reply's own
 * (request id, CORS) plus the stream's; a keep-alive comment goes out while the call runs.
 */
export class StreamAnswer {
  private sse: SseStream | undefined;

  constructor(
    private readonly reply: FastifyReply,
    private readonly log: Logger,
  ) {}

  /** Whether the client has the stream's headers (failures are then events, not a status). */
  get started(): boolean {
    return this.sse !== undefined;
  }

  open(): SseStream {
    if (this.sse === undefined) {
      this.reply.hijack();
      const headers = this.reply.getHeaders() as OutgoingHttpHeaders;
      // A client that asked to close its connection gets it closed after the stream, as for any answer.
      if (/\bclose\b/i.test(String(this.reply.request.headers.connection ?? ''))) headers.connection = 'close';
      this.sse = new SseStream(this.reply.raw, headers);
    }
    return this.sse;
  }

  /** Ends a started stream with the failure as its last event: the one error shape's code, message and details. */
  fail(err: unknown): FastifyReply {
    const requestId = this.reply.request.id;
    let error: AppError;
    if (err instanceof AppError) error = err;
    else {
      // A fault of ours: logged here with its stack, since the error handler never sees it.
      this.log.error({ event: 'tool.call.failed', request_id: requestId, err }, 'tool call failed');
      error = new AppError('internal_error', 'internal error');
    }
    this.open().finish('error', {
      request_id: requestId,
      code: error.code,
      message: error.message,
      ...(error.details !== undefined && { details: error.details }),
    });
    return this.reply;
  }
}
