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

function url(value: unknown, field: string, allowFragment = false): string {
  if (typeof value !== 'string') throw new ClientMetadataError(field, 'must be a URL string');
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new ClientMetadataError(field, `must be an absolute URL, got "${value}"`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:' && !/^[a-z][a-z0-9+.-]*\.[a-z0-9+.-]+:$/.test(u.protocol)) {
    throw new ClientMetadataError(field, `must be an http(s) URL or a reverse-domain app scheme, got "${value}"`);
  }
  if (!allowFragment && u.hash) throw new ClientMetadataError(field, 'must not contain a fragment');
  return value;
}

function urls(value: unknown, field: string): string[] {
  if (!Array.isArray(value)) throw new ClientMetadataError(field, 'must be an array of URLs');
  return value.map((v, i) => url(v, `${field}[${i}]`));
}

/**
 * Checks one client's metadata. `requireSecret`: secret-based methods need `client_secret` (the file);
 * the admin API generates it instead and passes false.
 */
export function validateClientInput(raw: unknown, requireSecret: boolean): ClientInput {
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
    ...(o.post_logout_redirect_uris !== undefined ? { post_logout_redirect_uris: urls(o.post_logout_redirect_uris, 'post_logout_redirect_uris') } : {}),
    grant_types: grantTypes as string[],
    token_endpoint_auth_method: method as string,
    scope,
    ...(o.backchannel_logout_uri !== undefined ? { backchannel_logout_uri: url(o.backchannel_logout_uri, 'backchannel_logout_uri') } : {}),
    skip_consent: o.skip_consent === true,
    ...(typeof o.client_name === 'string' ? { client_name: o.client_name } : {}),
  };
}

/** The engine's metadata for a validated client. */
export function toProviderMetadata(c: ClientInput): ClientMetadata {
  return {
    client_id: c.client_id,
    ...(c.client_secret ? { client_secret: c.client_secret } : {}),
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
