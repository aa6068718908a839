export {
  CLIENT_REQUEST_METHODS,
  type ClientChannel,
  type ClientRequestMethod,
  missingCapability,
} from './client-channel.js';
export { BoundedEventStore, DEFAULT_MAX_EVENTS } from './event-store.js';
export { type FlowOperation, type FlowOptions, InputFlows, type RoundNotifier } from './input-flows.js';
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
export { OrderedClient } from './ordered-client.js';
export { type ProgressUpdate, progressSender } from './progress.js';
