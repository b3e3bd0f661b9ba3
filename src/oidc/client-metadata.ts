/**
 * Validation of OpenID client metadata (the RFC 7591 subset of the contract), shared by
 * OIDC_CLIENTS_FILE and the admin API. Every refusal names the field, so an operator can fix it.
 */
import type { ClientMetadata } from 'oidc-provider';

/** The scopes the provider offers. */
export const OIDC_SCOPES = ['openid', 'profile', 'email', 'offline_access'] as const;
export const GRANT_TYPES = ['authorization_code', 'refresh_token', 'client_credentials'] as const;
export const AUTH_METHODS = ['none', 'client_secret_basic', 'client_secret_post'] as const;
/** Shortest client secret accepted (the generated ones are 43 characters). */
export const MIN_SECRET_LENGTH = 32;

/** Metadata as an operator writes it. */
export interface ClientInput {
  client_id: string;
  client_secret?: string;
  redirect_uris: string[];
  post_logout_redirect_uris?: string[];
  grant_types: string[];
  token_endpoint_auth_method: string;
  scope: string;
  backchannel_logout_uri?: string;
  skip_consent: boolean;
  client_name?: string;
}

/** A metadata problem: `field` is the path of the bad value (e.g. `redirect_uris[0]`). */
export class ClientMetadataError extends Error {
  override name = 'ClientMetadataError';
  constructor(readonly field: string, message: string) {
    super(`${field} ${message}`);
  }
}

const KNOWN = new Set([
  'client_id', 'client_secret', 'redirect_uris', 'post_logout_redirect_uris', 'grant_types',
  'token_endpoint_auth_method', 'scope', 'backchannel_logout_uri', 'skip_consent', 'client_name',
]);

/** The characters of a URI (RFC 3986 §2: unreserved, reserved, and "%" of a percent-encoding). */
const URI_CHARACTERS = /^[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]*$/;
/** The authority of a URI written with one ("scheme://authority"), as written. */
const AUTHORITY = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i;
/** One host and an optional port: a DNS name, an IPv4 address or a bracketed IPv6 address. */
const HOST_AND_PORT = /^(?:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;

/**
 * An absolute URI exactly as it will be compared (RFC 6749 §3.1.2: redirect URIs match character for
 * character). The WHATWG parser forgives what the comparison does not, and what browsers read another
 * way: it drops a trailing newline or tab, takes a backslash for "/" (`https://evil.example\@good.example`
 * goes to evil.example), and keeps "user:pass@" and "*" hosts. So the text itself must be a URI of
 * RFC 3986 characters, with no user information (credentials stored in clear, and the classic
 * "looks like good.example" trick) and one real host (no wildcard: every redirect URI is exact).
 */
function url(value: unknown, field: string, allowFragment = false): string {
  if (typeof value !== 'string') throw new ClientMetadataError(field, 'must be a URL string');
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new ClientMetadataError(field, `must be an absolute URL, got "${value}"`);
  }
  if (/[\s\p{Cc}]/u.test(value)) throw new ClientMetadataError(field, 'must not contain spaces or control characters (line breaks and tabs included)');
  if (value.includes('\\')) throw new ClientMetadataError(field, 'must not contain a backslash (browsers read it as "/")');
  if (!URI_CHARACTERS.test(value) || /%(?![0-9A-Fa-f]{2})/.test(value)) {
    throw new ClientMetadataError(field, 'may contain only the characters of a URI (RFC 3986): percent-encode any other');
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:' && !/^[a-z][a-z0-9+.-]*\.[a-z0-9+.-]+:$/.test(u.protocol)) {
    throw new ClientMetadataError(field, `must be an http(s) URL or a reverse-domain app scheme, got "${value}"`);
  }
  // The text, not u.hash: an empty fragment ("…/cb#") has no hash but the engine refuses it all the same.
  if (!allowFragment && value.includes('#')) throw new ClientMetadataError(field, 'must not contain a fragment');
  const authority = AUTHORITY.exec(value)?.[1];
  const web = u.protocol === 'https:' || u.protocol === 'http:';
  // "https:host/cb" (no "//") and "https:///host/cb" (no host) parse as https://host/cb, not what they say.
  if (web && authority === undefined) throw new ClientMetadataError(field, 'must start with "https://" or "http://" and the host');
  if (authority?.includes('@')) throw new ClientMetadataError(field, 'must not contain user information ("user:password@" before the host)');
  // An app scheme may have an empty authority ("com.example.app:///cb"); a web URI needs its host.
  if (authority !== undefined && (web || authority !== '') && !HOST_AND_PORT.test(authority)) {
    throw new ClientMetadataError(field, 'must name one host (letters, digits, "-" and "."; no wildcard "*"), an IPv4 address or a bracketed IPv6 address, and optionally a port');
  }
  return value;
}

function urls(value: unknown, field: string): string[] {
  if (!Array.isArray(value)) throw new ClientMetadataError(field, 'must be an array of URLs');
  return value.map((v, i) => url(v, `${field}[${i}]`));
}

/** Host names the engine (and RFC 8252 7.3) count as loopback. */
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

function isWebScheme(value: string): boolean {
  const { protocol } = new URL(value);
  return protocol === 'https:' || protocol === 'http:';
}

/**
 * Whether every redirect URI of a client is on a loopback host: a desktop application (RFC 8252 §7.3)
 * or one in development. Any local program can listen on such a port first and catch the code, and a
 * desktop application's secret ships with it: such a client must use PKCE like a native one.
 */
export function redirectsOnlyToLoopback(redirectUris: readonly string[] | undefined): boolean {
  return !!redirectUris?.length && redirectUris.every((u) => {
    const parsed = URL.parse(u);
    return parsed?.protocol === 'http:' && LOOPBACK_HOSTS.has(parsed.hostname);
  });
}

/**
 * The engine's application_type of a client: 'native' when a redirect URI uses an app's own scheme
 * (RFC 8252 7.1), else 'web'. The engine refuses a 'web' client with such a URI at every request, and
 * the admin API stores only what the operator sent, so the type is derived, never configured. Loopback
 * http stays 'web' (it is valid for both types): a web application in development keeps prompt=none,
 * and one client may list its localhost and its production URIs.
 */
export function applicationType(redirectUris: readonly string[]): 'web' | 'native' {
  return redirectUris.some((u) => !isWebScheme(u)) ? 'native' : 'web';
}

/**
 * Refuses URIs the engine would refuse for a client of `type` (it checks redirect and post-logout URIs
 * alike), so what is accepted here works: a web client redirects only to http(s); a native client to
 * its app scheme, http on loopback or https off loopback (RFC 8252 7.1-7.3).
 * `httpsOnly` (PUBLIC_URL is https, a deployment): a web client's URIs must be https too, except on
 * loopback hosts (RFC 9700 §2.6): a code or logout redirect sent over plain http can be read on the way.
 */
function assertUsableFor(type: 'web' | 'native', uris: readonly string[], field: string, httpsOnly: boolean): void {
  uris.forEach((value, i) => {
    const { protocol, hostname } = new URL(value);
    if (type === 'web' && !isWebScheme(value)) {
      throw new ClientMetadataError(`${field}[${i}]`, 'must be an http(s) URL: the client has no app-scheme redirect URI, so it is a web client');
    }
    if (type === 'web' && httpsOnly && protocol === 'http:' && !LOOPBACK_HOSTS.has(hostname)) {
      throw new ClientMetadataError(`${field}[${i}]`, 'must be an https URL (http only on localhost, 127.0.0.1 or [::1]) while PUBLIC_URL is https: an authorization code sent over plain http can be read on the way');
    }
    if (type === 'native' && protocol === 'http:' && !LOOPBACK_HOSTS.has(hostname)) {
      throw new ClientMetadataError(`${field}[${i}]`, 'must not be plain http off loopback: an app-scheme redirect URI makes a native client (RFC 8252), and web and native redirect URIs do not mix');
    }
    if (type === 'native' && protocol === 'https:' && LOOPBACK_HOSTS.has(hostname)) {
      throw new ClientMetadataError(`${field}[${i}]`, 'must not be https on a loopback host in a native client (use http there, RFC 8252 7.3)');
    }
  });
}

/**
 * A back-channel logout URI the provider will call: https, or http on a loopback host (a development
 * or same-host application). Never an app scheme: the engine refuses the client for it.
 */
function backchannelUri(value: unknown, field: string): string {
  const checked = url(value, field);
  const { protocol, hostname } = new URL(checked);
  if (protocol !== 'https:' && !(protocol === 'http:' && LOOPBACK_HOSTS.has(hostname))) {
    throw new ClientMetadataError(field, `must be an https URL (http only on localhost, 127.0.0.1 or [::1]), got "${checked}"`);
  }
  return checked;
}

/**
 * Checks one client's metadata. `requireSecret`: secret-based methods need `client_secret` (the file);
 * the admin API generates it instead and passes false. `httpsOnly`: PUBLIC_URL is https (see
 * assertUsableFor).
 */
export function validateClientInput(raw: unknown, requireSecret: boolean, httpsOnly = false): ClientInput {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ClientMetadataError('client', 'must be an object');
  const o = raw as Record<string, unknown>;
  for (const key of Object.keys(o)) if (!KNOWN.has(key)) throw new ClientMetadataError(key, 'is not a supported client field');
  if (typeof o.client_id !== 'string' || !/^[A-Za-z0-9._~-]{1,100}$/.test(o.client_id)) {
    throw new ClientMetadataError('client_id', 'must be 1-100 characters of A-Z a-z 0-9 . _ ~ -');
  }
  const grantTypes = o.grant_types === undefined ? ['authorization_code'] : o.grant_types;
  if (!Array.isArray(grantTypes) || grantTypes.length === 0) throw new ClientMetadataError('grant_types', 'must be a non-empty array');
  grantTypes.forEach((g, i) => {
    if (!(GRANT_TYPES as readonly unknown[]).includes(g)) throw new ClientMetadataError(`grant_types[${i}]`, `must be one of ${GRANT_TYPES.join(', ')}`);
  });
  if (grantTypes.includes('refresh_token') && !grantTypes.includes('authorization_code')) {
    throw new ClientMetadataError('grant_types', 'may include refresh_token only with authorization_code');
  }
  const method = o.token_endpoint_auth_method === undefined ? 'client_secret_basic' : o.token_endpoint_auth_method;
  if (!(AUTH_METHODS as readonly unknown[]).includes(method)) throw new ClientMetadataError('token_endpoint_auth_method', `must be one of ${AUTH_METHODS.join(', ')}`);
  const userFacing = grantTypes.includes('authorization_code');
  if (method === 'none') {
    if (o.client_secret !== undefined) throw new ClientMetadataError('client_secret', 'must be absent for a public client (token_endpoint_auth_method "none")');
    if (grantTypes.includes('client_credentials')) throw new ClientMetadataError('grant_types', 'client_credentials needs a confidential client');
  } else if (o.client_secret !== undefined || requireSecret) {
    if (typeof o.client_secret !== 'string' || o.client_secret.length < MIN_SECRET_LENGTH) {
      throw new ClientMetadataError('client_secret', `must be a string of at least ${MIN_SECRET_LENGTH} characters`);
    }
  }
  let redirectUris: string[] = [];
  if (userFacing) {
    redirectUris = urls(o.redirect_uris, 'redirect_uris');
    if (redirectUris.length === 0) throw new ClientMetadataError('redirect_uris', 'must list at least one URL');
  } else if (o.redirect_uris !== undefined && !(Array.isArray(o.redirect_uris) && o.redirect_uris.length === 0)) {
    throw new ClientMetadataError('redirect_uris', 'must be absent for a client without the authorization_code grant');
  }
  for (const field of ['post_logout_redirect_uris', 'backchannel_logout_uri'] as const) {
    if (o[field] !== undefined && !userFacing) throw new ClientMetadataError(field, 'is only for clients with the authorization_code grant');
  }
  const type = applicationType(redirectUris);
  assertUsableFor(type, redirectUris, 'redirect_uris', httpsOnly);
  const postLogoutUris = o.post_logout_redirect_uris !== undefined ? urls(o.post_logout_redirect_uris, 'post_logout_redirect_uris') : undefined;
  if (postLogoutUris) assertUsableFor(type, postLogoutUris, 'post_logout_redirect_uris', httpsOnly);
  const backchannel = o.backchannel_logout_uri !== undefined ? backchannelUri(o.backchannel_logout_uri, 'backchannel_logout_uri') : undefined;
  const scope = o.scope === undefined ? OIDC_SCOPES.join(' ') : o.scope;
  if (typeof scope !== 'string' || scope.trim() === '') throw new ClientMetadataError('scope', 'must be a space-separated string');
  for (const s of scope.split(' ')) {
    if (!(OIDC_SCOPES as readonly string[]).includes(s)) throw new ClientMetadataError('scope', `may list only ${OIDC_SCOPES.join(', ')}; "${s}" is not one`);
  }
  if (o.skip_consent !== undefined && typeof o.skip_consent !== 'boolean') throw new ClientMetadataError('skip_consent', 'must be true or false');
  if (o.client_name !== undefined && (typeof o.client_name !== 'string' || o.client_name.length > 100)) {
    throw new ClientMetadataError('client_name', 'must be a string of at most 100 characters');
  }
  return {
    client_id: o.client_id,
    ...(typeof o.client_secret === 'string' ? { client_secret: o.client_secret } : {}),
    redirect_uris: redirectUris,
    ...(postLogoutUris ? { post_logout_redirect_uris: postLogoutUris } : {}),
    grant_types: grantTypes as string[],
    token_endpoint_auth_method: method as string,
    scope,
    ...(backchannel ? { backchannel_logout_uri: backchannel } : {}),
    skip_consent: o.skip_consent === true,
    ...(typeof o.client_name === 'string' ? { client_name: o.client_name } : {}),
  };
}

/** The engine's metadata for a validated client. */
export function toProviderMetadata(c: ClientInput): ClientMetadata {
  return {
    client_id: c.client_id,
    ...(c.client_secret ? { client_secret: c.client_secret } : {}),
    application_type: applicationType(c.redirect_uris),
    redirect_uris: c.redirect_uris,
    post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
    grant_types: c.grant_types,
    response_types: c.grant_types.includes('authorization_code') ? ['code'] : [],
    token_endpoint_auth_method: c.token_endpoint_auth_method as ClientMetadata['token_endpoint_auth_method'],
    scope: c.scope,
    ...(c.backchannel_logout_uri ? { backchannel_logout_uri: c.backchannel_logout_uri, backchannel_logout_session_required: true } : {}),
    ...(c.client_name ? { client_name: c.client_name } : {}),
    skip_consent: c.skip_consent,
  };
}
