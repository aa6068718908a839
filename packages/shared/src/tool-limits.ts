/**
 * Largest tool `inputSchema` (serialized JSON, UTF-8 bytes) the hub compiles, and that a REST tool spec may
 * carry. Ajv's compile time grows faster than the schema (a 199 KB schema took 23 s), so the hub only
 * compiles what it can in a few milliseconds; a bigger schema is left to the upstream, which validates anyway.
 */
export const TOOL_SCHEMA_MAX_BYTES = 65_536;
/**
 * Largest tool (name, description, schemas, annotations: serialized bytes) a worker writes to the registry.
 * Twice the schema budget, so a tool whose schema is too big to compile is still listed (unenforced).
 */
export const TOOL_MAX_BYTES = 131_072;
/** Most tools a worker writes to the registry for one server (the hub holds and lists them all). */
export const TOOLS_MAX_PER_SERVER = 1_000;
/** Most bytes of tools a worker writes to the registry for one server. */
export const TOOL_LIST_MAX_BYTES = 2_097_152;

/** The size of a value as UTF-8 JSON, in bytes. */
export function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? '', 'utf8');
}

export interface RefusedTool {
  name: string;
  bytes: number;
  reason: 'tool_too_large' | 'too_many_tools' | 'tool_list_too_large';
}

/**
 * What a worker stores of an upstream's `tools/list`: tools in the order listed, each at most TOOL_MAX_BYTES,
 * at most TOOLS_MAX_PER_SERVER of them and TOOL_LIST_MAX_BYTES in all. An upstream may send 10 MiB of tools
 * (the message limit), every hub keeps the list in memory and the registry writes one event per tool, so what is
 * past a limit is left out (the caller logs it) rather than stored.
 */
export function boundToolList<T extends { name: string }>(tools: readonly T[]): { kept: T[]; refused: RefusedTool[] } {
  const kept: T[] = [];
  const refused: RefusedTool[] = [];
  let total = 0;
  for (const tool of tools) {
    const bytes = jsonBytes(tool);
    const reason =
      bytes > TOOL_MAX_BYTES
        ? 'tool_too_large'
        : kept.length >= TOOLS_MAX_PER_SERVER
          ? 'too_many_tools'
          : total + bytes > TOOL_LIST_MAX_BYTES
            ? 'tool_list_too_large'
            : undefined;
    if (reason) {
      refused.push({ name: tool.name, bytes, reason });
      continue;
    }
    kept.push(tool);
    total += bytes;
  }
  return { kept, refused };
}
