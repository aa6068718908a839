import type { Logger, ServerSpec, Transport } from '@mcp-hub/shared';
import type { StdioLauncher } from './stdio-sandbox.js';
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

/** Makes the upstream adapter for a server's transport (not connected yet). */
export type UpstreamFactory = (
  spec: ServerSpec,
  log: Logger,
  timings: UpstreamTimings,
  launcher?: StdioLauncher,
) => Upstream;

/**
 * Loads the adapter of one transport only: a worker runs one server, so a stdio or remote server never loads
 * the REST adapter (and undici, a fifth of the worker's code) and a REST server never loads the MCP client.
 */
export async function loadUpstreamFactory(transport: Transport): Promise<UpstreamFactory> {
  const mismatch = (spec: ServerSpec) =>
    new Error(`an upstream factory for ${transport} was asked for a ${spec.transport} server`);
  if (transport === 'rest') {
    const { createRestUpstream } = await import('./rest-upstream.js');
    return (spec, log) => {
      if (spec.transport !== 'rest') throw mismatch(spec);
      return createRestUpstream({ spec, log });
    };
  }
  if (transport === 'stdio') {
    const { createStdioUpstream } = await import('./stdio-upstream.js');
    return (spec, log, { connectTimeoutMs, maxMessageBytes }, launcher) => {
      if (spec.transport !== 'stdio') throw mismatch(spec);
      return createStdioUpstream({ spec, log, connectTimeoutMs, maxMessageBytes, launcher });
    };
  }
  const { createRemoteUpstream } = await import('./remote-upstream.js');
  return (spec, log, timings) => {
    if (spec.transport === 'rest' || spec.transport === 'stdio') throw mismatch(spec);
    return createRemoteUpstream({ spec, log, ...timings });
  };
}
