/**
 * Refresh-token rotation with reuse detection. The presented token must carry the session's current
 * jti; the guarded UPDATE lets exactly one of several concurrent refreshes win. A token rotated away
 * within REFRESH_REUSE_GRACE_SECONDS (two tabs at once, a retry) gets the current pair re-issued; any other
 * rotated token is a replay (likely a stolen copy), so the whole session is revoked.
 */
import type { Deps } from '../deps.ts';
import type { Queryable } from '../db/database.ts';
import { AppError } from '../errors.ts';
import { TokenError } from '../crypto/jwt.ts';
import { newId } from '../crypto/random.ts';
import { findSession, findWithinGrace, revokeSession, rotate } from '../db/repositories/sessions.ts';
import { findUserById } from '../db/repositories/users.ts';
import { signTokenPair, type ClientInfo, type TokenPair } from './tokens.ts';
import { recordSessionsRevoked } from './audit/login-events.ts';
import { recordSecurityEvent, userContext } from './audit/record.ts';

/** Verifies a refresh token's signature, type and expiry; returns its session id, jti, user and issue time (epoch seconds). */
export async function verifyRefreshToken(deps: Deps, token: string): Promise<{ sid: string; jti: string; sub: string; iat: number }> {
  try {
    const claims = await deps.keys.verify('refresh', token, deps.clock());
    if (typeof claims.sid !== 'string' || typeof claims.jti !== 'string' || typeof claims.sub !== 'string' || typeof claims.iat !== 'number') throw new TokenError('claims');
    return { sid: claims.sid, jti: claims.jti, sub: claims.sub, iat: claims.iat };
  } catch (e) {
    if (e instanceof TokenError) throw new AppError('invalid_token', { detail: 'The refresh token is invalid or expired.', cause: e });
    throw e;
  }
}

/**
 * The session of refresh token `jti` (issued at `iat`) when that token was rotated away less than
 * REFRESH_REUSE_GRACE_SECONDS ago, else undefined: the refresh endpoint's and logout's test for reuse.
 * A token issued less than the grace period ago and no longer current was rotated away since, so
 * within the period, however many rotations followed (the session keeps a bounded list of them). An
 * issue time in the future (another instance's clock ahead) proves nothing: the lists decide then.
 */
export function findInGrace(deps: Deps, db: Queryable, sid: string, jti: string, iat: number, now: Date) {
  const grace = deps.config.refreshReuseGraceSeconds;
  const age = now.getTime() - iat * 1000;
  return findWithinGrace(db, sid, jti, now, grace, age >= 0 && age < grace * 1000);
}

/** Rotates the refresh token of a session and returns a new pair. */
export async function refreshSession(deps: Deps, token: string, client: ClientInfo): Promise<TokenPair> {
  const { sid, jti, sub, iat } = await verifyRefreshToken(deps, token);
  const now = deps.clock();
  const newJti = newId();
  const expiresAt = new Date(now.getTime() + deps.config.refreshTokenTtlSeconds * 1000);
  // The common case in one statement: the token is current and its user active.
  const rotated = await rotate(deps.db, sid, sub, jti, newJti, now, expiresAt, deps.config.refreshReuseGraceSeconds);
  if (rotated) {
    return signTokenPair(deps, { id: rotated.user_id, username: rotated.username, roles: rotated.roles }, rotated, newJti);
  }

  // Why not: the user (gone or deactivated), two tabs within the grace period, or a replay.
  const user = await findUserById(deps.db, sub);
  if (!user) throw new AppError('invalid_token');
  // 401 like any token that no longer works (the contract lists only 401s here; deactivation also
  // revoked the sessions): the login that follows says why, to whoever has the password.
  if (!user.is_active) throw new AppError('invalid_token', { detail: 'The session has ended.' });
  const graced = await findInGrace(deps, deps.db, sid, jti, iat, now);
  if (graced && graced.user_id === sub) return signTokenPair(deps, user, graced, graced.current_jti);

  const session = await findSession(deps.db, sid);
  if (!session || session.user_id !== sub) throw new AppError('invalid_token', { detail: 'The session has ended.' });
  if (session.current_jti === jti) {
    // The current token of a session that was logged out, revoked or has expired: simply invalid.
    throw new AppError('invalid_token', { detail: 'The session has ended.' });
  }
  // A correctly signed token of this session whose jti is not current: it was rotated away before, so
  // someone replays it (a stolen copy, or the thief's copy after the user refreshed). Revoke the family.
  // That includes a token rotated away within the grace period but past the session's list of them
  // (over EARLIER_JTIS_KEPT rotations in the period) whose own age does not show it: refusing it
  // without revoking let a thief who refreshes twice a second make the owner's every replay harmless.
  if (!session.revoked_at) {
    await deps.db.transaction(async (tx) => {
      if (!(await revokeSession(tx, sid, 'refresh_token_reused', now))) return;
      // The actor is whoever holds the replayed token: recorded as the user, from the replaying client.
      const ctx = userContext(sub, client);
      await recordSecurityEvent(tx, { ...ctx, type: 'refresh.reused', userId: sub, data: { sid }, at: now });
      await recordSessionsRevoked(deps, tx, ctx, sub, [sid], 'refresh_token_reused');
    });
    deps.logger.warn({ sessionId: sid, userId: sub }, 'refresh token reuse detected; session revoked');
  }
  throw new AppError('refresh_token_reused', { detail: 'This refresh token was already used; the session has been revoked.' });
}

