/**
 * RFC 7662 token introspection for other services: is this token good right now? Unlike a JWT check
 * against the JWKS, the answer reflects revocation (logout, password change, reuse detection) at once.
 * Callers authenticate with the shared INTROSPECTION_SECRET; without one configured, nobody can call.
 */
import type { JWTPayload } from 'jose';
import type { Deps } from '../deps.ts';
import { AppError } from '../errors.ts';
import { TokenError, type TokenKind } from '../crypto/jwt.ts';
import { safeEqual } from '../crypto/token-hash.ts';
import { isCurrentRefreshToken } from '../db/repositories/sessions.ts';
import { readLiveSessionUser } from '../db/repositories/session-reads.ts';

/** The answer of introspection: `{active: false}` and nothing else for any token that is not good now. */
export interface IntrospectionResponse {
  active: boolean;
  token_type?: 'access_token' | 'refresh_token';
  sub?: string;
  sid?: string;
  jti?: string;
  exp?: number;
  iat?: number;
  iss?: string;
  aud?: string | string[];
  username?: string;
  amr?: string[];
  aal?: string;
  roles?: string[];
}

/**
 * Throws 401 invalid_client unless `presented` is the configured INTROSPECTION_SECRET. The secret is
 * compared in constant time. Failures are not fed to the login limiter: the secret is long (at least
 * 16 characters) and far out of reach of online guessing, while a per-IP lock shared with logins
 * could shut every dependent service out whenever users behind the same address mistype passwords.
 */
export function authenticateIntrospectionClient(deps: Pick<Deps, 'config'>, presented: string | undefined): void {
  const expected = deps.config.introspectionSecret;
  if (expected === undefined || presented === undefined || !safeEqual(presented, expected)) {
    throw new AppError('invalid_client', {
      detail: expected === undefined ? 'Introspection is not enabled on this service.' : 'Send the introspection secret as the Bearer token.',
      headers: { 'WWW-Authenticate': 'Bearer realm="introspection"' },
    });
  }
}

const INACTIVE: IntrospectionResponse = Object.freeze({ active: false });

/**
 * Introspects `token`: an access token of a live session of an active user, or the current refresh
 * token of such a session, is active; everything else (expired, tampered, revoked, rotated away, an
 * MFA challenge token, a token of another issuer or audience) is `{active: false}` with no reason.
 * `hint` (RFC 7662 token_type_hint) only changes the order in which the two types are tried.
 */
export async function introspectToken(deps: Deps, token: string, hint?: string): Promise<IntrospectionResponse> {
  const now = deps.clock();
  const kinds: TokenKind[] = hint === 'refresh_token' ? ['refresh', 'access'] : ['access', 'refresh'];
  for (const kind of kinds) {
    let claims: JWTPayload;
    try {
      claims = await deps.keys.verify(kind, token, now);
    } catch (e) {
      if (e instanceof TokenError) continue;
      throw e;
    }
    return kind === 'access' ? describeAccess(deps, claims, now) : describeRefresh(deps, claims, now);
  }
  return INACTIVE;
}

async function describeAccess(deps: Deps, claims: JWTPayload, now: Date): Promise<IntrospectionResponse> {
  const { sub, sid } = claims;
  if (typeof sub !== 'string' || typeof sid !== 'string') return INACTIVE;
  const live = await readLiveSessionUser(deps.db, sid, now);
  if (!live || live.user_id !== sub || !live.is_active) return INACTIVE;
  return {
    active: true,
    token_type: 'access_token',
    sub,
    sid,
    ...(typeof claims.jti === 'string' ? { jti: claims.jti } : {}),
    ...(claims.exp !== undefined ? { exp: claims.exp } : {}),
    ...(claims.iat !== undefined ? { iat: claims.iat } : {}),
    ...(claims.iss !== undefined ? { iss: claims.iss } : {}),
    ...(claims.aud !== undefined ? { aud: claims.aud } : {}),
    ...(typeof claims.username === 'string' ? { username: claims.username } : {}),
    ...(Array.isArray(claims.amr) ? { amr: claims.amr as string[] } : {}),
    ...(typeof claims.aal === 'string' ? { aal: claims.aal } : {}),
    ...(Array.isArray(claims.roles) ? { roles: currentRoles(claims.roles, live.roles) } : {}),
  };
}

/**
 * The token's roles that the user still holds. A role an admin has taken away must stop working at
 * once for services that ask here (that is what introspection is for), and one granted since the
 * token was issued is not claimed by it: it arrives with the next token, as it does offline.
 */
function currentRoles(tokenRoles: unknown[], storedRoles: readonly string[]): string[] {
  const held = new Set(storedRoles);
  return tokenRoles.filter((role): role is string => typeof role === 'string' && held.has(role));
}

async function describeRefresh(deps: Deps, claims: JWTPayload, now: Date): Promise<IntrospectionResponse> {
  const { sub, sid, jti } = claims;
  if (typeof sub !== 'string' || typeof sid !== 'string' || typeof jti !== 'string') return INACTIVE;
  // Only the session's current refresh token is good: one rotated away is spent (or stolen).
  if (!(await isCurrentRefreshToken(deps.db, sid, sub, jti, now))) return INACTIVE;
  return {
    active: true,
    token_type: 'refresh_token',
    sub,
    sid,
    jti,
    ...(claims.exp !== undefined ? { exp: claims.exp } : {}),
    ...(claims.iat !== undefined ? { iat: claims.iat } : {}),
    ...(claims.iss !== undefined ? { iss: claims.iss } : {}),
  };
}
