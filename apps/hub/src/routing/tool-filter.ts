import { z } from 'zod';
import { globMatches } from './rules.js';

/** Entries one list may hold. */
export const MAX_FILTER_ENTRIES = 100;

/** `<tool glob>`, or `<server glob>/<tool glob>` (globs with `*` and `?`). */
const EntrySchema = z
  .string()
  .min(1)
  .max(160)
  .regex(/^[^/\s]+(\/[^/\s]+)?$/, 'an entry is a tool glob, or a server glob and a tool glob joined by /');

/**
 * Which tools an endpoint offers (issue 16, item 4): with `allow`, only the tools one of its entries names; never
 * one a `deny` entry names. One decision for the list and the call: a denied tool is neither listed nor callable.
 */
export const ToolFilterSchema = z.strictObject({
  allow: z.array(EntrySchema).max(MAX_FILTER_ENTRIES).optional(),
  deny: z.array(EntrySchema).max(MAX_FILTER_ENTRIES).optional(),
});
export type ToolFilter = z.output<typeof ToolFilterSchema>;

function entryMatches(entry: string, server: string, tool: string): boolean {
  const slash = entry.indexOf('/');
  if (slash < 0) return globMatches(entry, tool);
  return globMatches(entry.slice(0, slash), server) && globMatches(entry.slice(slash + 1), tool);
}

/** Whether `filter` lets server `server`'s tool `tool` (its own name, without a namespace) through. */
export function toolAllowed(filter: ToolFilter | undefined, server: string, tool: string): boolean {
  if (!filter) return true;
  if (filter.allow && !filter.allow.some((e) => entryMatches(e, server, tool))) return false;
  return !filter.deny?.some((e) => entryMatches(e, server, tool));
}
