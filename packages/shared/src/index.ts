export { backoffMs, jitteredBackoffMs } from './backoff.js';
export { canonicalJson } from './canonical-json.js';
export {
  ANY_FURTHER_ARGS,
  type CommandAllowEntry,
  type CommandAllowList,
  CommandAllowListError,
  type CommandMatch,
  type CommandMismatch,
  compileCommandAllowList,
  matchCommandLine,
} from './command-allow-list.js';
export {
  CONFIG_EXIT_CODE,
  ConfigError,
  DEFAULT_REDIS_URL,
  type Env,
  LOG_LEVELS,
  type LogLevel,
  loadConfigOrExit,
} from './config.js';
export {
  ENV_HOOK_EXCEPTIONS,
  ENV_HOOK_PATTERNS,
  ENV_NAME_RE,
  isEnvHook,
  isForbiddenEnvName,
  matchesEnvPattern,
} from './env-hooks.js';
export {
  AppError,
  ERROR_CODES,
  ERROR_HEADERS,
  ERROR_STATUS,
  type ErrorBody,
  type ErrorCode,
  errorBody,
  errorHeaders,
  isAppError,
  UNAVAILABLE_RETRY_AFTER_S,
} from './errors.js';
export { registerErrorHandling, toAppError } from './http-errors.js';
export {
  DEFAULT_ADMIN_TOKEN_FILE,
  DEFAULT_BODY_LIMIT_BYTES,
  DEFAULT_HUB_PORT,
  DEFAULT_TOOL_VALIDATORS_MAX,
  HUB_AUTH_MODES,
  type HubAuthMode,
  type HubConfig,
  isLoopbackHost,
  loadHubConfig,
} from './hub-config.js';
export { isRequestId, REQUEST_ID_HEADER, REQUEST_ID_RE, requestIdFrom, SLUG_RE } from './ids.js';
export { createKeys, DEFAULT_KEY_PREFIX, type RedisKeys } from './keys.js';
export { createLogger, type Logger, type LoggerOptions, REDACT_PATHS, type ServiceName } from './logger.js';
export { OPERATOR_ENV_VARS } from './operator-env.js';
export { closeRedis, createRedis, defineScripts, type RedisRole, type ScriptDefinition } from './redis.js';
export {
  type InvalidRecordHandler,
  parseEvent,
  Registry,
  type UpsertMode,
  type UpsertResult,
} from './registry.js';
export {
  ARG_LOCATIONS,
  DEFAULT_TOOL_TIMEOUT_MS,
  HTTP_METHODS,
  type HubEvent,
  HubEventSchema,
  JsonObjectSchema,
  PREFIX_MODES,
  type PrefixMode,
  type PublicRuntime,
  PublicRuntimeSchema,
  publicRuntime,
  RemoteConfigSchema,
  RestConfigSchema,
  type RestTool,
  RestToolSchema,
  RUNTIME_STATUSES,
  type RuntimeRecord,
  RuntimeRecordSchema,
  type RuntimeStatus,
  runtimeFromHash,
  runtimeToHash,
  SESSION_MODES,
  type ServerInput,
  ServerInputSchema,
  type ServerSpec,
  type ServerSpecBody,
  ServerSpecSchema,
  type SessionMode,
  StdioConfigSchema,
  specBodyFromInput,
  type Tool,
  type ToolInput,
  ToolInputSchema,
  ToolSchema,
  TRANSPORTS,
  type Transport,
} from './schemas.js';
export {
  isSealed,
  keepMaskedSecrets,
  MASK,
  maskSpecSecrets,
  maskUrlCredentials,
  moveUrlCredentials,
  openSpecSecrets,
  SEALED_PREFIX,
  SecretBox,
  type SecretKeySource,
  SPEC_SECRET_FIELDS,
  sealSpecSecrets,
} from './secrets.js';
export { checkStdioLaunch, type StdioLaunch, type StdioPolicy } from './stdio-policy.js';
export { drained } from './streams.js';
export {
  loadSupervisorConfig,
  type SupervisorConfig,
  WORKER_INHERITED_ENV_PREFIXES,
  WORKER_INHERITED_ENV_VARS,
  workerInheritedEnv,
} from './supervisor-config.js';
export {
  boundToolList,
  jsonBytes,
  type RefusedTool,
  TOOL_LIST_MAX_BYTES,
  TOOL_MAX_BYTES,
  TOOL_SCHEMA_MAX_BYTES,
  TOOLS_MAX_PER_SERVER,
} from './tool-limits.js';
export { describeProblems, type FieldProblem, parseOrThrow, zodProblems } from './validation.js';
export {
  DEFAULT_STDIO_SANDBOX_DIR,
  loadWorkerConfig,
  STDIO_SANDBOXES,
  type StdioSandbox,
  type WorkerConfig,
} from './worker-config.js';
export {
  keyCaller,
  MCP_REQUEST_HEADERS,
  MESSAGES_PATH_HEADER,
  MESSAGES_PATH_RE,
  type ParsedToolCallEvent,
  parseToolCallFrame,
  TOOL_CALL_EVENTS,
  type ToolCallEventName,
  type ToolCallEvents,
  type ToolErrorEvent,
  ToolErrorEventSchema,
  type ToolProgressEvent,
  ToolProgressEventSchema,
  type ToolResultEvent,
  ToolResultEventSchema,
  toolCallFrame,
  UPSTREAM_STATUSES,
  type UpstreamStatus,
  WORKER_CALLER_HEADER,
  WORKER_CALLER_RE,
  WORKER_DRAIN_QUIET_MS,
  WORKER_DRAIN_SIGNAL,
  WORKER_EXIT_CODES,
  WORKER_ROUTES,
  WORKER_TOKEN_BYTES,
  WORKER_TOKEN_HEADER,
  type WorkerExitCode,
  type WorkerHealth,
  WorkerHealthSchema,
  type WorkerSessionsCloseBody,
  WorkerSessionsCloseBodySchema,
  WorkerSessionsClosedSchema,
  workerSpecDigest,
  workerToolPath,
} from './worker-contract.js';
