/**
 * The only module that spells Redis key names. The prefix is configurable (default `mcp:`) and may carry a
 * `{hash-tag}` so that every key lands in one Redis Cluster slot, which the Lua scripts need.
 */
export const DEFAULT_KEY_PREFIX = 'mcp:';

export interface RedisKeys {
  readonly prefix: string;
  /** hash: server id → JSON server spec */
  readonly servers: string;
  /** hash: tool name → JSON tool, for one server */
  tools(serverId: string): string;
  /** string (integer): the registry revision, bumped by every registry write */
  readonly registryRev: string;
  /** hash: server id → restart requests counter */
  readonly restarts: string;
  /** pub/sub channel: JSON registry and runtime events */
  readonly events: string;
  /** hash: the runtime record of one server's worker */
  runtime(serverId: string): string;
  /** list: the server's last failures, newest first (JSON FailureRecord), at most MAX_FAILURES */
  failures(serverId: string): string;
  /** string, PX: JSON counters of one supervisor (spawns, failures, health-check failures, startup time) */
  supervisorStats(supervisorId: string): string;
  /** hash: group id → JSON server group (name, description, serverIds, timestamps), one per project */
  groups(project: string): string;
  /** hash: endpoint id → JSON connection endpoint (name, group, bound keyIds, token SHA-256, dates), one per project */
  endpoints(project: string): string;
  /** hash: SHA-256 of an endpoint token → `project/endpointId` */
  readonly endpointTokens: string;
  /** hash: alert webhook id → JSON webhook (url, events, sealed signing secret, createdAt) */
  readonly alertWebhooks: string;
  /** Alert deliveries waiting for their next attempt: a sorted set (member: the delivery as JSON, score: due ms). */
  readonly alertRetries: string;
  /** string, PX: set while an alert of that type and server was sent recently (deduplication across hubs) */
  alertDedupe(alert: string): string;
  /** SCAN MATCH pattern of every runtime record key */
  readonly runtimePattern: string;
  /** set: ports held by live workers */
  readonly runtimePorts: string;
  /** string with PX: short lock taken while a port is being claimed */
  portLock(port: number): string;
  /** string with PX: the lease of the supervisor that runs a server */
  lease(serverId: string): string;
  /** sorted set: supervisor id → its last heartbeat (Redis server time, ms); a stale one's leases may be taken over */
  readonly supervisors: string;
  /** hash: project id → JSON project (id, name, createdAt) */
  readonly projects: string;
  /** hash: member id (email or external id) → JSON member (id, role, addedAt), for one project */
  members(projectId: string): string;
  /** hash: key id → JSON API key record (hash of the secret, never the secret) */
  readonly apiKeys: string;
  /** set: key ids of one project */
  projectKeys(projectId: string): string;
  /** string (counter) with EXPIRE: calls of one limiter scope in one window (scope names key, server, tool) */
  rateWindow(scope: string, window: 'hour' | 'day', windowStart: number): string;
  /** sorted set: call slots held by one key (member = call id, score = expiry ms), the concurrency cap */
  rateConcurrent(keyId: string): string;
  /** sorted set: the live rateWindow keys of one API key (score = window end ms), so a reset needs no SCAN */
  rateIndex(keyId: string): string;
  /** hash: usage counters of one key on one UTC day (YYYY-MM-DD) */
  usageDay(keyId: string, day: string): string;
  /** hash: running totals of one key (calls, errors, latency_ms_sum, last_request_at, per server/tool counts) */
  usage(keyId: string): string;
  /** stream: the audit log of admin changes */
  readonly audit: string;
}

export function createKeys(prefix: string = DEFAULT_KEY_PREFIX): RedisKeys {
  return Object.freeze({
    prefix,
    servers: `${prefix}servers`,
    tools: (serverId: string) => `${prefix}tools:${serverId}`,
    registryRev: `${prefix}registry_rev`,
    restarts: `${prefix}restarts`,
    events: `${prefix}events`,
    runtime: (serverId: string) => `${prefix}server_runtime:${serverId}`,
    /** The server's last failures, newest first (a capped list of JSON records: FailureRecord). */
    failures: (serverId: string) => `${prefix}failures:${serverId}`,
    groups: (project: string) => `${prefix}groups:${project}`,
    endpoints: (project: string) => `${prefix}endpoints:${project}`,
    endpointTokens: `${prefix}endpoint_tokens`,
    alertWebhooks: `${prefix}alert_webhooks`,
    alertRetries: `${prefix}alert_retries`,
    supervisorStats: (supervisorId: string) => `${prefix}supervisor_stats:${supervisorId}`,
    alertDedupe: (alert: string) => `${prefix}alert_dedupe:${alert}`,
    runtimePattern: `${escapeGlob(prefix)}server_runtime:*`,
    runtimePorts: `${prefix}runtime_ports`,
    portLock: (port: number) => `${prefix}port_lock:${port}`,
    lease: (serverId: string) => `${prefix}lease:${serverId}`,
    supervisors: `${prefix}supervisors`,
    projects: `${prefix}projects`,
    members: (projectId: string) => `${prefix}project_members:${projectId}`,
    apiKeys: `${prefix}api_keys`,
    projectKeys: (projectId: string) => `${prefix}project_keys:${projectId}`,
    rateWindow: (scope: string, window: 'hour' | 'day', windowStart: number) =>
      `${prefix}rate:${window}:${windowStart}:${scope}`,
    rateConcurrent: (keyId: string) => `${prefix}rate_concurrent:${keyId}`,
    rateIndex: (keyId: string) => `${prefix}rate_index:${keyId}`,
    usageDay: (keyId: string, day: string) => `${prefix}usage:${keyId}:${day}`,
    usage: (keyId: string) => `${prefix}usage:${keyId}:total`,
    audit: `${prefix}audit`,
  });
}

/** Escapes Redis glob characters so a prefix is matched literally by SCAN MATCH. */
function escapeGlob(value: string): string {
  return value.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
