import type { Readable } from 'node:stream';
import { AppError, parseToolCallFrame, type ToolProgressEvent, type ToolResultEvent } from '@mcp-hub/shared';
import type { WorkerTarget } from './worker-client.js';
import { isErrorCode, lostInFlight, staleAddress } from './worker-http.js';

// Reading a worker's tool-call stream (`POST /tools/:tool` as SSE, with `dispatched` events asked for): what the
// hub can tell from it about where the call got to when something failed.

export type ToolCallResult = Omit<ToolResultEvent, 'request_id'>;

/** Characters of a stream kept unparsed at most: a frame larger than this is a broken worker. */
const MAX_FRAME_CHARS = 64 * 1024 * 1024;

/**
 * Reads a tool-call stream to its end: progress goes to `onProgress`, the result is returned, an error event is
 * thrown as AppError of its code. What a failure tells about the call:
 * - before the `dispatched` event, the upstream never saw the call: a stream that breaks is a stale address
 *   (`wasNeverDelivered`), sent again to the worker that replaces this one; so is an error `worker_unavailable`
 *   the worker does not mark `lost`, whenever it comes (the upstream was down, or had died before it read the call);
 * - after it, a stream that breaks, or an error event the worker marks `lost`, is a call lost in flight
 *   (`wasLostInFlight`): it may have run, and is run again only for a tool that says it is safe.
 * `aborted` says whether the caller cancelled: its abort ends the body, which is then thrown as it came.
 */
export function readToolStream(
  body: Readable,
  target: WorkerTarget,
  onProgress: ((progress: Omit<ToolProgressEvent, 'request_id'>) => void) | undefined,
  aborted: () => boolean,
): Promise<ToolCallResult> {
  let buffer = '';
  let dispatched = false;
  let outcome: { result: ToolCallResult } | { error: AppError } | undefined;
  const gone = (cause?: unknown) => {
    const message = `the worker of "${target.serverId}" went away during the call`;
    return dispatched
      ? lostInFlight(new AppError('worker_unavailable', message, undefined, { cause }))
      : staleAddress(target, cause);
  };
  const readFrames = (chunk: Buffer) => {
    buffer += chunk.toString('utf8');
    if (buffer.length > MAX_FRAME_CHARS) throw new AppError('worker_unavailable', 'the worker sent an oversized event');
    let end = buffer.indexOf('\n\n');
    while (end !== -1 && !outcome) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      end = buffer.indexOf('\n\n');
      const parsed = parseToolCallFrame(frame);
      if (parsed?.event === 'dispatched') dispatched = true;
      else if (parsed?.event === 'progress') {
        const { request_id: _id, ...progress } = parsed.data;
        onProgress?.(progress);
      } else if (parsed?.event === 'result') {
        const { request_id: _id, ...result } = parsed.data;
        outcome = { result };
      } else if (parsed?.event === 'error') {
        const { code, message, details, lost } = parsed.data;
        // worker_unavailable not `lost`: the upstream never had the call (down before the worker handed it on,
        // or it refused the call's bytes because it had died).
        if (code === 'worker_unavailable' && !lost) outcome = { error: staleAddress(target) };
        else {
          const error = new AppError(isErrorCode(code) ? code : 'upstream_error', message, details);
          outcome = { error: lost && dispatched ? lostInFlight(error) : error };
        }
      }
    }
  };
  // Data events rather than an async iterator: a call's stream is two or three chunks, and the iterator's promises
  // and end-of-stream bookkeeping cost more than the parsing. The body is read to its end (the worker ends it
  // right after its last event): a body left unread would cost the pooled keep-alive connection.
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (err: unknown) => {
      if (settled) return;
      settled = true;
      body.off('data', onData);
      if (err !== undefined) {
        body.destroy();
        reject(err);
      } else if (!outcome) reject(gone());
      else if ('error' in outcome) reject(outcome.error);
      else resolve(outcome.result);
    };
    const failed = (err: unknown) => {
      if (err instanceof AppError || aborted()) settle(err);
      // The answer was complete: a connection lost after it changes nothing.
      else if (outcome) settle(undefined);
      else settle(gone(err));
    };
    const onData = (chunk: Buffer) => {
      if (outcome) return;
      try {
        readFrames(chunk);
      } catch (err) {
        failed(err);
      }
    };
    body.on('data', onData);
    body.once('end', () => settle(undefined));
    body.once('error', failed);
    body.once('close', () => {
      if (!body.readableEnded) failed(new Error('the stream closed before its end'));
    });
  });
}
