/**
 * TRUST_PROXY: which X-Forwarded-For entry is the client. Every rule here keeps a client from
 * choosing the address its limits count against: `true` is one hop, never "trust every entry", and a
 * listed network must be small enough to hold only proxies.
 */
import { isIP } from 'node:net';
import { ConfigError } from './config.ts';

const PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** The largest IPv4 network accepted (0.0.0.0/0 would trust every client's own X-Forwarded-For). */
const MIN_IPV4_PREFIX = 8;
/**
 * The largest IPv6 network accepted: a /32 is what a registry hands a whole provider, while the
 * proxies of one site sit in a /48 or /64 (an IPv6 /8 such as 2a00::/8 is a continent's clients).
 */
const MIN_IPV6_PREFIX = 32;
/**
 * Networks no client reaches from the internet (unique local fc00::/7, link-local fe80::/10), which
 * the names `uniquelocal` and `linklocal` trust whole anyway: inside them the IPv4 rule's /8 applies
 * (fd00::/8 is like 10.0.0.0/8).
 */
const PRIVATE_IPV6: ReadonlyArray<[string, number]> = [['fc00::', 7], ['fe80::', 10]];

/**
 * `false`, a hop count, or a comma-separated list of proxy addresses/CIDRs (and proxy-addr's
 * names loopback, linklocal, uniquelocal). `true` means ONE hop — the address the nearest proxy appended —
 * because "trust every X-Forwarded-For entry" would let any client choose the address limits count against.
 */
export function trustProxy(env: Readonly<Record<string, string | undefined>>): false | number | string[] {
  const raw = (env.TRUST_PROXY ?? '').trim();
  const v = raw.toLowerCase();
  if (v === '' || ['0', 'false', 'no', 'off'].includes(v)) return false;
  if (['true', 'yes', 'on'].includes(v)) return 1;
  if (/^\d+$/.test(v)) {
    const n = Number(v);
    if (n > 10) throw new ConfigError(`TRUST_PROXY hop count must be at most 10, got ${n}`);
    return n;
  }
  const entries = v.split(',').map((s) => s.trim()).filter(Boolean);
  for (const e of entries) {
    if (PROXY_NAMES.has(e)) continue;
    const [addr = '', prefix, extra] = e.split('/');
    const family = isIP(addr);
    const maxPrefix = family === 4 ? 32 : 128;
    if (!family || extra !== undefined || (prefix !== undefined && (!/^\d+$/.test(prefix) || Number(prefix) > maxPrefix))) {
      throw new ConfigError(`TRUST_PROXY must be false, true (one hop), a hop count, or proxy addresses/CIDRs separated by commas; "${e}" is none of these`);
    }
    if (prefix !== undefined && !smallEnough(addr, family, Number(prefix))) {
      throw new ConfigError(
        `TRUST_PROXY "${e}" trusts too large a network to be only your proxies (at least /${MIN_IPV4_PREFIX} for IPv4 and for IPv6 within fc00::/7 or fe80::/10, /${MIN_IPV4_PREFIX + 96} for IPv4-mapped ::ffff:a.b.c.d, /${MIN_IPV6_PREFIX} for other IPv6); list the proxies' own networks`,
      );
    }
  }
  return entries;
}

/** Whether a network of this size may be trusted: a network that large holds clients, not only proxies. */
function smallEnough(addr: string, family: number, prefix: number): boolean {
  if (family === 4) return prefix >= MIN_IPV4_PREFIX;
  const groups = ipv6Groups(addr);
  // proxy-addr matches IPv4 clients against an IPv4-mapped network as the IPv4 network /(prefix - 96):
  // ::ffff:0:0/96 was 0.0.0.0/0, every IPv4 client's own X-Forwarded-For trusted.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return prefix >= MIN_IPV4_PREFIX + 96;
  if (prefix >= MIN_IPV6_PREFIX) return true;
  return prefix >= MIN_IPV4_PREFIX && PRIVATE_IPV6.some(([net, bits]) => prefix >= bits && samePrefix(groups, ipv6Groups(net), bits));
}

/** The eight 16-bit groups of an IPv6 address (one isIP accepted), a dotted IPv4 tail included. */
function ipv6Groups(addr: string): number[] {
  let text = addr.replace(/%.*$/, '');
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const parse = (s: string) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const left = parse(head);
  const right = tail === undefined ? [] : parse(tail);
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
}

function samePrefix(a: readonly number[], b: readonly number[], bits: number): boolean {
  for (let i = 0; i < 8 && bits > 0; i++, bits -= 16) {
    const mask = bits >= 16 ? 0xffff : (0xffff << (16 - bits)) & 0xffff;
    if (((a[i] ?? 0) & mask) !== ((b[i] ?? 0) & mask)) return false;
  }
  return true;
}
