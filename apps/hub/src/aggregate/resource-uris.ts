import { SLUG_RE } from '@mcp-hub/shared';

/**
 * How the aggregated `/mcp` names a server's resources: `mcphub://<namespace>/<original URI, percent-encoded
 * whole>`. The namespace says which server owns the resource, and the original URI comes back exactly
 * (`decodeResourceUri(encodeResourceUri(ns, uri))` is `{ namespace: ns, uri }` for every URI), whatever
 * scheme, slashes or query it has. Resource templates keep their `{expressions}` so clients can expand them;
 * only the literal parts are encoded, and an expanded template decodes to the original template expanded.
 */
export const AGGREGATE_URI_SCHEME = 'mcphub:';
const PREFIX = `${AGGREGATE_URI_SCHEME}//`;

/** Longest original URI (or template) the aggregated endpoint passes on, in characters. */
export const MAX_RESOURCE_URI_CHARS = 4_096;
/** Longest aggregated URI a client may present (encoding at most triples a character, plus the namespace). */
export const MAX_AGGREGATE_URI_CHARS = PREFIX.length + 64 + 1 + 3 * MAX_RESOURCE_URI_CHARS;

/** An RFC 6570 expression: kept as it is in a template. */
const EXPRESSION_RE = /(\{[^{}]{1,256}\})/;

/** The aggregated URI of a server's resource; undefined when the original is too long to pass on. */
export function encodeResourceUri(namespace: string, uri: string): string | undefined {
  if (uri.length > MAX_RESOURCE_URI_CHARS) return undefined;
  return `${PREFIX}${namespace}/${encodeURIComponent(uri)}`;
}

/** The aggregated URI template of a server's resource template (its expressions left for the client). */
export function encodeResourceTemplate(namespace: string, template: string): string | undefined {
  if (template.length > MAX_RESOURCE_URI_CHARS) return undefined;
  const parts = template.split(EXPRESSION_RE);
  const encoded = parts.map((part, i) => (i % 2 === 1 ? part : encodeURIComponent(part))).join('');
  return `${PREFIX}${namespace}/${encoded}`;
}

/**
 * The namespace and original URI of an aggregated URI (or of an aggregated template, left unexpanded);
 * undefined when it is not one (another scheme, no namespace, bad percent-encoding, too long).
 */
export function decodeResourceUri(aggregated: string): { namespace: string; uri: string } | undefined {
  if (aggregated.length > MAX_AGGREGATE_URI_CHARS || !aggregated.startsWith(PREFIX)) return undefined;
  const rest = aggregated.slice(PREFIX.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) return undefined;
  const namespace = rest.slice(0, slash);
  if (!SLUG_RE.test(namespace)) return undefined;
  try {
    const uri = decodeURIComponent(rest.slice(slash + 1));
    return uri.length > 0 && uri.length <= MAX_RESOURCE_URI_CHARS ? { namespace, uri } : undefined;
  } catch {
    return undefined;
  }
}
