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
  /** SCAN MATCH pattern of every runtime record key */
  readonly runtimePattern: string;
  /** set: ports held by live workers */
  readonly runtimePorts: string;
  /** string with PX: short lock taken while a port is being claimed */
  portLock(port: number): string;
  /** string with PX: the lease of the supervisor that runs a server */
  lease(serverId: string): string;
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
    runtimePattern: `${escapeGlob(prefix)}server_runtime:*`,
    runtimePorts: `${prefix}runtime_ports`,
    portLock: (port: number) => `${prefix}port_lock:${port}`,
    lease: (serverId: string) => `${prefix}lease:${serverId}`,
  });
}

/** Escapes Redis glob characters so a prefix is matched literally by SCAN MATCH. */
function escapeGlob(value: string): string {
  return value.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
