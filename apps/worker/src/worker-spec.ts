import { setTimeout as delay } from 'node:timers/promises';
import {
  AppError,
  checkStdioLaunch,
  type Logger,
  openSpecSecrets,
  type RedisKeys,
  type Registry,
  runtimeToHash,
  SEALED_PREFIX,
  SecretBox,
  type ServerSpec,
  WORKER_EXIT_CODES,
  type WorkerConfig,
  type WorkerExitCode,
} from '@mcp-hub/shared';
import type { Redis } from 'ioredis';

/** Why a worker stops for good, with the exit code of the ADR (1: upstream failed, 3: spec missing or disabled). */
export class WorkerExitError extends Error {
  constructor(
    readonly exitCode: WorkerExitCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'WorkerExitError';
  }
}

/** How long writing `last_error` may hold up a failing worker's exit, in milliseconds. */
const LAST_ERROR_WRITE_TIMEOUT_MS = 2_000;

/**
 * KEYS[1] the server's runtime hash; ARGV[1] field, ARGV[2] value.
 * Writes the one field only when the record exists: the supervisor owns the record, and a hash holding
 * nothing but `last_error` would not parse as a runtime record.
 */
const SET_IF_RECORD_EXISTS = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`;

/** Writes the worker's note of why it stops (`last_error`) for its supervisor; a Redis failure is only logged. */
export async function recordLastError(
  redis: Redis,
  keys: RedisKeys,
  serverId: string,
  reason: string,
  log: Logger,
): Promise<void> {
  const [[field, value]] = Object.entries(runtimeToHash({ lastError: reason })) as [[string, string]];
  try {
    await Promise.race([
      redis.eval(SET_IF_RECORD_EXISTS, 1, keys.runtime(serverId), field, value),
      delay(LAST_ERROR_WRITE_TIMEOUT_MS).then(() => {
        throw new Error(`Redis did not answer within ${LAST_ERROR_WRITE_TIMEOUT_MS} ms`);
      }),
    ]);
  } catch (error) {
    log.error({ event: 'worker.last_error_failed', err: error }, 'could not record last_error');
  }
}

/**
 * The operator's stdio policy, checked again on the spec as read from Redis: the hub checks every write, but
 * whoever can write to Redis directly (a local user of an open Redis, an older hub) bypasses the hub. Throws
 * WorkerExitError(3): the spec itself is refused, so restarting will not help until it changes.
 */
async function checkStdioPolicy(config: Readonly<WorkerConfig>, spec: ServerSpec): Promise<void> {
  if (spec.transport !== 'stdio') return;
  const policy = {
    allowedCommands: config.stdioAllowedCommands,
    allowedEnv: config.stdioAllowedEnv,
    cwdRoots: config.stdioCwdRoots,
  };
  try {
    await checkStdioLaunch(policy, spec.config);
  } catch (error) {
    if (!(error instanceof AppError)) throw error;
    throw new WorkerExitError(
      WORKER_EXIT_CODES.specUnavailable,
      `the stdio policy of this worker refuses server "${spec.id}": ${error.message}`,
      { cause: error },
    );
  }
}

export interface SpecSource {
  config: Readonly<WorkerConfig>;
  registry: Registry;
  redis: Redis;
  keys: RedisKeys;
  log: Logger;
}

/**
 * The worker's server spec, ready to run: registered, enabled, its sealed secrets opened, and allowed by this
 * worker's stdio policy. Throws WorkerExitError(3) otherwise (for a policy refusal, after writing `last_error`).
 */
export async function loadServerSpec({ config, registry, redis, keys, log }: SpecSource): Promise<ServerSpec> {
  const serverId = config.serverId;
  const spec = await registry.getServer(serverId);
  if (!spec) throw new WorkerExitError(WORKER_EXIT_CODES.specUnavailable, `server "${serverId}" is not registered`);
  if (!spec.enabled) throw new WorkerExitError(WORKER_EXIT_CODES.specUnavailable, `server "${serverId}" is disabled`);
  // The hub stores `env` and `headers` values sealed when HUB_SECRET_KEY is set; the upstream needs them open.
  let serverSpec: ServerSpec;
  try {
    serverSpec = config.secretKey ? openSpecSecrets(spec, new SecretBox(config.secretKey)) : spec;
    if (!config.secretKey && JSON.stringify(spec.config).includes(SEALED_PREFIX)) {
      throw new WorkerExitError(
        WORKER_EXIT_CODES.specUnavailable,
        `server "${serverId}" has encrypted secrets but HUB_SECRET_KEY is not set for its worker`,
      );
    }
  } catch (error) {
    if (error instanceof WorkerExitError) throw error;
    throw new WorkerExitError(WORKER_EXIT_CODES.specUnavailable, (error as Error).message);
  }
  try {
    await checkStdioPolicy(config, serverSpec);
  } catch (error) {
    if (error instanceof WorkerExitError) {
      log.error(
        { event: 'worker.stdio_refused', reason: error.message, exit_code: error.exitCode },
        'the stdio policy refuses this server',
      );
      await recordLastError(redis, keys, serverId, error.message, log);
    }
    throw error;
  }
  return serverSpec;
}
