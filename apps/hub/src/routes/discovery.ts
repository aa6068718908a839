import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import type { ServerSpec } from '@mcp-hub/shared';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { errorResponses } from './schemas.js';

export const CLIENTS = ['claude-desktop', 'claude-code', 'cline', 'cursor', 'vscode'] as const;
export type ClientKind = (typeof CLIENTS)[number];

/** What stands for the caller's API key in generated configuration. */
export const KEY_PLACEHOLDER = '<YOUR_MCP_HUB_API_KEY>';
/** The name of the aggregated entry in generated configuration. */
const AGGREGATE_ENTRY = 'mcp-hub';
/** Protocol revisions the hub's MCP endpoints serve. */
export const SERVED_PROTOCOL_VERSIONS = ['2026-07-28', '2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05'];

export interface DiscoveryRoutesOptions {
  /** The hub's public base URL, when configured; otherwise taken from the request. */
  publicUrl: string | undefined;
  /** The enabled servers this caller may see. */
  visibleServers(req: FastifyRequest): Promise<ServerSpec[]>;
}

interface Entry {
  name: string;
  url: string;
  sseUrl: string;
}

function baseUrl(req: FastifyRequest, publicUrl: string | undefined): string {
  return publicUrl ?? `${req.protocol}://${req.host}`;
}

function entries(base: string, servers: readonly ServerSpec[]): Entry[] {
  return [
    { name: AGGREGATE_ENTRY, url: `${base}/mcp`, sseUrl: `${base}/sse` },
    ...servers.map((s) => ({ name: s.id, url: `${base}/mcp/${s.id}`, sseUrl: `${base}/sse/${s.id}` })),
  ];
}

const AUTH_HEADER = `Bearer ${KEY_PLACEHOLDER}`;

/** The configuration snippet a client reads, pointing it at the hub (each client's own file format). */
export function clientConfig(client: ClientKind, list: readonly Entry[]): Record<string, unknown> {
  const map = <T>(f: (e: Entry) => T) => Object.fromEntries(list.map((e) => [e.name, f(e)]));
  switch (client) {
    case 'claude-desktop':
      // claude_desktop_config.json starts local commands; mcp-remote bridges one to a remote endpoint.
      return {
        mcpServers: map((e) => ({
          command: 'npx',
          // biome-ignore lint/suspicious/noTemplateCurlyInString: mcp-remote expands ${VAR} from env itself
          args: ['-y', 'mcp-remote', e.url, '--header', 'Authorization:${MCP_HUB_AUTH}'],
          env: { MCP_HUB_AUTH: AUTH_HEADER },
        })),
      };
    case 'claude-code':
      // .mcp.json of a project (or `claude mcp add --transport http <name> <url> --header …`).
      return { mcpServers: map((e) => ({ type: 'http', url: e.url, headers: { Authorization: AUTH_HEADER } })) };
    case 'cline':
      // cline_mcp_settings.json
      return {
        mcpServers: map((e) => ({
          type: 'streamableHttp',
          url: e.url,
          headers: { Authorization: AUTH_HEADER },
          disabled: false,
          autoApprove: [],
        })),
      };
    case 'cursor':
      // .cursor/mcp.json (or ~/.cursor/mcp.json)
      return { mcpServers: map((e) => ({ url: e.url, headers: { Authorization: AUTH_HEADER } })) };
    case 'vscode':
      // .vscode/mcp.json: the key is asked once and kept in VS Code's secret storage.
      return {
        inputs: [{ type: 'promptString', id: 'mcp-hub-key', description: 'MCP Hub API key', password: true }],
        servers: map((e) => ({
          type: 'http',
          url: e.url,
          // biome-ignore lint/suspicious/noTemplateCurlyInString: VS Code's own input variable syntax
          headers: { Authorization: 'Bearer ${input:mcp-hub-key}' },
        })),
      };
  }
}

/**
 * `GET /api/client-config?client=…`: the snippet that connects a client to the hub (per-server entries and
 * the aggregated one); `GET /.well-known/mcp-servers`: a discovery document listing the endpoints.
 */
export const discoveryRoutes: FastifyPluginAsyncZod<DiscoveryRoutesOptions> = async (app, opts) => {
  app.get(
    '/api/client-config',
    {
      schema: {
        querystring: z.strictObject({
          client: z.enum(CLIENTS, { error: `client must be one of ${CLIENTS.join(', ')}` }),
        }),
        response: { 200: z.record(z.string(), z.unknown()), ...errorResponses },
      },
    },
    async (req) => {
      const list = entries(baseUrl(req, opts.publicUrl), await opts.visibleServers(req));
      return clientConfig(req.query.client, list);
    },
  );

  app.get(
    '/.well-known/mcp-servers',
    { schema: { response: { 200: z.record(z.string(), z.unknown()), ...errorResponses } } },
    async (req) => {
      const base = baseUrl(req, opts.publicUrl);
      const servers = await opts.visibleServers(req);
      return {
        hub: { name: 'mcp-hub', url: base },
        protocolVersions: SERVED_PROTOCOL_VERSIONS,
        authentication: {
          schemes: ['bearer', 'x-api-key'],
          header: 'Authorization: Bearer <key> (or X-API-Key: <key>)',
        },
        aggregated: { streamableHttp: `${base}/mcp`, sse: `${base}/sse` },
        servers: servers.map((s) => ({
          id: s.id,
          name: s.name,
          description: s.description,
          namespace: s.namespace,
          streamableHttp: `${base}/mcp/${s.id}`,
          sse: `${base}/sse/${s.id}`,
          tools: `${base}/mcp/${s.id}/{tool}`,
        })),
        clientConfig: CLIENTS.map((c) => `${base}/api/client-config?client=${c}`),
      };
    },
  );
};
