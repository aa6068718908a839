import type { ClientCapabilities } from '@modelcontextprotocol/server';

/** The requests an MCP server may send its client; a proxy passes each on to a downstream client. */
export const CLIENT_REQUEST_METHODS = ['sampling/createMessage', 'elicitation/create', 'roots/list'] as const;
export type ClientRequestMethod = (typeof CLIENT_REQUEST_METHODS)[number];

/** A downstream client that can be asked something on behalf of the server behind a proxy. */
export interface ClientChannel {
  /** The downstream session (2025) or request flow (2026) the channel belongs to. */
  readonly owner: string;
  /** What the client said it can answer (at initialize, or in the request's envelope); undefined: nothing. */
  capabilities(): ClientCapabilities | undefined;
  ask(
    method: ClientRequestMethod,
    params: Record<string, unknown> | undefined,
    signal: AbortSignal,
  ): Promise<Record<string, unknown>>;
}

/** The capability a request needs that the client did not declare, if any. */
export function missingCapability(
  method: ClientRequestMethod,
  params: Record<string, unknown> | undefined,
  capabilities: ClientCapabilities | undefined,
): string | undefined {
  if (method === 'sampling/createMessage') {
    if (!capabilities?.sampling) return 'sampling';
    if ((params?.tools !== undefined || params?.toolChoice !== undefined) && !capabilities.sampling.tools) {
      return 'sampling.tools';
    }
    return undefined;
  }
  if (method === 'elicitation/create') {
    const elicitation = capabilities?.elicitation as { form?: unknown; url?: unknown } | undefined;
    if (!elicitation) return 'elicitation';
    // An empty `elicitation: {}` is the 2025-06 form of "form mode".
    if (params?.mode === 'url') return elicitation.url ? undefined : 'elicitation.url';
    return elicitation.form || elicitation.url === undefined ? undefined : 'elicitation.form';
  }
  return capabilities?.roots ? undefined : 'roots';
}
