import {
  createLogger,
  exitAfterFlush,
  loadConfigOrExit,
  loadWorkerConfig,
  WORKER_DRAIN_QUIET_MS,
  WORKER_DRAIN_SIGNAL,
  WORKER_EXIT_CODES,
} from '@mcp-hub/shared';
import { startWorker, type Worker } from './worker.js';
import { WorkerExitError } from './worker-spec.js';

/** Past this, shutdown gives up waiting and exits; the stdio child's own escalation takes at most ~5 s. */
const SHUTDOWN_DEADLINE_MS = 10_000;

// The supervisor passes the whole environment: no .env file is read here.
const config = loadConfigOrExit('worker', () => loadWorkerConfig(), false);

const log = createLogger({
  service: 'worker',
  level: config.logLevel,
  base: { server: config.serverId, instance: config.instance },
});

function exit(code: number): void {
  exitAfterFlush(log, code);
}

const started: Promise<Worker> = startWorker({
  config,
  log,
  onFatal: (error) => void shutdown('fatal', error.exitCode),
});

let stopping: Promise<void> | undefined;
function shutdown(reason: string, code: number, drain = false): Promise<void> {
  stopping ??= (async () => {
    log.info({ event: 'worker.shutdown', reason, exit_code: code }, 'worker shutting down');
    let deadlineMs = SHUTDOWN_DEADLINE_MS;
    const onDeadline = () => {
      log.error({ event: 'worker.stop_timeout', deadline_ms: deadlineMs }, 'shutdown deadline passed');
      exit(code === WORKER_EXIT_CODES.ok ? WORKER_EXIT_CODES.upstreamFailed : code);
    };
    let deadline = setTimeout(onDeadline, deadlineMs);
    deadline.unref();
    try {
      const worker = await started.catch(() => undefined);
      if (drain && worker) {
        // A draining worker waits for its calls as long as they may run (the call runner ends them by then).
        clearTimeout(deadline);
        deadlineMs += worker.spec.timeoutMs + WORKER_DRAIN_QUIET_MS;
        deadline = setTimeout(onDeadline, deadlineMs);
        deadline.unref();
      }
      await worker?.close(drain ? { drain: { quietMs: WORKER_DRAIN_QUIET_MS } } : undefined);
    } catch (error) {
      log.error({ event: 'worker.stop_failed', err: error }, 'error while stopping');
    }
    exit(code);
  })();
  return stopping;
}

process.on('SIGTERM', () => void shutdown('SIGTERM', WORKER_EXIT_CODES.ok));
process.on('SIGINT', () => void shutdown('SIGINT', WORKER_EXIT_CODES.ok));
// Shutdown is memoized: a SIGTERM during a drain changes nothing; the supervisor's SIGKILL after its grace
// (the server's timeoutMs and more) bounds the drain.
process.on(WORKER_DRAIN_SIGNAL, () => void shutdown('drain', WORKER_EXIT_CODES.ok, true));
process.on('uncaughtException', (error) => {
  log.fatal({ event: 'worker.crashed', err: error }, 'uncaught exception');
  void shutdown('uncaughtException', WORKER_EXIT_CODES.upstreamFailed);
});
process.on('unhandledRejection', (error) => {
  log.fatal({ event: 'worker.crashed', err: error }, 'unhandled rejection');
  void shutdown('unhandledRejection', WORKER_EXIT_CODES.upstreamFailed);
});

try {
  await started;
} catch (error) {
  if (error instanceof WorkerExitError) {
    log.error({ event: 'worker.not_started', reason: error.message, exit_code: error.exitCode }, 'worker not started');
    exit(error.exitCode);
  } else if ((error as NodeJS.ErrnoException | undefined)?.code === 'EADDRINUSE') {
    // Another process bound the port after the supervisor claimed it: it starts this server again elsewhere.
    log.warn({ event: 'worker.port_taken', port: config.port, err: error }, 'worker port already in use');
    exit(WORKER_EXIT_CODES.portTaken);
  } else {
    log.fatal({ event: 'worker.start_failed', err: error }, 'worker could not start');
    exit(WORKER_EXIT_CODES.upstreamFailed);
  }
}
