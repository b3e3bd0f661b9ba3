/** The unit a per-IP limit counts: IPv4 addresses as they are, IPv6 addresses by their /64. */
import { isIPv4, isIPv6 } from 'node:net';

/**
 * The unit an IP limit counts: an IPv4 address as is (also when IPv4-mapped), an IPv6 address by
 * its /64 prefix — a single host usually holds a whole /64, so counting full addresses would hand
 * it 2^64 fresh budgets. Anything that is not an IP address is counted as the lower-cased string.
 */
export function normalizeIp(ip: string): string {
  const bare = ip.trim().toLowerCase().replace(/%.*$/, ''); // drop an IPv6 zone id (fe80::1%eth0)
  if (isIPv4(bare) || !isIPv6(bare)) return bare;
  const g = expandIPv6(bare);
  // ::ffff:a.b.c.d is an IPv4 client on a dual-stack socket: count it with its IPv4 self.
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    const [hi = 0, lo = 0] = g.slice(6);
    return [hi >> 8, hi & 0xff, lo >> 8, lo & 0xff].join('.');
  }
  return `${g.slice(0, 4).map((x) => x.toString(16)).join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (`::` filled in, a dotted IPv4 tail as two groups). */
function expandIPv6(addr: string): number[] {
  const parse = (s: string | undefined): number[] =>
    s
      ? s.split(':').flatMap((part) => {
          if (!part.includes('.')) return [parseInt(part, 16)];
          const [a = 0, b = 0, c = 0, d = 0] = part.split('.').map(Number);
          return [(a << 8) | b, (c << 8) | d];
        })
      : [];
  const [head, tail] = addr.split('::'); // a valid address has at most one '::'
  const h = parse(head);
  if (tail === undefined) return h;
  const t = parse(tail);
  return [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
}
