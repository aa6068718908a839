import { randomUUID } from 'node:crypto';
import { AppError, ERROR_STATUS, type ErrorCode, isRequestId, REQUEST_ID_HEADER } from '@mcp-hub/shared';
import type { McpServerContext, ProgressUpdate } from '@mcp-hub/shared/mcp-front';
import { SdkError } from '@modelcontextprotocol/client';
import {
  type ClientCapabilities,
  type LoggingLevel,
  ProtocolError,
  ProtocolErrorCode,
  type Server,
  type ServerContext,
  type Tool,
} from '@modelcontextprotocol/server';
import type { Principal } from '../access/principal.js';
import type { CatalogServer } from './catalog.js';
import type { LinkCaller, WorkerLink } from './worker-links.js';

// What the aggregator's parts share: who a request is for, and the small conversions between the hub's
// errors and MCP's.

/** What the MCP front hands the server factory for one session or request. */
export type AggregateContext = McpServerContext;

/** Items of a merged list per page (resources, templates, prompts). */
export const AGGREGATE_PAGE_SIZE = 500;

/** The tool fields clients see (the registry's own `rev` and `digest` stay inside). */
export function publicTool(name: string, tool: CatalogServer['tools'][number]): Tool {
  const { rev: _rev, digest: _digest, name: _name, ...rest } = tool;
  return { ...rest, name } as Tool;
}

/** The client capabilities a worker session passes on: only what a server may ask for. */
export function askable(capabilities: ClientCapabilities | undefined): ClientCapabilities {
  const out: ClientCapabilities = {};
  if (capabilities?.sampling) out.sampling = capabilities.sampling;
  if (capabilities?.elicitation) out.elicitation = capabilities.elicitation;
  if (capabilities?.roots) out.roots = capabilities.roots;
  return out;
}

export type ListMethod = 'resources/list' | 'resources/templates/list' | 'prompts/list';
export const LIST_KEY: Record<ListMethod, string> = {
  'resources/list': 'resources',
  'resources/templates/list': 'resourceTemplates',
  'prompts/list': 'prompts',
};

/** A 2025 downstream session as the aggregator keeps it. */
export interface AggregateSession {
  owner: string;
  logLevel: LoggingLevel | undefined;
  home: LinkCaller;
}

/** One downstream session or request: who asks, and how to reach the workers for it. */
export interface Downstream {
  principal: Principal;
  caller: string;
  ctx: AggregateContext;
  server: Server;
  session: AggregateSession | undefined;
}

export type LinkOperation = (
  link: WorkerLink,
  signal: AbortSignal,
  onProgress: (p: ProgressUpdate) => void,
) => Promise<unknown>;

/** One page of a merged list; the cursor is the offset of the next page (opaque to clients, checked). */
export function paginate(key: string, items: unknown[], cursor: string | undefined): Record<string, unknown> {
  let offset = 0;
  if (cursor !== undefined) {
    const parsed = /^o([0-9]{1,9})$/.exec(cursor);
    if (!parsed) throw new ProtocolError(ProtocolErrorCode.InvalidParams, 'invalid cursor');
    offset = Number(parsed[1]);
  }
  const page = items.slice(offset, offset + AGGREGATE_PAGE_SIZE);
  const next = offset + AGGREGATE_PAGE_SIZE;
  return { [key]: page, ...(next < items.length ? { nextCursor: `o${next}` } : {}) };
}

/** Runs `work`, rejecting as soon as `signal` aborts (a worker that never answers does not hold the list). */
export function abortable<T>(signal: AbortSignal, work: () => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error(`no answer within the deadline (${String(signal.reason)})`));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work()
      .then(resolve, reject)
      .finally(() => signal.removeEventListener('abort', onAbort));
  });
}

export function asAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (ProtocolError.isInstance(err)) {
    const code = (err.data as { code?: unknown } | undefined)?.code;
    if (typeof code === 'string' && Object.hasOwn(ERROR_STATUS, code)) {
      return new AppError(code as ErrorCode, err.message, undefined, { cause: err });
    }
    return new AppError('upstream_error', err.message, undefined, { cause: err });
  }
  if (SdkError.isInstance(err)) {
    return new AppError('worker_unavailable', `the worker did not answer: ${err.message}`, undefined, { cause: err });
  }
  return new AppError('internal_error', 'internal error', undefined, { cause: err });
}

export function toProtocolError(error: unknown): ProtocolError {
  if (ProtocolError.isInstance(error)) return error;
  const app = asAppError(error);
  return new ProtocolError(ProtocolErrorCode.InternalError, `${app.code}: ${app.message}`, { code: app.code });
}

/** One reserved key of a 2026-07-28 request's `_meta` envelope (the SDK types the envelope as opaque). */
export function envelopeField(rc: ServerContext, key: string): unknown {
  return (rc.mcpReq.envelope as Record<string, unknown> | undefined)?.[key];
}

export function ms(started: number): number {
  return Math.round((performance.now() - started) * 100) / 100;
}

export function requestIdOf(rc: ServerContext, ctx: AggregateContext): string {
  const given = rc.http?.req?.headers.get(REQUEST_ID_HEADER);
  if (given && isRequestId(given)) return given;
  return ctx.era === 'modern' && ctx.requestId ? ctx.requestId : randomUUID();
}
