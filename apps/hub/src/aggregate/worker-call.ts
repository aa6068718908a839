import { AppError, ERROR_STATUS, type ErrorCode } from '@mcp-hub/shared';
import { type Agent, errors as undiciErrors } from 'undici';

export interface WorkerProgress {
  progress: number;
  total?: number;
  message?: string;
}

export interface WorkerCallResult {
  content: unknown[];
  structuredContent?: unknown;
  isError: boolean;
}

export interface WorkerCall {
  agent: Agent;
  origin: string;
  /** The worker's credential header (workerAuth). */
  auth: Record<string, string>;
  tool: string;
  args: unknown;
  requestId: string;
  signal: AbortSignal;
  timeoutMs: number;
  onProgress?: (progress: WorkerProgress) => void;
}

/** Extra time for a worker's headers beyond the tool's own timeout (the worker enforces that one). */
const HEADERS_GRACE_MS = 5_000;

function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && code in ERROR_STATUS;
}

/**
 * Calls one tool on a worker (`POST /tools/:tool`, SSE) for the hub's own MCP server: progress events go to
 * `onProgress`, the result event is returned, an error event is thrown as AppError. Aborting `signal` ends
 * the request, which the worker takes as a disconnect and cancels upstream.
 */
export async function callWorkerTool(call: WorkerCall): Promise<WorkerCallResult> {
  let response: Awaited<ReturnType<Agent['request']>>;
  try {
    response = await call.agent.request({
      origin: call.origin,
      path: `/tools/${encodeURIComponent(call.tool)}`,
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'text/event-stream',
        'x-request-id': call.requestId,
        ...call.auth,
      },
      body: JSON.stringify(call.args ?? {}),
      signal: call.signal,
      headersTimeout: call.timeoutMs + HEADERS_GRACE_MS,
      bodyTimeout: 0,
    });
  } catch (err) {
    if (call.signal.aborted) throw new AppError('invalid_request', 'the call was cancelled');
    const timedOut = err instanceof undiciErrors.HeadersTimeoutError;
    throw new AppError(
      timedOut ? 'tool_timeout' : 'worker_unavailable',
      timedOut ? `${call.tool} did not answer in time` : 'the worker is unreachable',
      undefined,
      { cause: err },
    );
  }

  if (!String(response.headers['content-type'] ?? '').startsWith('text/event-stream')) {
    const body = (await response.body.json().catch(() => ({}))) as { error?: { code?: unknown; message?: unknown } };
    const code = isErrorCode(body.error?.code) ? body.error.code : 'upstream_error';
    throw new AppError(code, String(body.error?.message ?? `the worker answered ${response.statusCode}`));
  }

  let buffer = '';
  try {
    for await (const chunk of response.body) {
      buffer += (chunk as Buffer).toString('utf8');
      let end = buffer.indexOf('\n\n');
      while (end !== -1) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf('\n\n');
        const outcome = handleFrame(frame, call.onProgress);
        if (outcome) {
          response.body.destroy();
          return outcome;
        }
      }
    }
  } catch (err) {
    if (err instanceof AppError) throw err;
    if (call.signal.aborted) throw new AppError('invalid_request', 'the call was cancelled');
    throw new AppError('worker_unavailable', 'the worker went away during the call', undefined, { cause: err });
  }
  throw new AppError('worker_unavailable', 'the worker ended the call without a result');
}

/** One SSE frame: a result ends the call (returned), an error ends it (thrown), progress is passed on. */
function handleFrame(frame: string, onProgress: WorkerCall['onProgress']): WorkerCallResult | undefined {
  let event = 'message';
  const data: string[] = [];
  for (const line of frame.split('\n')) {
    if (line.startsWith('event:')) event = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
  }
  if (data.length === 0) return undefined; // a keep-alive comment
  const payload = JSON.parse(data.join('\n')) as Record<string, unknown>;
  if (event === 'progress') {
    onProgress?.({
      progress: Number(payload.progress),
      total: typeof payload.total === 'number' ? payload.total : undefined,
      message: typeof payload.message === 'string' ? payload.message : undefined,
    });
    return undefined;
  }
  if (event === 'result') {
    const result: WorkerCallResult = {
      content: Array.isArray(payload.content) ? payload.content : [],
      isError: payload.isError === true,
    };
    if (payload.structuredContent !== undefined) result.structuredContent = payload.structuredContent;
    return result;
  }
  if (event === 'error') {
    const code = isErrorCode(payload.code) ? payload.code : 'upstream_error';
    throw new AppError(code, String(payload.message ?? 'the tool call failed'));
  }
  return undefined;
}
