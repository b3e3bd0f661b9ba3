/** Logout: revoke the session named by an access or refresh token; logout-all revokes every session. */
import type { Deps } from '../deps.ts';
import { AppError } from '../errors.ts';
import { TokenError } from '../crypto/jwt.ts';
import type { Queryable } from '../db/database.ts';
import { findSession, revokeAllSessions, revokeSession } from '../db/repositories/sessions.ts';
import { lockUserForUpdate } from '../db/repositories/users.ts';
import { recordSessionsRevoked } from './audit/login-events.ts';
import { recordSecurityEvent, userContext } from './audit/record.ts';
import { findInGrace, verifyRefreshToken } from './refresh.ts';
import type { ClientInfo } from './tokens.ts';

/** What a logout token names: its session and, for a refresh token, which of the family's tokens it is. */
interface Presented {
  sid: string;
  refresh?: { jti: string; sub: string; iat: number };
}

/**
 * Revokes the session of `token` (an access or a refresh token). Logging out a session that is
 * already revoked still succeeds: the client's goal, an ended session, holds.
 *
 * A refresh token that was rotated away (outside the grace period) is a replay, as at the refresh
 * endpoint: the session still ends and the answer is still 204, but it is recorded as reuse
 * (`refresh.reused`, revoked for `refresh_token_reused`). Recorded as a plain logout, a thief's stolen
 * copy ending the owner's session left no trace of the theft in the audit log or the events.
 */
export async function logout(deps: Deps, token: string, client: ClientInfo): Promise<void> {
  const now = deps.clock();
  const presented = await presentedSession(deps, token, now);
  const { sid } = presented;
  let reuseRecorded = false;
  await deps.db.transaction(async (tx) => {
    const reused = presented.refresh ? await rotatedAway(deps, tx, sid, presented.refresh, now) : false;
    const reason = reused ? 'refresh_token_reused' : 'logout';
    const userId = await revokeSession(tx, sid, reason, now);
    if (!userId) return;
    const ctx = userContext(userId, client);
    // The actor is whoever holds the replayed token, as for a replay at the refresh endpoint.
    if (reused) await recordSecurityEvent(tx, { ...ctx, type: 'refresh.reused', userId, data: { sid }, at: now });
    await recordSessionsRevoked(deps, tx, ctx, userId, [sid], reason);
    reuseRecorded = reused;
  });
  if (reuseRecorded) deps.logger.warn({ sessionId: sid, userId: presented.refresh?.sub }, 'refresh token reuse detected at logout; session revoked');
}

/** Verifies `token` as an access token, else as a refresh token. */
async function presentedSession(deps: Deps, token: string, now: Date): Promise<Presented> {
  try {
    const { sid } = await deps.keys.verify('access', token, now);
    if (typeof sid === 'string') return { sid };
  } catch (e) {
    if (!(e instanceof TokenError)) throw e;
  }
  try {
    const { sid, jti, sub, iat } = await verifyRefreshToken(deps, token);
    return { sid, refresh: { jti, sub, iat } };
  } catch (e) {
    if (!(e instanceof AppError) || e.code !== 'invalid_token') throw e;
    throw new AppError('invalid_token', { detail: 'Send a valid access or refresh token.', cause: e });
  }
}

/**
 * Whether the refresh token `jti` of session `sid` was rotated away outside the grace period: the
 * refresh endpoint's test for reuse (see refreshSession). The current jti is read first: once it is
 * another, `jti` stays rotated away for good, so a refresh committing meanwhile cannot make a token
 * current a moment ago look replayed; the grace check then sees that rotation's times.
 */
async function rotatedAway(deps: Deps, tx: Queryable, sid: string, token: { jti: string; sub: string; iat: number }, now: Date): Promise<boolean> {
  const session = await findSession(tx, sid);
  if (!session || session.user_id !== token.sub || session.current_jti === token.jti) return false;
  return !(await findInGrace(deps, tx, sid, token.jti, token.iat, now));
}

/**
 * Revokes every session of the user; returns how many were live. The user's row first, as every
 * change that revokes several sessions takes it (reset, password change, first factor, admin): a
 * first factor confirmed from one session holds that session and then revokes the others, and
 * logout-all locking the sessions in table order deadlocked with it on PostgreSQL (500, and the
 * confirming session survived "log out everywhere").
 */
export async function logoutAll(deps: Deps, userId: string, client: ClientInfo): Promise<number> {
  return deps.db.transaction(async (tx) => {
    await lockUserForUpdate(tx, userId);
    const revoked = await revokeAllSessions(tx, userId, 'logout_all', deps.clock());
    await recordSessionsRevoked(deps, tx, userContext(userId, client), userId, revoked, 'logout_all');
    return revoked.length;
  });
}
