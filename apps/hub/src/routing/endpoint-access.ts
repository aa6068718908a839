import { AppError, type Registry } from '@mcp-hub/shared';
import type { Principal } from '../access/principal.js';
import type { Endpoint, EndpointStore } from '../stores/endpoint-store.js';
import type { GroupStore } from '../stores/group-store.js';
import type { GroupForRouting } from './router.js';

/** How long a hub uses a project's server list it read, for default endpoints (a new server shows within this). */
const SERVERS_TTL_MS = 1_000;
const MAX_PROJECTS_CACHED = 10_000;

/**
 * What a request through a connection endpoint (`/e/<token>/…`) may reach: the token's endpoint (read from Redis on
 * every request, so a re-issued or deleted token stops at once on every hub), for the keys bound to it, and what
 * routes it: its group, or every server of its project (the default endpoint, with no rules).
 */
export class EndpointAccess {
  private readonly servers = new Map<string, { ids: string[]; at: number }>();

  constructor(
    private readonly store: EndpointStore,
    private readonly groups: GroupStore,
    private readonly registry: Registry,
  ) {}

  /**
   * The endpoint `token` opens for `principal`: 404 endpoint_not_found for an unknown token or a key of another
   * project (as if it did not exist), 403 for a key of the project that is not bound to it.
   */
  async authorize(token: string, principal: Principal): Promise<Endpoint> {
    const endpoint = await this.store.resolve(token);
    if (!endpoint || (principal.kind === 'key' && principal.project !== endpoint.project)) {
      throw new AppError('endpoint_not_found', 'no endpoint has this URL (it may have been re-issued)');
    }
    if (principal.kind === 'key' && endpoint.keyIds.length > 0 && !endpoint.keyIds.includes(principal.keyId)) {
      throw new AppError('forbidden', 'this API key is not bound to the endpoint');
    }
    return endpoint;
  }

  /** What routes the endpoint's calls: its group (throws group_not_found once deleted), or its project's servers. */
  async routing(endpoint: Endpoint): Promise<GroupForRouting> {
    if (endpoint.group !== undefined) return this.groups.forCall(endpoint.project, endpoint.group);
    return {
      project: endpoint.project,
      id: `endpoint:${endpoint.id}`,
      serverIds: await this.projectServers(endpoint.project),
      rules: [],
    };
  }

  private async projectServers(project: string): Promise<string[]> {
    const hit = this.servers.get(project);
    const now = performance.now();
    if (hit && now - hit.at < SERVERS_TTL_MS) return hit.ids;
    const ids = (await this.registry.listServers()).filter((s) => s.project === project).map((s) => s.id);
    if (!this.servers.has(project) && this.servers.size >= MAX_PROJECTS_CACHED) this.servers.clear();
    this.servers.set(project, { ids, at: now });
    return ids;
  }
}
