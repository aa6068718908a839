import { AppError, isLoopbackHost } from '@mcp-hub/shared';
import type { FastifyInstance } from 'fastify';

/** A `Host` header as the hub compares it: lowercase hostname (IPv6 in brackets, IPv4 canonical) and port. */
export interface ParsedHost {
  hostname: string;
  /** The port as written, or '' when the header has none. */
  port: string;
}

/** Only what a hostname, an IPv4 address or a bracketed IPv6 address and a port are made of: no userinfo, path or query. */
const HOST_CHARS_RE = /^[A-Za-z0-9.\-[\]:]+$/;
const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '[::]']);
const HTTP_DEFAULT_PORT = '80';

/** Parses a `Host` value (`name`, `name:port`, `[v6]:port`); undefined when it is not one. */
export function parseHost(value: string | undefined): ParsedHost | undefined {
  if (value === undefined || value === '' || !HOST_CHARS_RE.test(value)) return undefined;
  let url: URL;
  try {
    // The WHATWG parser canonicalises what browsers would (IPv4 spellings, IPv6 zeros, case).
    url = new URL(`http://${value}/`);
  } catch {
    return undefined;
  }
  const explicitPort = /:(\d{1,5})$/.exec(value)?.[1] ?? '';
  return { hostname: url.hostname.replace(/\.$/, ''), port: explicitPort };
}

const portOf = (host: ParsedHost): string => (host.port === '' ? HTTP_DEFAULT_PORT : String(Number(host.port)));

export interface HostRulesOptions {
  /** HUB_HOST: allowed as a Host name unless it is a wildcard. */
  boundHost: string;
  /** HUB_PUBLIC_URL: its hostname is allowed. */
  publicUrl: string | undefined;
  /** HUB_ALLOWED_HOSTS: `name` (any port) or `name:port`. */
  allowedHosts: readonly string[];
}

/**
 * Whether a `Host` header names this hub: a loopback name (any port), the address it is bound to, the
 * HUB_PUBLIC_URL host, or an entry of HUB_ALLOWED_HOSTS. A page that rebinds its own DNS name to the hub's
 * address still sends its own name as Host, so this is what stops DNS rebinding.
 */
export function hostAllowedBy(opts: HostRulesOptions): (value: string | undefined) => boolean {
  const names = new Set<string>();
  const withPort = new Set<string>();
  const bound =
    opts.boundHost.includes(':') && !opts.boundHost.startsWith('[') ? `[${opts.boundHost}]` : opts.boundHost;
  if (!WILDCARD_HOSTS.has(bound)) {
    const parsed = parseHost(bound);
    if (parsed) names.add(parsed.hostname);
  }
  if (opts.publicUrl !== undefined) names.add(new URL(opts.publicUrl).hostname);
  for (const entry of opts.allowedHosts) {
    const parsed = parseHost(entry);
    if (!parsed) continue;
    if (parsed.port === '') names.add(parsed.hostname);
    else withPort.add(`${parsed.hostname}:${portOf(parsed)}`);
  }
  return (value) => {
    const host = parseHost(value);
    if (!host) return false;
    if (isLoopbackHost(host.hostname) || names.has(host.hostname)) return true;
    return withPort.has(`${host.hostname}:${portOf(host)}`);
  };
}

/** Routes that answer whatever the Host: load balancers probe by address. */
const ANY_HOST_ROUTES = new Set(['/healthz']);

/** Refuses (403 host_not_allowed) every request whose `Host` does not name this hub, before anything else runs. */
export function registerHostCheck(app: FastifyInstance, opts: HostRulesOptions): void {
  const allowed = hostAllowedBy(opts);
  app.addHook('onRequest', async (req) => {
    if (ANY_HOST_ROUTES.has(req.routeOptions.url ?? '')) return;
    const host = req.headers.host;
    if (!allowed(host)) {
      throw new AppError(
        'host_not_allowed',
        host === undefined
          ? 'the request has no Host header'
          : `Host ${host} is not this hub's (see HUB_ALLOWED_HOSTS and HUB_PUBLIC_URL)`,
        { host: host ?? null },
      );
    }
  });
}
