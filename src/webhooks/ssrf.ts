/**
 * Server-side request forgery guard for webhook targets: only public unicast addresses may be
 * reached unless WEBHOOK_ALLOW_PRIVATE=true. Checked on the URL at registration and again on the
 * addresses DNS gives the actual connection (guardedLookup), so a name that later resolves to an
 * internal address (DNS rebinding) is refused at delivery time too.
 */
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions, type LookupOneOptions } from 'node:dns';
import { BlockList, isIP } from 'node:net';

/** Non-public IPv4 ranges: this network, private, shared (CGNAT), loopback, link-local, special, documentation, benchmarking, multicast, reserved. */
const V4_RANGES: Array<[string, number]> = [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15],
  ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
];
/**
 * Non-public IPv6 ranges: unspecified, loopback, discard, local-use NAT64 (RFC 8215: a translator on
 * the operator's own network may reach any internal IPv4 through it), Teredo (RFC 4380: a tunnel
 * through a relay to an IPv4 address written obfuscated, which no check here sees), documentation,
 * unique local, link-local, site-local, multicast.
 */
const V6_RANGES: Array<[string, number]> = [
  ['::', 128], ['::1', 128], ['100::', 64], ['64:ff9b:1::', 48], ['2001::', 32], ['2001:db8::', 32], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8],
];

const blocked = new BlockList();
for (const [a, p] of V4_RANGES) blocked.addSubnet(a, p, 'ipv4');
for (const [a, p] of V6_RANGES) blocked.addSubnet(a, p, 'ipv6');

/** Thrown when a target is not a public address; `code` lets logs and tests tell it apart. */
export class ForbiddenTargetError extends Error {
  override name = 'ForbiddenTargetError';
  readonly code = 'EFORBIDDENTARGET';
}

/** The 16 bytes of an IPv6 address (with or without an embedded dotted quad). */
function ipv6Bytes(address: string): number[] {
  let text = address.toLowerCase();
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted[1]!.split('.').map(Number) as [number, number, number, number];
    text = text.slice(0, -dotted[1]!.length) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.flatMap((g) => {
    const n = parseInt(g || '0', 16);
    return [n >> 8, n & 0xff];
  });
}

/**
 * The IPv4 address an IPv6 address carries (mapped ::ffff:a.b.c.d, translated ::ffff:0:a.b.c.d of
 * SIIT, compatible ::a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16), if any.
 */
function embeddedIpv4(address: string): string | undefined {
  const b = ipv6Bytes(address);
  const v4 = (o: number) => b.slice(o, o + 4).join('.');
  const zeros = (from: number, to: number) => b.slice(from, to).every((x) => x === 0);
  if (zeros(0, 10) && b[10] === 0xff && b[11] === 0xff) return v4(12);
  if (zeros(0, 8) && b[8] === 0xff && b[9] === 0xff && zeros(10, 12)) return v4(12);
  if (zeros(0, 12) && !zeros(12, 16) && !(zeros(12, 15) && b[15] === 1)) return v4(12);
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zeros(4, 12)) return v4(12);
  if (b[0] === 0x20 && b[1] === 0x02) return v4(2);
  return undefined;
}

/** True for an IP address that is a public unicast address. */
export function isPublicAddress(address: string): boolean {
  const bare = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const family = isIP(bare);
  if (family === 4) return !blocked.check(bare, 'ipv4');
  if (family === 6) {
    const v4 = embeddedIpv4(bare);
    if (v4 !== undefined) return !blocked.check(v4, 'ipv4');
    return !blocked.check(bare, 'ipv6');
  }
  return false;
}

/** Names that always mean this machine or the local network, whatever DNS says. */
function isLocalName(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/\.$/, '');
  return h === 'localhost' || h.endsWith('.localhost') || h.endsWith('.local') || h.endsWith('.internal') || !h.includes('.');
}

/**
 * Why `hostname` (from a URL: IP literals may be bracketed) must not be a target, or undefined when
 * it may be one so far (a name is checked again on its resolved addresses).
 */
export function refuseHost(hostname: string, allowPrivate: boolean): string | undefined {
  if (allowPrivate) return undefined;
  const bare = hostname.replace(/^\[|\]$/g, '');
  if (isIP(bare)) return isPublicAddress(bare) ? undefined : `${bare} is a private, loopback, link-local or reserved address`;
  if (isLocalName(bare)) return `${bare} is a local name`;
  return undefined;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;
type LookupAnswer = (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void;
type AllLookup = (hostname: string, options: LookupAllOptions, callback: LookupAnswer) => void;

/** Callbacks waiting for the lookup of each name in flight, per lookup function (the system's, or a test's). */
const inFlight = new WeakMap<AllLookup, Map<string, LookupAnswer[]>>();

/**
 * One lookup per name at a time. dns.lookup is getaddrinfo on libuv's thread pool (4 threads), which
 * the argon2id hashes share (one per core). Every delivery attempt to an endpoint whose name servers
 * do not answer used to take a thread for the resolver's whole timeout, so one such endpoint with a
 * backlog and its retries could hold the pool, and every login with it. Lookups of a name already
 * being looked up now wait for that answer instead of starting their own: a hanging name holds one
 * thread, and other names are looked up as usual.
 */
function sharedLookup(lookup: AllLookup, hostname: string, options: LookupAllOptions, callback: LookupAnswer): void {
  let byName = inFlight.get(lookup);
  if (!byName) inFlight.set(lookup, (byName = new Map()));
  const names = byName;
  const key = `${options.family ?? 0}/${options.hints ?? 0}/${hostname.toLowerCase()}`;
  const waiting = names.get(key);
  if (waiting) {
    waiting.push(callback);
    return;
  }
  const callbacks = [callback];
  names.set(key, callbacks);
  const answer: LookupAnswer = (err, addresses) => {
    if (names.get(key) !== callbacks) return; // answered already (a lookup that calls back twice)
    names.delete(key);
    for (const cb of callbacks) cb(err, addresses);
  };
  try {
    lookup(hostname, options, answer);
  } catch (e) {
    answer(e as NodeJS.ErrnoException, []);
  }
}

/**
 * A `lookup` for http.request/net.connect that resolves like dns.lookup and refuses the connection
 * when any resolved address is not public (unless allowed). Node calls it for every connection to a
 * name, so the check is on the very addresses the socket connects to.
 */
export function guardedLookup(allowPrivate: boolean, lookup: AllLookup = dnsLookup) {
  return (hostname: string, options: LookupOneOptions | LookupAllOptions | number, callback: LookupCallback): void => {
    const opts = typeof options === 'number' ? { family: options } : options;
    sharedLookup(lookup, hostname, { ...opts, all: true }, (err, addresses) => {
      if (err) return callback(err, '');
      const list = addresses;
      if (!allowPrivate) {
        const bad = list.find((a) => !isPublicAddress(a.address));
        if (bad) return callback(new ForbiddenTargetError(`${hostname} resolves to ${bad.address}, a private, loopback, link-local or reserved address (WEBHOOK_ALLOW_PRIVATE=true allows it)`), '');
      }
      if (list.length === 0) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), '');
      if ((opts as LookupAllOptions).all) return callback(null, list);
      callback(null, list[0]!.address, list[0]!.family);
    });
  };
}

/** How long registration waits for DNS before letting the name pass (a resolver can take its own 5 s and more). */
export const REGISTRATION_LOOKUP_TIMEOUT_MS = 2000;

/**
 * Resolves `hostname` and returns why it must not be a target, if it must not. A registration check:
 * names that do not resolve, or not within `timeoutMs`, pass — every delivery checks the addresses it
 * connects to (guardedLookup).
 */
export async function refuseResolvedHost(hostname: string, allowPrivate: boolean, lookup: AllLookup = dnsLookup, timeoutMs = REGISTRATION_LOOKUP_TIMEOUT_MS): Promise<string | undefined> {
  if (allowPrivate || isIP(hostname.replace(/^\[|\]$/g, ''))) return undefined;
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), timeoutMs);
    sharedLookup(lookup, hostname, { all: true }, (err, addresses) => {
      clearTimeout(timer);
      if (err) return resolve(undefined);
      const bad = addresses.find((a) => !isPublicAddress(a.address));
      resolve(bad ? `${hostname} resolves to ${bad.address}, a private, loopback, link-local or reserved address` : undefined);
    });
  });
}
