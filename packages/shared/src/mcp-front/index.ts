export { BoundedEventStore, DEFAULT_MAX_EVENTS } from './event-store.js';
export {
  createMcpFront,
  DEFAULT_MAX_SESSIONS,
  DEFAULT_MAX_SESSIONS_PER_CALLER,
  DEFAULT_MAX_SESSIONS_PER_PROJECT,
  type McpEra,
  type McpFront,
  type McpFrontOptions,
  type McpFrontServerFactory,
  type McpServerContext,
} from './mcp-front.js';
export { type ProgressUpdate, progressSender } from './progress.js';
