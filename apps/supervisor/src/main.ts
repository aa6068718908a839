import { existsSync } from 'node:fs';
import { ConfigError, createLogger, loadSupervisorConfig } from '@mcp-hub/shared';
import { createSupervisor } from './supervisor.js';

if (existsSync('.env')) process.loadEnvFile('.env');

let config: ReturnType<typeof loadSupervisorConfig>;
try {
  config = loadSupervisorConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(`supervisor: ${error.message}`);
    process.exit(2);
  }
  throw error;
}

const log = createLogger({ service: 'supervisor', level: config.logLevel });
if (!config.enabled) {
  log.info({ event: 'supervisor.disabled' }, 'MCP_SUPERVISOR_ENABLED is false; nothing to do');
  process.exit(0);
}

const supervisor = createSupervisor({ config, log });
let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ event: 'supervisor.signal', signal }, 'shutting down');
  await supervisor.close();
  log.flush();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));

try {
  await supervisor.start();
} catch (err) {
  log.fatal({ event: 'supervisor.start_failed', err }, 'supervisor could not start');
  await supervisor.close();
  log.flush();
  process.exit(1);
}
