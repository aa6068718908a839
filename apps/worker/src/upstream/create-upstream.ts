import type { Logger, ServerSpec } from '@mcp-hub/shared';
import { createRemoteUpstream } from './remote-upstream.js';
import { createRestUpstream } from './rest-upstream.js';
import type { StdioLauncher } from './stdio-sandbox.js';
import { createStdioUpstream } from './stdio-upstream.js';
import type { Upstream } from './upstream.js';

export interface UpstreamTimings {
  /** How long `initialize` may take, per attempt, in milliseconds. */
  connectTimeoutMs: number;
  /** How often a remote session is pinged to notice a silent drop, in milliseconds. */
  pingIntervalMs: number;
  /** First and largest delay between reconnection attempts of a remote upstream, in milliseconds. */
  reconnectBaseDelayMs: number;
  reconnectMaxDelayMs: number;
  /** Largest message taken from an MCP upstream (stdio line, JSON body, SSE event), in bytes. */
  maxMessageBytes: number;
}

/** The upstream adapter for a server's transport (not connected yet). */
export function createUpstream(
  spec: ServerSpec,
  log: Logger,
  timings: UpstreamTimings,
  launcher?: StdioLauncher,
): Upstream {
  if (spec.transport === 'rest') return createRestUpstream({ spec, log });
  const { connectTimeoutMs, maxMessageBytes } = timings;
  if (spec.transport === 'stdio')
    return createStdioUpstream({ spec, log, connectTimeoutMs, maxMessageBytes, launcher });
  return createRemoteUpstream({ spec, log, ...timings });
}
