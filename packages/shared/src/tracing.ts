import type { Logger } from './logger.js';

/**
 * Distributed tracing (OpenTelemetry), off unless an OTLP endpoint is configured. Only this module is loaded when
 * it is off: the SDK (tracing-sdk.ts) is imported when tracing starts, so a hub or worker without it pays one
 * `undefined` check per request. Spans are passed along explicitly (no async context manager on the call path):
 * the request's server span, a client span per hop, and the W3C `traceparent` of the hop's span handed to the next
 * process (an HTTP header to the worker and to REST or HTTP upstreams, `params._meta.traceparent` to MCP servers).
 */

export type SpanKindName = 'server' | 'client';
export type AttributeValue = string | number | boolean;
export type SpanAttributes = Record<string, AttributeValue | undefined>;

/** One span, as the call path uses it. */
export interface TraceSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** The W3C `traceparent` that makes this span the parent of the next hop's. */
  readonly traceparent: string;
  /** Sets one attribute; undefined leaves it unset. */
  set(key: string, value: AttributeValue | undefined): void;
  /** Names the span once its target is known (`tools/call echo`). */
  rename(name: string): void;
  /** A span of this one's trace, with this one as its parent. */
  child(name: string, kind: SpanKindName, attributes?: SpanAttributes): TraceSpan;
  /** Ends the span; an `errorType` marks it failed (`error.type`, status ERROR). Only the first call counts. */
  end(errorType?: string, message?: string): void;
}

export interface Tracer {
  /** A span whose parent is the remote span named by `traceparent` (when valid), else the root of a new trace. */
  start(name: string, kind: SpanKindName, attributes: SpanAttributes, traceparent?: string | undefined): TraceSpan;
  /** Exports what is still queued (waiting at most `timeoutMs`) and stops. */
  shutdown(timeoutMs?: number): Promise<void>;
}

/** The MCP semantic-convention attributes the hub and workers set (OpenTelemetry GenAI conventions, MCP). */
export const TRACE_ATTR = Object.freeze({
  method: 'mcp.method.name',
  session: 'mcp.session.id',
  protocolVersion: 'mcp.protocol.version',
  rpcRequestId: 'jsonrpc.request.id',
  tool: 'gen_ai.tool.name',
  operation: 'gen_ai.operation.name',
  errorType: 'error.type',
  networkTransport: 'network.transport',
  networkProtocol: 'network.protocol.name',
  serverAddress: 'server.address',
  serverPort: 'server.port',
  httpStatus: 'http.response.status_code',
  /** The hub's own: which registered server, and the request id every log line of the call carries. */
  hubServer: 'mcp_hub.server.id',
  hubRequestId: 'mcp_hub.request_id',
});

/**
 * The attributes of a `tools/call` server span; `tool` once it is known, `http` at the hub's edge (the client's
 * transport: MCP over HTTP).
 */
export function toolCallAttributes(requestId: string, tool?: string, http = false): SpanAttributes {
  return {
    [TRACE_ATTR.method]: 'tools/call',
    [TRACE_ATTR.operation]: 'execute_tool',
    [TRACE_ATTR.tool]: tool,
    [TRACE_ATTR.hubRequestId]: requestId,
    ...(http ? { [TRACE_ATTR.networkTransport]: 'tcp', [TRACE_ATTR.networkProtocol]: 'http' } : {}),
  };
}

/** `{mcp.method.name} {target}` (the tool's name for tools/call), or the method alone. */
export function spanName(method: string, target?: string): string {
  return target ? `${method} ${target}` : method;
}

/** The version-00 part of a W3C traceparent: version, trace id and span id (not all zero), flags. */
const TRACEPARENT_RE = /^([0-9a-f]{2})-((?!0{32})[0-9a-f]{32})-((?!0{16})[0-9a-f]{16})-([0-9a-f]{2})/;
/** Longest traceparent read (a future version may append fields after the first 55 characters). */
const MAX_TRACEPARENT = 256;

/**
 * A valid traceparent as version 00, else undefined (a client's malformed header starts a new trace). Version 00 is
 * exactly 55 characters; a higher version (not `ff`) is read by its first 55, as W3C Trace Context asks.
 */
export function validTraceparent(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length < 55 || value.length > MAX_TRACEPARENT) return undefined;
  const match = TRACEPARENT_RE.exec(value);
  if (!match || match[1] === 'ff') return undefined;
  if (match[1] === '00' ? value.length !== 55 : value.length > 55 && value[55] !== '-') return undefined;
  return match[1] === '00' ? value : `00-${match[2]}-${match[3]}-${match[4]}`;
}

/** The traceparent an MCP request carries in `params._meta` (OpenTelemetry MCP conventions), if valid. */
export function metaTraceparent(params: unknown): string | undefined {
  if (!params || typeof params !== 'object') return undefined;
  const meta = (params as { _meta?: unknown })._meta;
  if (!meta || typeof meta !== 'object') return undefined;
  return validTraceparent((meta as { traceparent?: unknown }).traceparent);
}

/** The log fields that tie a line to its span (`trace_id`, `span_id`); none without one. */
export function traceFields(span: TraceSpan | undefined): { trace_id: string; span_id: string } | undefined {
  return span && { trace_id: span.traceId, span_id: span.spanId };
}

/** Whether `env` turns tracing on: an OTLP endpoint is set and neither the SDK nor the trace exporter is off. */
export function tracingEnabled(env: Readonly<Record<string, string | undefined>>): boolean {
  if (!env.OTEL_EXPORTER_OTLP_ENDPOINT && !env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return false;
  if (env.OTEL_SDK_DISABLED?.toLowerCase() === 'true') return false;
  return env.OTEL_TRACES_EXPORTER?.toLowerCase() !== 'none';
}

/** The `OTEL_*` variables of an environment (what a hub or worker configures tracing from, and hands on). */
export function otelEnv(env: Readonly<Record<string, string | undefined>>): Readonly<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (name.startsWith('OTEL_') && value !== undefined && value !== '') out[name] = value;
  }
  return Object.freeze(out);
}

export interface TracingOptions {
  /** `service.name` unless OTEL_SERVICE_NAME sets it (then suffixed with `-worker` for workers). */
  service: 'mcp-hub' | 'mcp-hub-worker';
  /** Extra resource attributes (`service.instance.id`, the worker's server id). */
  resource?: Record<string, string>;
  /** The OTEL_* variables (otelEnv). */
  env: Readonly<Record<string, string>>;
  log: Logger;
}

/** Starts tracing when `env` turns it on (tracingEnabled); undefined when it is off. */
export async function startTracing(options: TracingOptions): Promise<Tracer | undefined> {
  if (!tracingEnabled(options.env)) return undefined;
  const { createTracer } = await import('./tracing-sdk.js');
  return createTracer(options);
}
