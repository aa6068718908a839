import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { AppError, type Logger, type RestTool, type ServerSpec, type ToolInput } from '@mcp-hub/shared';
import { Pool } from 'undici';
import {
  type CallToolOptions,
  METHOD_NOT_FOUND,
  NO_FEATURES,
  type PassthroughMethod,
  type ToolResult,
  type Upstream,
  type UpstreamFeatures,
  type UpstreamState,
  UpstreamStateMachine,
} from './upstream.js';

export type RestServerSpec = Extract<ServerSpec, { transport: 'rest' }>;

export interface RestUpstreamOptions {
  spec: RestServerSpec;
  log: Logger;
}

const PATH_PARAM_RE = /\{([A-Za-z0-9_.-]+)\}/g;
/** Keep-alive connections per API origin; enough for thousands of calls per second at API latencies. */
const POOL_CONNECTIONS = 256;
const KEEP_ALIVE_TIMEOUT_MS = 30_000;
/** A REST answer larger than this is refused rather than held in memory. */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
const CLOSE_GRACE_MS = 1_000;

type ArgLocation = RestTool['argLocations'][string];

/** How many rounds of percent-decoding a path value is looked through (`%252e` is `.` after two). */
const DECODE_ROUNDS = 3;

/**
 * A path argument as one encoded path segment. A value that is empty or is, or contains, a dot segment
 * (`.`, `..`, also percent-encoded or between `/` or `\`) is refused: servers and proxies resolve dot
 * segments, so `..` would reach another path of the API with the operator's credential headers.
 * Throws AppError `invalid_arguments`.
 */
export function encodePathValue(tool: string, param: string, value: string): string {
  const forms = [value];
  let decoded = value;
  for (let round = 0; round < DECODE_ROUNDS; round++) {
    let next: string;
    try {
      next = decodeURIComponent(decoded);
    } catch {
      break; // not valid percent-encoding: taken as written (and encoded below)
    }
    if (next === decoded) break;
    forms.push(next);
    decoded = next;
  }
  const climbs = forms.some((form) => form.split(/[/\\]/).some((segment) => segment === '.' || segment === '..'));
  if (value === '' || climbs) {
    throw new AppError(
      'invalid_arguments',
      `argument "${param}" of tool "${tool}" goes in the path: it may not be empty, "." or ".." (nor contain such a segment)`,
      [{ path: param, message: 'not a path segment' }],
    );
  }
  return encodeURIComponent(value);
}

/** A REST tool compiled once: its placeholders and where each argument goes. */
interface CompiledTool {
  tool: RestTool;
  placeholders: Set<string>;
  defaultLocation: 'query' | 'body';
}

/**
 * A REST API described as tools: the spec's tools are the MCP tools, and each call becomes one HTTP request
 * over a keep-alive pool. There is no session, so the upstream is connected from the start.
 */
export function createRestUpstream(options: RestUpstreamOptions): Upstream {
  return new RestUpstream(options);
}

class RestUpstream implements Upstream {
  private readonly log: Logger;
  private readonly machine: UpstreamStateMachine;
  private readonly pool: Pool;
  /** The base URL's path, without a trailing slash, prefixed to every tool path. */
  private readonly basePath: string;
  private readonly origin: string;
  private readonly tools: Map<string, CompiledTool>;
  /** The spec's headers with lower-case names; they win over header arguments (credentials stay the operator's). */
  private readonly specHeaders: Record<string, string>;
  private closing: Promise<void> | undefined;

  constructor(options: RestUpstreamOptions) {
    this.log = options.log;
    this.machine = new UpstreamStateMachine(options.log);
    const base = new URL(options.spec.config.baseUrl);
    this.origin = base.origin;
    this.basePath = base.pathname.replace(/\/+$/, '');
    this.pool = new Pool(base.origin, {
      connections: POOL_CONNECTIONS,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      // The call runner owns the deadline (the spec's timeoutMs) and aborts the request itself.
      headersTimeout: 0,
      bodyTimeout: 0,
    });
    this.specHeaders = lowerCaseKeys(options.spec.config.headers);
    this.tools = new Map(options.spec.config.tools.map((tool) => [tool.name, compile(tool)]));
  }

  get state(): UpstreamState {
    return this.machine.state;
  }

  get pid(): undefined {
    return undefined;
  }

  onStateChange(listener: (state: UpstreamState) => void): void {
    this.machine.onChange(listener);
  }

  onToolsChanged(): void {
    // The tools are the spec's; a change of spec restarts the worker.
  }

  onListChanged(): void {
    // A REST API has neither resources nor prompts.
  }

  onClientRequest(): void {
    // A REST API never asks its client anything.
  }

  onNotification(): void {
    // Nor does it send notifications.
  }

  async rootsChanged(): Promise<void> {}

  features(): UpstreamFeatures {
    return NO_FEATURES;
  }

  async request(method: PassthroughMethod): Promise<Record<string, unknown>> {
    throw new AppError('upstream_error', `a REST upstream does not serve ${method}`, { rpcCode: METHOD_NOT_FOUND });
  }

  onClose(): void {
    // Nothing can end a REST upstream but close().
  }

  async connect(): Promise<void> {
    this.machine.transition('connected');
  }

  async listTools(): Promise<ToolInput[]> {
    return [...this.tools.values()].map(({ tool }) => {
      const input: ToolInput = { name: tool.name, description: tool.description, inputSchema: tool.inputSchema };
      if (tool.title !== undefined) input.title = tool.title;
      return input;
    });
  }

  async callTool(name: string, args: Record<string, unknown>, options: CallToolOptions): Promise<ToolResult> {
    const compiled = this.tools.get(name);
    if (!compiled) throw new AppError('tool_not_found', `tool "${name}" not found`);
    if (this.machine.state !== 'connected') throw new AppError('worker_unavailable', 'the worker is shutting down');
    const { tool } = compiled;
    const { path, headers, body } = this.buildRequest(compiled, args);
    // The worker's span of this call is the API's parent (after the operator's headers: it names this request).
    if (options.traceparent) headers.traceparent = options.traceparent;
    const url = `${this.origin}${path}`;
    const method = tool.method;
    const fields = { request_id: options.requestId, method, url, tool: name };
    this.log.info({ event: 'tool.http.request', ...fields }, 'REST request');
    const started = performance.now();
    options.onDispatch?.();
    try {
      const response = await this.pool.request({ path, method, headers, body, signal: options.signal });
      const text = await readText(response.body);
      const latency = round(performance.now() - started);
      this.log.info({ event: 'tool.http.response', ...fields, status: response.statusCode, latency }, 'REST response');
      return toToolResult(response.statusCode, response.headers['content-type'], text);
    } catch (error) {
      if (options.signal.aborted) throw error;
      if (error instanceof AppError) throw error;
      const latency = round(performance.now() - started);
      this.log.warn({ event: 'tool.http.failed', ...fields, latency, err: error }, 'REST request failed');
      const message = error instanceof Error ? error.message : String(error);
      throw new AppError('upstream_error', `the REST API could not be reached: ${message}`, undefined, {
        cause: error,
      });
    }
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.machine.transition('closed');
      try {
        await Promise.race([this.pool.close(), delay(CLOSE_GRACE_MS)]);
      } finally {
        if (!this.pool.closed) await this.pool.destroy().catch(() => {});
      }
    })();
    return this.closing;
  }

  /** Places every argument: the path (placeholders), the query, a header, or the JSON body. */
  private buildRequest(
    compiled: CompiledTool,
    args: Record<string, unknown>,
  ): { path: string; headers: Record<string, string>; body: string | undefined } {
    const { tool, placeholders, defaultLocation } = compiled;
    const pathValues = new Map<string, string>();
    const query = new URLSearchParams();
    const headers: Record<string, string> = { accept: 'application/json, */*;q=0.5' };
    const bodyArgs: Record<string, unknown> = {};
    let hasBody = false;
    for (const [key, value] of Object.entries(args)) {
      if (value === undefined) continue;
      const where: ArgLocation = tool.argLocations[key] ?? (placeholders.has(key) ? 'path' : defaultLocation);
      if (where === 'path') pathValues.set(key, encodePathValue(tool.name, key, scalar(value)));
      else if (where === 'query') appendQuery(query, key, value);
      else if (where === 'header') headers[key.toLowerCase()] = scalar(value);
      else {
        bodyArgs[key] = value;
        hasBody = true;
      }
    }
    const toolPath = tool.path.replace(PATH_PARAM_RE, (_match, param: string) => {
      const value = pathValues.get(param);
      if (value === undefined) {
        throw new AppError('invalid_arguments', `tool "${tool.name}" needs the argument "${param}" for its path`);
      }
      return value;
    });
    const search = query.toString();
    Object.assign(headers, this.specHeaders);
    let body: string | undefined;
    if (hasBody) {
      body = JSON.stringify(bodyArgs);
      headers['content-type'] = 'application/json';
    }
    return { path: `${this.basePath}${toolPath}${search === '' ? '' : `?${search}`}`, headers, body };
  }
}

function compile(tool: RestTool): CompiledTool {
  const placeholders = new Set<string>();
  for (const [, name] of tool.path.matchAll(PATH_PARAM_RE)) if (name !== undefined) placeholders.add(name);
  const defaultLocation = tool.method === 'GET' || tool.method === 'DELETE' ? 'query' : 'body';
  return { tool, placeholders, defaultLocation };
}

function scalar(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** Arrays become repeated parameters (`?tag=a&tag=b`); objects are sent as JSON; null is left out. */
function appendQuery(query: URLSearchParams, key: string, value: unknown): void {
  if (value === null) return;
  if (Array.isArray(value)) {
    for (const item of value) if (item !== null && item !== undefined) query.append(key, scalar(item));
    return;
  }
  query.append(key, scalar(value));
}

function lowerCaseKeys(record: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(record)) out[key.toLowerCase()] = value;
  return out;
}

async function readText(body: AsyncIterable<Buffer> & { destroy(): unknown }): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > MAX_RESPONSE_BYTES) {
      body.destroy();
      throw new AppError('upstream_error', `the REST API answered more than ${MAX_RESPONSE_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The HTTP answer as a tool result: the body as text (JSON pretty-printed), `structuredContent` when the
 * body is a JSON object, and `isError` for a non-2xx status, whose text starts with the status line.
 */
export function toToolResult(status: number, contentType: string | string[] | undefined, text: string): ToolResult {
  const isError = status < 200 || status >= 300;
  const type = Array.isArray(contentType) ? contentType[0] : contentType;
  let shown = text;
  let structuredContent: unknown;
  if (type !== undefined && /[/+]json\b/i.test(type) && text.trim() !== '') {
    try {
      const parsed: unknown = JSON.parse(text);
      shown = JSON.stringify(parsed, null, 2);
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) structuredContent = parsed;
    } catch {
      // Not JSON after all: passed on as text.
    }
  }
  if (isError) shown = shown === '' ? `HTTP ${status}` : `HTTP ${status}\n${shown}`;
  const result: ToolResult = { content: [{ type: 'text', text: shown }], isError };
  if (structuredContent !== undefined) result.structuredContent = structuredContent;
  return result;
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
