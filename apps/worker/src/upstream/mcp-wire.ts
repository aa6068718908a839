import { AppError, type ToolInput } from '@mcp-hub/shared';
import { ProtocolError, SdkError, SdkErrorCode, type Tool } from '@modelcontextprotocol/client';
import { markLost, type ToolResult } from './upstream.js';

// What crosses the wire between the worker and an MCP upstream: results passed on unparsed, progress bounded,
// tools as the registry keeps them, failures as the worker answers them.

/**
 * The worker is a proxy: it hands the server's result on as the server sent it, for the client at the end
 * to judge. Skipping the SDK's result parsing (a zod union that fails a branch on every call, building an
 * error each time) halves the worker's CPU per call.
 */
export const PASS_THROUGH_RESULT = {
  '~standard': {
    version: 1 as const,
    vendor: 'mcp-hub',
    validate: (value: unknown) =>
      value !== null && typeof value === 'object'
        ? { value: value as ToolResult }
        : { issues: [{ message: 'a tools/call result must be an object' }] },
  },
};

/** The same for forwarded requests (resources, prompts, completion): the downstream client judges them. */
export const PASS_THROUGH_OBJECT = {
  '~standard': {
    version: 1 as const,
    vendor: 'mcp-hub',
    validate: (value: unknown) =>
      value !== null && typeof value === 'object'
        ? { value: value as Record<string, unknown> }
        : { issues: [{ message: 'a result must be an object' }] },
  },
};

/**
 * The JSON-RPC error code (implementation-defined range) a transport answers for a request it could not hand to
 * the server (a stdio child that had died): the server never saw the call.
 */
export const NOT_DELIVERED_RPC_CODE = -32_099;

/**
 * An upstream call's failure as the worker answers it: the server's JSON-RPC error whole (its code, message and
 * data), its timeout `tool_timeout`, a request the transport could not hand to the server `worker_unavailable`
 * (never read: not lost), a session that ended under the call `upstream_error` marked lost, anything else
 * `upstream_error`. `onOther` runs for failures that are neither the server's answer nor a timeout.
 */
export function toCallError(error: unknown, onOther: () => void): AppError {
  if (ProtocolError.isInstance(error) && error.code === NOT_DELIVERED_RPC_CODE) {
    return new AppError('worker_unavailable', error.message, undefined, { cause: error });
  }
  if (ProtocolError.isInstance(error)) {
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
  onOther();
  const message = error instanceof Error ? error.message : String(error);
  const failure = new AppError('upstream_error', `the upstream failed: ${message}`, undefined, { cause: error });
  // The session ended under the call (a stdio child that died): the server may have run it or not.
  return SdkError.isInstance(error) && error.code === SdkErrorCode.ConnectionClosed ? markLost(failure) : failure;
}

/** Longest progress `message` passed on: a status line, not a channel for bulk data from the upstream. */
export const MAX_PROGRESS_MESSAGE_CHARS = 4_096;

/** An upstream progress notification as the worker passes it on, its message cut to MAX_PROGRESS_MESSAGE_CHARS. */
export function boundedProgress(p: { progress: number; total?: number; message?: string }) {
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
