import { createLogger, exitAfterFlush, loadConfigOrExit, loadSupervisorConfig } from '@mcp-hub/shared';
import { createSupervisor } from './supervisor.js';

const config = loadConfigOrExit('supervisor', () => loadSupervisorConfig());

const log = createLogger({ service: 'supervisor', level: config.logLevel });
if (config.enabled) await run();
else {
  log.info({ event: 'supervisor.disabled' }, 'MCP_SUPERVISOR_ENABLED is false; nothing to do');
  exitAfterFlush(log, 0);
}

async function run(): Promise<void> {
  const supervisor = createSupervisor({ config, log });
  let stopping = false;
  async function shutdown(signal: string): Promise<void> {
    if (stopping) return;
    stopping = true;
    log.info({ event: 'supervisor.signal', signal }, 'shutting down');
    await supervisor.close();
    exitAfterFlush(log, 0);
  }
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  try {
    await supervisor.start();
  } catch (err) {
    log.fatal({ event: 'supervisor.start_failed', err }, 'supervisor could not start');
    await supervisor.close();
    exitAfterFlush(log, 1);
  }
}
