/** Turns an access token into the caller's identity, refusing tokens of revoked sessions at once. */
import type { Deps } from '../deps.ts';
import { AppError } from '../errors.ts';
import { TokenError } from '../crypto/jwt.ts';
import { readLiveSessionUser } from '../db/repositories/session-reads.ts';

/** Who is calling, from a verified access token of a live session. */
export interface AuthContext {
  userId: string;
  sessionId: string;
  username: string;
  aal: 'aal1' | 'aal2';
  amr: string[];
  /** The token's `roles` claim: the roles the user had when the token was signed. */
  roles: string[];
  /** Expiry of the access token (seconds since the epoch). */
  exp: number;
}

/**
 * The challenge of a refused access token (RFC 6750 §3): the token came as Bearer or as the access
 * cookie, and either way the client learns that a new token, not another scheme, is what it needs.
 */
export const INVALID_TOKEN_CHALLENGE = { 'WWW-Authenticate': 'Bearer error="invalid_token"' } as const;

function invalidToken(options: { detail?: string; cause?: unknown } = {}): AppError {
  return new AppError('invalid_token', { ...options, headers: { ...INVALID_TOKEN_CHALLENGE } });
}

/** Verifies `token` as an access token (signature, type, issuer, audience, expiry); no database access. */
export async function verifyAccessToken(deps: Deps, token: string): Promise<AuthContext> {
  let claims;
  try {
    claims = await deps.keys.verify('access', token, deps.clock());
  } catch (e) {
    if (e instanceof TokenError) throw invalidToken({ cause: e });
    throw e;
  }
  const sid = claims.sid;
  if (typeof sid !== 'string' || typeof claims.sub !== 'string') throw invalidToken({ detail: 'Token lacks a session.' });
  return {
    userId: claims.sub,
    sessionId: sid,
    username: typeof claims.username === 'string' ? claims.username : '',
    aal: claims.aal === 'aal2' ? 'aal2' : 'aal1',
    amr: Array.isArray(claims.amr) ? (claims.amr as string[]) : [],
    roles: Array.isArray(claims.roles) ? (claims.roles as unknown[]).filter((r): r is string => typeof r === 'string') : [],
    exp: claims.exp ?? 0,
  };
}

/**
 * Refuses the token unless its session was found live (not revoked, not expired) for its user, and
 * the user is active. The lookup is a database read on every request, so a signed, unexpired token of
 * a revoked session is refused immediately, on every instance.
 */
export function assertLiveSession<T extends { user_id: string; is_active: boolean }>(auth: Pick<AuthContext, 'userId'>, live: T | undefined): asserts live is T {
  if (!live || live.user_id !== auth.userId) throw invalidToken({ detail: 'The session has ended.' });
  if (!live.is_active) throw new AppError('account_inactive');
}

/** Verifies an access token and checks its session: the authentication of every protected route. */
export async function authenticateAccessToken(deps: Deps, token: string): Promise<AuthContext> {
  return (await authenticateWithRoles(deps, token)).auth;
}

/** As {@link authenticateAccessToken}, also returning the roles the user holds now (the admin guard's second check). */
export async function authenticateWithRoles(deps: Deps, token: string): Promise<{ auth: AuthContext; currentRoles: string[] }> {
  const auth = await verifyAccessToken(deps, token);
  const live = await readLiveSessionUser(deps.db, auth.sessionId, deps.clock());
  assertLiveSession(auth, live);
  return { auth, currentRoles: live.roles };
}

/** Throws step_up_required unless the session passed a second factor. */
export function requireAal2(auth: AuthContext): void {
  if (auth.aal !== 'aal2') {
    throw new AppError('step_up_required', { detail: 'This action needs a session that passed a second factor: log in again with your code.' });
  }
}
