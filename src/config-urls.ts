/**
 * The URL settings: PUBLIC_URL, TRUSTED_ORIGINS and the connection URLs of the servers Twofold talks
 * to (DATABASE_URL, REDIS_URL, SMTP_URL, EVENTS_AMQP_URL). Connection URLs carry passwords, so a bad
 * one is refused here with a message naming the variable and never its value: left to the client
 * library, Node's "Invalid URL" error carried the whole URL, password included, into the start-up log.
 */
import { ConfigError } from './config.ts';

/** PUBLIC_URL checked to be an origin: the token issuer and the base of every mailed link. */
export function publicUrlSetting(raw: string): { publicUrl: string; publicOrigin: string } {
  const value = raw.trim();
  const u = parseHttpUrl(value, 'PUBLIC_URL');
  // Everything is served from the root (/api/v1, /oauth, the pages): with a path the OpenID
  // endpoints disagreed with the issuer, and a query or fragment broke the mailed links and
  // discovery. Credentials would have been published in every token's `iss`.
  if (u.username !== '' || u.password !== '') throw new ConfigError('PUBLIC_URL must not contain a user name or password');
  if (value.includes('?') || value.includes('#')) throw new ConfigError(`PUBLIC_URL must not have a query or fragment, got "${value}"`);
  if (!/^\/*$/.test(u.pathname)) {
    throw new ConfigError(`PUBLIC_URL must be the service's origin (scheme, host and port) without a path: Twofold is served from the root of its host, got "${value}"`);
  }
  // As written (less trailing slashes), as before: a verifier compares `iss` character for character,
  // so "HTTPS://Auth.Example.com:443" must not become another issuer on upgrade.
  return { publicUrl: value.replace(/\/+$/, ''), publicOrigin: u.origin };
}

/**
 * An http(s) origin (TRUSTED_ORIGINS): scheme, host and port, a trailing slash at most. A path, query,
 * fragment or credentials are refused rather than dropped: browsers send the origin alone, so
 * `https://app.example.com/admin` trusted the whole of app.example.com without saying so.
 */
export function origin(value: string, name: string): string {
  const u = parseHttpUrl(value, name);
  const shown = masked(value);
  if (u.username !== '' || u.password !== '' || value.includes('?') || value.includes('#') || !/^\/?$/.test(u.pathname)) {
    throw new ConfigError(`${name} lists origins (scheme, host and port) without a path, query or credentials, got "${shown}"`);
  }
  return u.origin;
}

/** `value` with whatever stands between `//` and `@` (user and password) shown as `***`. */
function masked(value: string): string {
  return value.replace(/\/\/[^\s/?#]*@/, '//***@');
}

function parseHttpUrl(value: string, name: string): URL {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    // An unparsable URL may still carry a password (https://user:pw@host:99999): not echoed.
    throw new ConfigError(`${name} must be an absolute http(s) URL, got "${masked(value)}"`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ConfigError(`${name} must be http or https`);
  return u;
}

interface ConnectionUrlRule {
  readonly protocols: readonly string[];
  /** The form shown in the message. */
  readonly example: string;
  /** The client also takes an absolute path (a Unix socket). */
  readonly socketPath?: boolean;
  /** pg's parser: spaces and stray `%` are encoded, and `user:pass@/db?host=/socket` has an empty host. */
  readonly pgLenient?: boolean;
  /** ioredis also takes `host:port` and a bare port (no password in either), as earlier releases passed on. */
  readonly hostPort?: boolean;
}

const CONNECTION_URLS = {
  DATABASE_URL: { protocols: ['postgres:', 'postgresql:', 'socket:'], example: 'postgres://user:password@host:5432/database', socketPath: true, pgLenient: true },
  REDIS_URL: { protocols: ['redis:', 'rediss:'], example: 'redis://[:password@]host:6379[/db]', socketPath: true, hostPort: true },
  SMTP_URL: { protocols: ['smtp:', 'smtps:'], example: 'smtp://user:password@host:587' },
  EVENTS_AMQP_URL: { protocols: ['amqp:', 'amqps:'], example: 'amqp://user:password@host:5672/vhost' },
} as const satisfies Record<string, ConnectionUrlRule>;

/**
 * A connection URL, checked as its client will parse it. The message names the variable and the
 * expected form, never the value (it may hold a password).
 */
export function connectionUrl(env: Readonly<Record<string, string | undefined>>, name: keyof typeof CONNECTION_URLS): string | undefined {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return undefined;
  const rule: ConnectionUrlRule = CONNECTION_URLS[name];
  if (rule.socketPath && raw.startsWith('/')) return raw;
  if (rule.hostPort && /^(?:[A-Za-z0-9.-]+:)?\d{1,5}$/.test(raw)) return raw;
  const refused = new ConfigError(
    `${name} must be a URL of the form ${rule.example} (scheme ${rule.protocols.map((p) => p.slice(0, -1)).join(' or ')}); its value is not shown, since it may hold a password`,
  );
  const normalized = rule.pgLenient ? pgNormalized(raw) : raw;
  const u = normalized === undefined ? undefined : parseUrl(normalized, rule.pgLenient === true);
  if (!u || !rule.protocols.includes(u.protocol)) throw refused;
  return raw;
}

function parseUrl(value: string, emptyHostRetry: boolean): URL | undefined {
  try {
    return new URL(value);
  } catch {
    if (!emptyHostRetry) return undefined;
  }
  try {
    return new URL(value.replace('@/', '@host/'));
  } catch {
    return undefined;
  }
}

/** What pg-connection-string does before parsing: encode spaces and `%` not starting an escape. */
function pgNormalized(value: string): string | undefined {
  if (!/ |%[^a-f0-9]|%[a-f0-9][^a-f0-9]/i.test(value)) return value;
  try {
    return encodeURI(value).replace(/%25(\d\d)/g, '%$1');
  } catch {
    return undefined; // a lone surrogate: pg's parser throws on it too
  }
}
