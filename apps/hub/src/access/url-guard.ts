import { lookup } from 'node:dns/promises';
import { isIP, isIPv6 } from 'node:net';
import { networkInterfaces } from 'node:os';
import ipaddr from 'ipaddr.js';
import { buildConnector } from 'undici';

type Address = ipaddr.IPv4 | ipaddr.IPv6;

/** The one IPv4 range name ipaddr.js gives public addresses; every other range (private, reserved…) is denied. */
const PUBLIC_IPV4_RANGE = 'unicast';
/** IPv6 global unicast, 2000::/3: the only IPv6 space that may pass (an allow-list, not a list of bad ranges). */
const GLOBAL_UNICAST = ipaddr.IPv6.parse('2000::');
const GLOBAL_UNICAST_PREFIX = 3;
/** IPv4-compatible addresses (::a.b.c.d, deprecated by RFC 4291 but still parsed and routed by some stacks). */
const IPV4_COMPATIBLE = ipaddr.IPv6.parse('::');
const IPV4_COMPATIBLE_PREFIX = 96;
/** The well-known NAT64 prefix (RFC 6052): the gateway connects to the IPv4 address in the last 32 bits. */
const NAT64_WELL_KNOWN = ipaddr.IPv6.parse('64:ff9b::');
const NAT64_WELL_KNOWN_PREFIX = 96;

function ipv4FromWords(high: number, low: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff]);
}

/**
 * The IPv4 addresses an IPv6 address leads to, for the embeddings that reach IPv4 hosts: mapped
 * (::ffff:a.b.c.d), SIIT (::ffff:0:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d), 6to4
 * (2002:aabb:ccdd::) and Teredo (2001::/32: the server, and the client XOR 0xffff). Empty for the others.
 */
export function embeddedIPv4(address: ipaddr.IPv6): ipaddr.IPv4[] {
  const p = address.parts;
  switch (address.range()) {
    case 'ipv4Mapped':
    case 'rfc6145':
      return [ipv4FromWords(p[6] as number, p[7] as number)];
    case '6to4':
      return [ipv4FromWords(p[1] as number, p[2] as number)];
    case 'teredo':
      return [
        ipv4FromWords(p[2] as number, p[3] as number),
        ipv4FromWords((p[6] as number) ^ 0xffff, (p[7] as number) ^ 0xffff),
      ];
  }
  if (
    address.match(NAT64_WELL_KNOWN, NAT64_WELL_KNOWN_PREFIX) ||
    address.match(IPV4_COMPATIBLE, IPV4_COMPATIBLE_PREFIX)
  ) {
    return [ipv4FromWords(p[6] as number, p[7] as number)];
  }
  return [];
}

/** The parsed address, or undefined when `address` is not an IP literal (a name). */
function parse(address: string): Address | undefined {
  const bare = address.replace(/^\[|\]$/g, '');
  return ipaddr.isValid(bare) && isIP(bare) !== 0 ? ipaddr.parse(bare) : undefined;
}

/**
 * Whether an address is outside the public internet: for IPv4 anything ipaddr.js does not call public
 * unicast (private, loopback, link-local, CGNAT, reserved, multicast…); for IPv6 anything outside global
 * unicast 2000::/3 or in one of its special ranges, and every IPv6 embedding of a non-public IPv4 address,
 * judged as that IPv4 address. Not an IP literal: false (names are resolved by the callers).
 */
export function isPrivateAddress(address: string): boolean {
  const ip = parse(address);
  if (ip === undefined) return false;
  if (ip.kind() === 'ipv4') return ip.range() !== PUBLIC_IPV4_RANGE;
  const v6 = ip as ipaddr.IPv6;
  const carried = embeddedIPv4(v6);
  if (carried.length > 0) return carried.some((v4) => v4.range() !== PUBLIC_IPV4_RANGE);
  return !v6.match(GLOBAL_UNICAST, GLOBAL_UNICAST_PREFIX) || v6.range() !== 'unicast';
}

/**
 * Whether an address reaches this host: unspecified (0.0.0.0 and :: connect to the local host), loopback,
 * any address of this host's interfaces, or an IPv6 embedding of one of those.
 */
export function isLocalAddress(address: string, own: ReadonlySet<string> = interfaceAddresses()): boolean {
  const ip = parse(address);
  if (ip === undefined) return false;
  const candidates: Address[] = [ip];
  if (ip.kind() === 'ipv6') candidates.push(...embeddedIPv4(ip as ipaddr.IPv6));
  return candidates.some((a) => {
    const range = a.range();
    return range === 'loopback' || range === 'unspecified' || own.has(a.toNormalizedString());
  });
}

/** The normalized addresses of this host's network interfaces. */
function interfaceAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const entry of list ?? []) {
      const ip = parse(entry.address.split('%')[0] as string);
      if (ip) out.add(ip.toNormalizedString());
    }
  }
  return out;
}

function isLoopbackName(host: string): boolean {
  const name = host.toLowerCase().replace(/\.$/, '');
  return name === 'localhost' || name.endsWith('.localhost');
}

export type Resolver = (host: string) => Promise<string[]>;

/** The addresses `host` stands for (itself when an IP literal); throws the resolver's error. */
async function addressesOf(host: string, resolve: Resolver): Promise<string[]> {
  return parse(host) ? [host] : resolve(host);
}

/**
 * The reason a URL may not be used, or undefined when it may: its host is, or resolves to, a denied address.
 * (The check runs at registration; a name that later resolves elsewhere is the resolver's business — pin
 * remote servers by IP or run the hub behind an egress proxy when that matters.)
 */
export async function deniedUrlReason(raw: string, resolve: Resolver = defaultResolve): Promise<string | undefined> {
  const host = new URL(raw).hostname.replace(/^\[|\]$/g, '');
  if (isLoopbackName(host)) return `${host} is a loopback name`;
  let addresses: string[];
  try {
    addresses = await addressesOf(host, resolve);
  } catch (err) {
    // Fail closed: a name that does not resolve now may resolve to anything later.
    return `${host} does not resolve (${(err as NodeJS.ErrnoException).code ?? 'lookup failed'})`;
  }
  const bad = addresses.find(isPrivateAddress);
  return bad === undefined ? undefined : `${host} resolves to the private address ${bad}`;
}

export interface LocalDoors {
  /** The hub's own ports (configured and bound). */
  hubPorts: readonly number[];
  /** The first worker port and how many follow (MCP_WORKER_BASE_PORT, MCP_WORKER_PORT_RANGE). */
  workerBasePort: number;
  workerPortRange: number;
  /** The host the hub listens on (HUB_HOST): a name or address that reaches it. */
  hubHost: string;
}

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443 };

/**
 * The reason a URL may not be used because it aims at a door of this host that only the hub may use (the
 * hub's own port, a worker's port), or undefined. Only URLs on those ports are looked at; their host must not
 * be a loopback name, the hub's host, or an address of this host (literal or resolved; a name that does not
 * resolve is refused, as it may later resolve here).
 */
export async function localDoorReason(
  raw: string,
  doors: LocalDoors,
  resolve: Resolver = defaultResolve,
  own?: ReadonlySet<string>,
): Promise<string | undefined> {
  const url = new URL(raw);
  const port = url.port === '' ? DEFAULT_PORTS[url.protocol] : Number(url.port);
  if (port === undefined) return undefined;
  const isHubPort = doors.hubPorts.includes(port);
  const isWorkerPort = port >= doors.workerBasePort && port < doors.workerBasePort + doors.workerPortRange;
  if (!isHubPort && !isWorkerPort) return undefined;
  const door = isHubPort ? `the hub's own port ${port}` : `worker port ${port}`;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isLoopbackName(host)) return `${host}:${port} is ${door} on this host`;
  if (host.toLowerCase() === doors.hubHost.toLowerCase().replace(/^\[|\]$/g, '')) {
    return `${host}:${port} is ${door} (the hub's host)`;
  }
  let addresses: string[];
  try {
    addresses = await addressesOf(host, resolve);
  } catch (err) {
    return `${host} does not resolve (${(err as NodeJS.ErrnoException).code ?? 'lookup failed'}) and port ${port} is ${door}`;
  }
  const local = addresses.find((a) => isLocalAddress(a, own));
  return local === undefined ? undefined : `${host}:${port} reaches ${door} on this host (${local})`;
}

export interface ConnectGuard {
  /** Refuse private, loopback, link-local and reserved addresses (HUB_DENY_PRIVATE_URLS). */
  denyPrivate: boolean;
  doors: () => LocalDoors;
  /** Time to connect, in milliseconds. */
  timeoutMs: number;
}

/**
 * An undici connector that checks the address it connects to, not only the URL when it was written: the name is
 * resolved here, checked as the URL checks check it (the hub's and the workers' doors; private addresses when
 * denied), and the socket opened to that very address (TLS still verifies the certificate for the name). A name
 * that resolves elsewhere after its URL was accepted (DNS rebinding) reaches nothing the URL could not.
 */
export function guardedConnector(
  guard: ConnectGuard,
  resolve: Resolver = defaultResolve,
  own?: ReadonlySet<string>,
): buildConnector.connector {
  return (opts, callback) => {
    void (async () => {
      const host = opts.hostname.replace(/^\[|\]$/g, '');
      const addresses = await addressesOf(host, resolve);
      if (addresses.length === 0) throw new Error(`${host} does not resolve`);
      const resolved: Resolver = async () => addresses;
      const url = `${opts.protocol}//${isIPv6(host) ? `[${host}]` : host}${opts.port ? `:${opts.port}` : ''}/`;
      const reason =
        (await localDoorReason(url, guard.doors(), resolved, own)) ??
        (guard.denyPrivate ? await deniedUrlReason(url, resolved) : undefined);
      if (reason !== undefined) throw new Error(`connection refused by the hub's URL rules: ${reason}`);
      // The socket goes to the addresses just checked, none other (a lookup that answers them); Node tries them in
      // turn (autoSelectFamily) and TLS verifies the certificate for the name.
      const lookup = (
        _name: string,
        options: { all?: boolean },
        done: (err: Error | null, address: string | { address: string; family: number }[], family?: number) => void,
      ) => {
        const first = addresses[0] as string;
        if (options.all)
          done(
            null,
            addresses.map((address) => ({ address, family: isIP(address) })),
          );
        else done(null, first, isIP(first));
      };
      buildConnector({ timeout: guard.timeoutMs, lookup } as buildConnector.BuildOptions)(opts, callback);
    })().catch((err: Error) => callback(err, null));
  };
}

async function defaultResolve(host: string): Promise<string[]> {
  return (await lookup(host, { all: true })).map((a) => a.address);
}
