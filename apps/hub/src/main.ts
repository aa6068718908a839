import { CONFIG_EXIT_CODE, createLogger, exitAfterFlush, loadConfigOrExit, loadHubConfig } from '@mcp-hub/shared';
import { AdminTokenFileError, adminTokenFromFile } from './admin-token-file.js';
import { buildHub } from './app.js';

const SHUTDOWN_DEADLINE_MS = 10_000;

const config = loadConfigOrExit('hub', () => loadHubConfig());

const log = createLogger({ service: 'hub', level: config.logLevel });

/** HUB_ADMIN_TOKEN, or (auth `token` without it) the token kept in HUB_ADMIN_TOKEN_FILE, made on first start. */
function adminToken(): string | undefined {
  if (config.auth === 'none' || config.adminToken !== undefined) return config.adminToken;
  try {
    return adminTokenFromFile(config.adminTokenFile, log);
  } catch (err) {
    if (!(err instanceof AdminTokenFileError)) throw err;
    console.error(`hub: HUB_ADMIN_TOKEN_FILE: ${err.message}`);
    process.exit(CONFIG_EXIT_CODE);
  }
}

const app = await buildHub({ config: Object.freeze({ ...config, adminToken: adminToken() }), log });

let closing: Promise<void> | undefined;
function shutdown(signal: string): Promise<void> {
  closing ??= (async () => {
    log.info({ event: 'hub.stopping', signal }, 'hub stopping');
    const deadline = setTimeout(() => {
      log.error({ event: 'hub.stop_timeout' }, 'shutdown deadline passed; exiting');
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS);
    deadline.unref();
    try {
      await app.close();
    } catch (err) {
      log.error({ event: 'hub.stop_failed', err }, 'error while stopping');
    }
    log.info({ event: 'hub.stopped' }, 'hub stopped');
    exitAfterFlush(log, 0);
  })();
  return closing;
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));

try {
  const address = await app.listen({ host: config.host, port: config.port });
  log.info({ event: 'hub.listening', address, host: config.host, port: config.port }, 'hub listening');
} catch (err) {
  log.fatal({ event: 'hub.listen_failed', err }, 'hub could not listen');
  exitAfterFlush(log, 1);
}
