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
  DEFAULT_BODY_LIMIT_BYTES,
  DEFAULT_HUB_PORT,
  DEFAULT_REDIS_URL,
  DEFAULT_STDIO_SANDBOX_DIR,
  type Env,
  type HubConfig,
  LOG_LEVELS,
  type LogLevel,
  loadConfigOrExit,
  loadHubConfig,
  loadSupervisorConfig,
  loadWorkerConfig,
  OPERATOR_ENV_VARS,
  STDIO_SANDBOXES,
  type StdioSandbox,
  type SupervisorConfig,
  type WorkerConfig,
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
  ERROR_STATUS,
  type ErrorBody,
  type ErrorCode,
  errorBody,
  isAppError,
} from './errors.js';
export { createKeys, DEFAULT_KEY_PREFIX, type RedisKeys } from './keys.js';
export { createLogger, type Logger, type LoggerOptions, REDACT_PATHS, type ServiceName } from './logger.js';
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
  type ServerInput,
  ServerInputSchema,
  type ServerSpec,
  type ServerSpecBody,
  ServerSpecSchema,
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
  openSpecSecrets,
  SEALED_PREFIX,
  SecretBox,
  type SecretKeySource,
  SPEC_SECRET_FIELDS,
  sealSpecSecrets,
} from './secrets.js';
export { drained } from './streams.js';
export { describeProblems, type FieldProblem, parseOrThrow, zodProblems } from './validation.js';
export {
  UPSTREAM_STATUSES,
  type UpstreamStatus,
  WORKER_EXIT_CODES,
  type WorkerExitCode,
  type WorkerHealth,
  WorkerHealthSchema,
} from './worker-contract.js';
