export { BoundedEventStore, DEFAULT_MAX_EVENTS } from './event-store.js';
export {
  createMcpFront,
  type McpEra,
  type McpFront,
  type McpFrontOptions,
  type McpFrontServerFactory,
  type McpServerContext,
} from './mcp-front.js';
export { type ProgressUpdate, progressSender } from './progress.js';
