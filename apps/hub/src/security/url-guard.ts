import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/**
 * Private, loopback, link-local and other non-public ranges a remote server URL may not point at when
 * HUB_DENY_PRIVATE_URLS is on (server-side request forgery: a registered "remote" server would otherwise
 * let a key holder reach the hub's own network, e.g. cloud metadata at 169.254.169.254).
 */
const DENIED = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  DENIED.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  ['64:ff9b::', 96], // NAT64: reaches IPv4 addresses, private ones included
  ['64:ff9b:1::', 48],
] as const) {
  DENIED.addSubnet(net, prefix, 'ipv6');
}

export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return DENIED.check(address, 'ipv4');
  if (family === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped?.[1]) return DENIED.check(mapped[1], 'ipv4');
    return DENIED.check(address, 'ipv6');
  }
  return false;
}

/**
 * The reason a URL may not be used, or undefined when it may: its host is, or resolves to, a denied address.
 * (The check runs at registration; a name that later resolves elsewhere is the resolver's business — pin
 * remote servers by IP or run the hub behind an egress proxy when that matters.)
 */
export async function deniedUrlReason(
  raw: string,
  resolve: (host: string) => Promise<string[]> = defaultResolve,
): Promise<string | undefined> {
  const host = new URL(raw).hostname.replace(/^\[|\]$/g, '');
  if (host === 'localhost' || host.endsWith('.localhost')) return `${host} is a loopback name`;
  let addresses: string[];
  try {
    addresses = isIP(host) ? [host] : await resolve(host);
  } catch (err) {
    // Fail closed: a name that does not resolve now may resolve to anything later.
    return `${host} does not resolve (${(err as NodeJS.ErrnoException).code ?? 'lookup failed'})`;
  }
  const bad = addresses.find(isPrivateAddress);
  return bad === undefined ? undefined : `${host} resolves to the private address ${bad}`;
}

async function defaultResolve(host: string): Promise<string[]> {
  return (await lookup(host, { all: true })).map((a) => a.address);
}
