export { SSE_KEEP_ALIVE_INTERVAL_MS } from '@mcp-hub/shared';
export type { ToolProgress, ToolResult, Upstream, UpstreamState } from './upstream/upstream.js';
export {
  DEFAULT_WORKER_OPTIONS,
  startWorker,
  type Worker,
  type WorkerDeps,
  type WorkerOptions,
} from './worker.js';
export { WorkerExitError } from './worker-spec.js';
