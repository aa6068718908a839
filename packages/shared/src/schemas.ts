import { z } from 'zod';
import { SLUG_RE } from './ids.js';
import { jsonBytes, TOOL_SCHEMA_MAX_BYTES } from './tool-limits.js';

/** Default per-call timeout of a server's tools, in milliseconds. */
export const DEFAULT_TOOL_TIMEOUT_MS = 60_000;
export const MAX_TOOL_TIMEOUT_MS = 3_600_000;

const TOOL_NAME_RE = /^[A-Za-z0-9_.-]{1,128}$/;
const PATH_PARAM_RE = /\{([A-Za-z0-9_.-]+)\}/g;

const slug = (what: string) =>
  z
    .string({ error: `${what} must be a string` })
    .regex(SLUG_RE, `${what} must be 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit`);

const httpUrl = (what: string) =>
  z.string({ error: `${what} must be a string` }).refine((value) => {
    try {
      const url = new URL(value);
      return url.protocol === 'http:' || url.protocol === 'https:';
    } catch {
      return false;
    }
  }, `${what} must be an absolute http:// or https:// URL`);

const stringMap = (what: string) =>
  z.record(z.string(), z.string({ error: `every value of ${what} must be a string` }), {
    error: `${what} must be an object of strings`,
  });

/** A JSON Schema object describing a tool's arguments; MCP requires `type: "object"`. */
export const JsonObjectSchema = z.looseObject({
  type: z.literal('object', { error: 'inputSchema.type must be "object"' }),
});

/**
 * How a worker shares its MCP upstream among downstream clients: `shared` (one upstream session for all) or
 * `per-client` (one upstream session, for stdio one child process, per downstream session or principal), for
 * servers that ask their client things mid-call or keep per-client state. See docs/adr/0011.
 */
export const SESSION_MODES = ['shared', 'per-client'] as const;
export type SessionMode = (typeof SESSION_MODES)[number];
const sessionMode = z
  .enum(SESSION_MODES, { error: `sessionMode must be one of ${SESSION_MODES.join(', ')}` })
  .optional();

export const StdioConfigSchema = z.strictObject({
  command: z.string({ error: 'command must be a string' }).min(1, 'command must not be empty'),
  args: z.array(z.string({ error: 'every arg must be a string' })).default([]),
  env: stringMap('env').default({}),
  cwd: z.string().min(1).optional(),
  sessionMode,
});

export const RemoteConfigSchema = z.strictObject({
  url: httpUrl('url'),
  headers: stringMap('headers').default({}),
  sessionMode,
});

export const ARG_LOCATIONS = ['path', 'query', 'header', 'body'] as const;
export const HTTP_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

export const RestToolSchema = z
  .strictObject({
    name: z.string().regex(TOOL_NAME_RE, 'tool name must be 1-128 characters of A-Z, a-z, 0-9, _, . or -'),
    title: z.string().optional(),
    description: z.string().default(''),
    method: z.enum(HTTP_METHODS, { error: `method must be one of ${HTTP_METHODS.join(', ')}` }),
    path: z.string().startsWith('/', 'path must start with "/"'),
    inputSchema: JsonObjectSchema.default({ type: 'object' }),
    /** Where each argument goes; unlisted arguments go to the path if named there, else query (GET, DELETE) or body. */
    argLocations: z.record(z.string(), z.enum(ARG_LOCATIONS)).default({}),
  })
  .superRefine((tool, ctx) => {
    for (const [, param] of tool.path.matchAll(PATH_PARAM_RE)) {
      const where = param === undefined ? undefined : tool.argLocations[param];
      if (where !== undefined && where !== 'path') {
        ctx.addIssue({
          code: 'custom',
          path: ['argLocations', param as string],
          message: `"${param}" is a placeholder in path, so its location must be "path"`,
        });
      }
    }
  });

export const RestConfigSchema = z
  .strictObject({
    baseUrl: httpUrl('baseUrl'),
    headers: stringMap('headers').default({}),
    tools: z.array(RestToolSchema).min(1, 'a rest server needs at least one tool'),
  })
  .superRefine((config, ctx) => {
    const seen = new Set<string>();
    config.tools.forEach((tool, index) => {
      if (seen.has(tool.name)) {
        ctx.addIssue({ code: 'custom', path: ['tools', index, 'name'], message: `duplicate tool name "${tool.name}"` });
      }
      seen.add(tool.name);
    });
  });

/**
 * What a key may write for a REST server: each tool's inputSchema at most TOOL_SCHEMA_MAX_BYTES, the most the hub
 * compiles. Checked on input only, so that a spec stored before the limit still reads back.
 */
const RestConfigInputSchema = RestConfigSchema.superRefine((config, ctx) => {
  config.tools.forEach((tool, index) => {
    const bytes = jsonBytes(tool.inputSchema);
    if (bytes > TOOL_SCHEMA_MAX_BYTES) {
      ctx.addIssue({
        code: 'custom',
        path: ['tools', index, 'inputSchema'],
        message: `inputSchema is ${bytes} bytes; at most ${TOOL_SCHEMA_MAX_BYTES} are allowed`,
      });
    }
  });
});

export const TRANSPORTS = ['stdio', 'sse', 'streamable-http', 'rest'] as const;
export type Transport = (typeof TRANSPORTS)[number];

/** Fields an operator may send for any transport. Read-only fields are accepted so that GET → PUT round-trips. */
/**
 * How the aggregated `/mcp` names a server's tools and prompts: `always` `<namespace><separator><name>`;
 * `conditional` the bare name unless another visible server has one of that name; `never` the bare name,
 * a clash answering an ambiguity error naming the servers.
 */
export const PREFIX_MODES = ['always', 'conditional', 'never'] as const;
export type PrefixMode = (typeof PREFIX_MODES)[number];

const commonInput = {
  id: slug('id'),
  name: z.string().min(1).max(200).optional(),
  description: z.string().max(2000).optional(),
  namespace: slug('namespace').optional(),
  /** The project that owns the server (set from the API key; the admin token names it). */
  project: slug('project').optional(),
  tags: z.array(z.string().min(1).max(64)).max(32).default([]),
  enabled: z.boolean({ error: 'enabled must be a boolean' }).default(true),
  timeoutMs: z
    .number({ error: 'timeoutMs must be a number' })
    .int()
    .min(1)
    .max(MAX_TOOL_TIMEOUT_MS)
    .default(DEFAULT_TOOL_TIMEOUT_MS),
  /** Optional so specs stored before it keep parsing; absent means `always`. */
  prefixMode: z.enum(PREFIX_MODES, { error: `prefixMode must be one of ${PREFIX_MODES.join(', ')}` }).optional(),
  /** Optimistic concurrency: when given, the write fails with revision_conflict unless it matches. */
  rev: z.number().int().nonnegative().optional(),
  createdAt: z.string().optional(),
  updatedAt: z.string().optional(),
  // Read-only parts of GET's answer, accepted (and ignored) so that a GET can be sent back as a PUT.
  runtime: z.unknown().optional(),
  failures: z.unknown().optional(),
};

const transportError = { error: `transport must be one of ${TRANSPORTS.join(', ')}` };

export const ServerInputSchema = z.discriminatedUnion(
  'transport',
  [
    z.strictObject({ ...commonInput, transport: z.literal('stdio'), config: StdioConfigSchema }),
    z.strictObject({ ...commonInput, transport: z.literal('sse'), config: RemoteConfigSchema }),
    z.strictObject({ ...commonInput, transport: z.literal('streamable-http'), config: RemoteConfigSchema }),
    z.strictObject({ ...commonInput, transport: z.literal('rest'), config: RestConfigInputSchema }),
  ],
  transportError,
);
export type ServerInput = z.input<typeof ServerInputSchema>;
type ParsedServerInput = z.output<typeof ServerInputSchema>;

const {
  rev: _rev,
  createdAt: _createdAt,
  updatedAt: _updatedAt,
  runtime: _runtime,
  failures: _failures,
  ...writableInput
} = commonInput;
const storedCommon = {
  ...writableInput,
  name: z.string(),
  namespace: z.string(),
  rev: z.number().int().nonnegative(),
  createdAt: z.string(),
  updatedAt: z.string(),
};

/** A server spec as stored in `mcp:servers` and returned by the API. */
export const ServerSpecSchema = z.discriminatedUnion('transport', [
  z.object({ ...storedCommon, transport: z.literal('stdio'), config: StdioConfigSchema }),
  z.object({ ...storedCommon, transport: z.literal('sse'), config: RemoteConfigSchema }),
  z.object({ ...storedCommon, transport: z.literal('streamable-http'), config: RemoteConfigSchema }),
  z.object({ ...storedCommon, transport: z.literal('rest'), config: RestConfigSchema }),
]);
export type ServerSpec = z.output<typeof ServerSpecSchema>;
export type RestTool = z.output<typeof RestToolSchema>;

/** The spec body the registry writes; `rev`, `createdAt` and `updatedAt` are set atomically in Redis. */
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
export type ServerSpecBody = DistributiveOmit<ServerSpec, 'rev' | 'createdAt' | 'updatedAt'>;

/** Applies defaults that depend on other fields (name and namespace from id) and drops read-only fields. */
export function specBodyFromInput(input: ParsedServerInput): ServerSpecBody {
  const { rev: _rev, createdAt: _c, updatedAt: _u, runtime: _r, failures: _f, ...rest } = input;
  return { ...rest, name: input.name ?? input.id, namespace: input.namespace ?? input.id };
}

/** A tool as written to `mcp:tools:{id}` by a worker after `tools/list`. */
export const ToolInputSchema = z.looseObject({
  name: z.string().min(1),
  title: z.string().optional(),
  description: z.string().optional(),
  inputSchema: JsonObjectSchema,
  outputSchema: z.looseObject({}).optional(),
  annotations: z.looseObject({}).optional(),
});
export type ToolInput = z.input<typeof ToolInputSchema>;

export const ToolSchema = ToolInputSchema.extend({
  rev: z.number().int().nonnegative(),
  digest: z.string(),
});
export type Tool = z.output<typeof ToolSchema>;

export const RUNTIME_STATUSES = [
  'pending',
  'starting',
  'running',
  'unhealthy',
  'restarting',
  'backoff',
  'stopping',
  'stopped',
] as const;
export type RuntimeStatus = (typeof RUNTIME_STATUSES)[number];

const optionalInt = z.coerce.number().int().optional();

/**
 * The runtime record of a server's worker. Stored as the Redis hash `mcp:server_runtime:{id}` with the
 * snake_case field names of the design; exposed in camelCase.
 */
export const RuntimeRecordSchema = z.object({
  status: z.enum(RUNTIME_STATUSES),
  pid: optionalInt,
  host: z.string().optional(),
  port: optionalInt,
  supervisor: z.string().optional(),
  instance: z.string().optional(),
  startedAt: z.string().optional(),
  lastHeartbeat: z.string().optional(),
  restarts: z.coerce.number().int().nonnegative().default(0),
  lastError: z.string().optional(),
  specRev: optionalInt,
  restartRequests: optionalInt,
  nextAttemptAt: z.string().optional(),
  reason: z.string().optional(),
  /**
   * The credential the worker of this run demands on every request (WORKER_TOKEN_HEADER). Only the hub and
   * the supervisor read it; it never leaves them (answers show `publicRuntime`, logs redact it).
   */
  workerToken: z.string().optional(),
});
export type RuntimeRecord = z.output<typeof RuntimeRecordSchema>;

/** How many failures of a server are kept (newest first); older ones are dropped. */
export const MAX_FAILURES = 20;
/** Characters of a failure's error text kept. */
export const MAX_FAILURE_ERROR_CHARS = 500;

/** Why a worker run failed, as the failure history names it. */
export const FAILURE_REASONS = ['exited', 'start_timeout', 'unhealthy', 'no_free_port'] as const;

/**
 * One failed run of a server's worker, as the supervisor recorded it (`GET /api/servers/:id/failures`): when,
 * why, the exit code or signal, the error text (the worker's own note when it left one: the stdio server's last
 * stderr line, a refused spec, a failed connect), and which run it was.
 */
export const FailureRecordSchema = z.object({
  at: z.string(),
  reason: z.enum(FAILURE_REASONS),
  error: z.string().max(MAX_FAILURE_ERROR_CHARS).optional(),
  code: z.number().int().nullable().optional(),
  signal: z.string().nullable().optional(),
  pid: z.number().int().optional(),
  instance: z.string().optional(),
  restarts: z.number().int().nonnegative().optional(),
});
export type FailureRecord = z.output<typeof FailureRecordSchema>;

const RUNTIME_FIELDS: Record<keyof RuntimeRecord, string> = {
  status: 'status',
  pid: 'pid',
  host: 'host',
  port: 'port',
  supervisor: 'supervisor',
  instance: 'instance',
  startedAt: 'started_at',
  lastHeartbeat: 'last_heartbeat',
  restarts: 'restarts',
  lastError: 'last_error',
  specRev: 'spec_rev',
  restartRequests: 'restart_requests',
  nextAttemptAt: 'next_attempt_at',
  reason: 'reason',
  workerToken: 'worker_token',
};

/** A runtime record as API answers show it: without the worker's credential. */
export const PublicRuntimeSchema = RuntimeRecordSchema.omit({ workerToken: true });
export type PublicRuntime = z.output<typeof PublicRuntimeSchema>;

/** The record without its worker credential, for answers and logs. */
export function publicRuntime(record: RuntimeRecord): PublicRuntime {
  const { workerToken: _secret, ...rest } = record;
  return rest;
}

/** Hash fields (snake_case strings) of a runtime record; undefined fields are left out. */
export function runtimeToHash(record: Partial<RuntimeRecord>): Record<string, string> {
  const hash: Record<string, string> = {};
  for (const [key, field] of Object.entries(RUNTIME_FIELDS)) {
    const value = record[key as keyof RuntimeRecord];
    if (value !== undefined) hash[field] = String(value);
  }
  return hash;
}

/** Parses a runtime hash read from Redis; null when the hash is empty (no record). */
export function runtimeFromHash(hash: Record<string, string>): RuntimeRecord | null {
  if (Object.keys(hash).length === 0) return null;
  const raw: Record<string, string> = {};
  for (const [key, field] of Object.entries(RUNTIME_FIELDS)) {
    const value = hash[field];
    if (value !== undefined && value !== '') raw[key] = value;
  }
  return RuntimeRecordSchema.parse(raw);
}

export const REGISTRY_EVENT_TYPES = ['server.upsert', 'server.delete', 'server.restart'] as const;
export const TOOL_EVENT_TYPES = ['tool.upsert', 'tool.delete'] as const;

export const HubEventSchema = z.union([
  z.object({ type: z.enum(REGISTRY_EVENT_TYPES), id: z.string(), rev: z.number().int(), ts: z.string() }),
  z.object({
    type: z.enum(TOOL_EVENT_TYPES),
    id: z.string(),
    tool: z.string(),
    rev: z.number().int(),
    ts: z.string(),
  }),
  z.object({ type: z.literal('runtime.update'), id: z.string(), status: z.enum(RUNTIME_STATUSES), ts: z.string() }),
]);
export type HubEvent = z.output<typeof HubEventSchema>;
