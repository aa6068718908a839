import type { Logger } from '@mcp-hub/shared';
import { type ClientChannel, type ClientRequestMethod, missingCapability } from '@mcp-hub/shared/mcp-front/client';
import { ProtocolError, ProtocolErrorCode } from '@modelcontextprotocol/server';

/** JSON-RPC "method not found": what a client without the capability answers. */
const METHOD_NOT_FOUND = -32_601;

/**
 * Finds the downstream client that must answer a request the upstream sent its client. A shared upstream
 * serves many clients, and nothing on a stdio wire says which call a request belongs to, so:
 * - while calls run for exactly one downstream owner, that owner's newest call answers (on its own stream);
 * - while calls of several owners run, the request is ambiguous and refused (a server that asks its client
 *   mid-call should run with `sessionMode: per-client`);
 * - outside any call, the only open 2025 session that declared the capability answers, else it is refused.
 * A client that lacks the capability is never asked: the upstream gets "method not found", as that client
 * would have answered.
 */
export class ClientRequestRouter {
  private readonly calls = new Map<ClientChannel, number>();
  private readonly sessions = new Set<ClientChannel>();
  private sequence = 0;

  constructor(
    private readonly log: Logger,
    /** Told which owner a request went to (the fan-out routes a URL elicitation's completion there). */
    private readonly onRouted?: (
      method: ClientRequestMethod,
      params: Record<string, unknown> | undefined,
      owner: string,
    ) => void,
  ) {}

  /** A downstream call runs on behalf of `channel` until the returned function is called. */
  enterCall(channel: ClientChannel): () => void {
    this.calls.set(channel, ++this.sequence);
    return () => {
      this.calls.delete(channel);
    };
  }

  /** An open 2025 session, asked for requests outside any call, until the returned function is called. */
  openSession(channel: ClientChannel): () => void {
    this.sessions.add(channel);
    return () => {
      this.sessions.delete(channel);
    };
  }

  /** Answers one request of the upstream through the right downstream client. */
  route = async (
    method: ClientRequestMethod,
    params: Record<string, unknown> | undefined,
    signal: AbortSignal,
  ): Promise<Record<string, unknown>> => {
    const channel = this.choose(method, params);
    this.onRouted?.(method, params, channel.owner);
    const started = performance.now();
    try {
      const result = await channel.ask(method, params, signal);
      this.log.info(
        { event: 'mcp.client_request', method, owner: channel.owner, latency: since(started) },
        'a downstream client answered the upstream',
      );
      return result;
    } catch (error) {
      this.log.info(
        {
          event: 'mcp.client_request.failed',
          method,
          owner: channel.owner,
          error: error instanceof Error ? error.message : String(error),
        },
        'a request of the upstream to its client failed',
      );
      if (ProtocolError.isInstance(error)) throw error;
      throw new ProtocolError(ProtocolErrorCode.InternalError, 'the client did not answer');
    }
  };

  private choose(method: ClientRequestMethod, params: Record<string, unknown> | undefined): ClientChannel {
    const owners = new Map<string, { channel: ClientChannel; seq: number }>();
    for (const [channel, seq] of this.calls) {
      const newest = owners.get(channel.owner);
      if (!newest || newest.seq < seq) owners.set(channel.owner, { channel, seq });
    }
    let channel: ClientChannel | undefined;
    if (owners.size === 1) channel = [...owners.values()][0]?.channel;
    else if (owners.size > 1) {
      return this.refuse(method, ProtocolErrorCode.InvalidRequest, 'ambiguous', {
        message: `${owners.size} clients have calls in flight on this shared upstream session; cannot tell which one asks`,
        owners: owners.size,
      });
    } else {
      const able = [...this.sessions].filter((s) => !missingCapability(method, params, s.capabilities()));
      if (able.length !== 1) {
        return this.refuse(method, ProtocolErrorCode.InvalidRequest, 'no_client', {
          message:
            able.length === 0
              ? 'no connected client can answer this request'
              : `${able.length} connected clients could answer this request outside any call; cannot tell which`,
        });
      }
      channel = able[0];
    }
    if (!channel) return this.refuse(method, ProtocolErrorCode.InvalidRequest, 'no_client', { message: 'no client' });
    const missing = missingCapability(method, params, channel.capabilities());
    if (missing) {
      return this.refuse(method, METHOD_NOT_FOUND, 'capability_missing', {
        message: `the calling client does not support ${missing}`,
        owner: channel.owner,
      });
    }
    return channel;
  }

  private refuse(
    method: ClientRequestMethod,
    code: number,
    reason: string,
    fields: { message: string } & Record<string, unknown>,
  ): never {
    this.log.warn(
      { event: 'mcp.client_request.refused', method, reason, ...fields },
      'a request of the upstream was refused',
    );
    throw new ProtocolError(code, fields.message, { reason });
  }
}

function since(started: number): number {
  return Math.round((performance.now() - started) * 100) / 100;
}

export { type ClientChannel, missingCapability };
