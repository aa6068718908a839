import { AppError, type ToolInput } from '@mcp-hub/shared';
import {
  type Client,
  type Progress,
  ProtocolError,
  type Request,
  SdkError,
  SdkErrorCode,
  type Tool,
} from '@modelcontextprotocol/client';
import {
  type CallToolOptions,
  markLost,
  type PassthroughMethod,
  type ToolProgress,
  type ToolResult,
  type UpstreamRequestOptions,
} from './upstream.js';

/**
 * A result schema that takes any object as it is. The worker is a proxy: it hands the server's result on as
 * the server sent it, for the client at the end to judge. Skipping the SDK's result parsing (a zod union that
 * fails a branch on every call, building an error each time) halves the worker's CPU per call.
 */
function passThrough<T>(refusal: string) {
  return {
    '~standard': {
      version: 1 as const,
      vendor: 'mcp-hub',
      validate: (value: unknown) =>
        value !== null && typeof value === 'object' ? { value: value as T } : { issues: [{ message: refusal }] },
    },
  };
}

const PASS_THROUGH_RESULT = passThrough<ToolResult>('a tools/call result must be an object');
/** The same for forwarded requests (resources, prompts, completion): the downstream client judges them. */
const PASS_THROUGH_OBJECT = passThrough<Record<string, unknown>>('a result must be an object');

/**
 * The SDK's own per-request timeout must never win over the call runner's deadline (which knows the
 * request and answers `tool_timeout`), so it is set this much later.
 */
const SDK_TIMEOUT_SLACK_MS = 5_000;

/** Longest progress `message` passed on: a status line, not a channel for bulk data from the upstream. */
export const MAX_PROGRESS_MESSAGE_CHARS = 4_096;

/** A tools/call to the upstream; `failed` hears of a failure that is neither the server's answer nor a timeout. */
export function forwardCall(
  client: Client,
  name: string,
  args: Record<string, unknown>,
  options: CallToolOptions,
  failed: () => void,
): Promise<ToolResult> {
  const request = {
    method: 'tools/call',
    params: options.traceparent
      ? { name, arguments: args, _meta: { traceparent: options.traceparent } }
      : { name, arguments: args },
  };
  options.onDispatch?.();
  return send(client, request, PASS_THROUGH_RESULT, options.timeoutMs + SDK_TIMEOUT_SLACK_MS, options, failed);
}

/** Any other request passed through to the upstream (resources, prompts, completion, logging). */
export function forwardRequest(
  client: Client,
  method: PassthroughMethod,
  params: Record<string, unknown> | undefined,
  options: UpstreamRequestOptions,
  failed: () => void,
): Promise<Record<string, unknown>> {
  return send(
    client,
    { method, ...(params ? { params } : {}) },
    PASS_THROUGH_OBJECT,
    options.timeoutMs,
    options,
    failed,
  );
}

async function send<T>(
  client: Client,
  request: Request,
  schema: ReturnType<typeof passThrough<T>>,
  timeout: number,
  options: { signal: AbortSignal; onProgress?: (progress: ToolProgress) => void },
  failed: () => void,
): Promise<T> {
  const onProgress = options.onProgress;
  try {
    return (await client.request(request, schema, {
      signal: options.signal,
      timeout,
      ...(onProgress ? { onprogress: (p: Progress) => onProgress(boundedProgress(p)) } : {}),
    })) as T;
  } catch (error) {
    // An aborted call is the caller's doing: it knows why (timeout, client gone, shutdown).
    if (options.signal.aborted) throw error;
    throw toCallError(error, failed);
  }
}

/**
 * The JSON-RPC error code (implementation-defined range) a transport answers for a request it could not hand to
 * the server (a stdio child that had died): the server never saw the call.
 */
export const NOT_DELIVERED_RPC_CODE = -32_099;

/**
 * An upstream call's failure as the worker answers it: the server's JSON-RPC error whole (its code, message and
 * data), its timeout `tool_timeout`, a request the transport could not hand to the server `worker_unavailable`
 * (never read: not lost), a session that ended under the call `upstream_error` marked lost, anything else
 * `upstream_error`. `failed` runs for failures that are neither the server's answer nor a timeout.
 */
function toCallError(error: unknown, failed: () => void): AppError {
  if (ProtocolError.isInstance(error) && error.code === NOT_DELIVERED_RPC_CODE) {
    return new AppError('worker_unavailable', error.message, undefined, { cause: error });
  }
  if (ProtocolError.isInstance(error)) {
    // The upstream's JSON-RPC error reaches the client whole: its code, message and data (e.g. a missing URI).
    return new AppError(
      'upstream_error',
      error.message,
      { rpcCode: error.code, ...(error.data === undefined ? {} : { rpcData: error.data }) },
      { cause: error },
    );
  }
  if (SdkError.isInstance(error) && error.code === SdkErrorCode.RequestTimeout) {
    return new AppError('tool_timeout', 'the upstream did not answer in time', undefined, { cause: error });
  }
  failed();
  const message = error instanceof Error ? error.message : String(error);
  const failure = new AppError('upstream_error', `the upstream failed: ${message}`, undefined, { cause: error });
  // The session ended under the call (a stdio child that died): the server may have run it or not.
  return SdkError.isInstance(error) && error.code === SdkErrorCode.ConnectionClosed ? markLost(failure) : failure;
}

/** An upstream progress notification as the worker passes it on, its message cut to MAX_PROGRESS_MESSAGE_CHARS. */
function boundedProgress(p: { progress: number; total?: number; message?: string }) {
  const message =
    typeof p.message === 'string' && p.message.length > MAX_PROGRESS_MESSAGE_CHARS
      ? `${p.message.slice(0, MAX_PROGRESS_MESSAGE_CHARS)}…`
      : p.message;
  return { progress: p.progress, total: p.total, message };
}

/** The fields of an MCP tool that the registry keeps (no `_meta`, icons or execution hints). */
export function toToolInput(tool: Tool): ToolInput {
  const input: ToolInput = { name: tool.name, inputSchema: tool.inputSchema as ToolInput['inputSchema'] };
  if (tool.title !== undefined) input.title = tool.title;
  if (tool.description !== undefined) input.description = tool.description;
  if (tool.outputSchema !== undefined) input.outputSchema = tool.outputSchema as Record<string, unknown>;
  if (tool.annotations !== undefined) input.annotations = tool.annotations as Record<string, unknown>;
  return input;
}
