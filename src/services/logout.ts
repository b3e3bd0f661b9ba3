/** Logout: revoke the session named by an access or refresh token; logout-all revokes every session. */
import type { Deps } from '../deps.ts';
import { AppError } from '../errors.ts';
import { TokenError } from '../crypto/jwt.ts';
import { revokeAllSessions, revokeSession } from '../db/repositories/sessions.ts';
import { lockUserForUpdate } from '../db/repositories/users.ts';
import { recordSessionsRevoked } from './audit/login-events.ts';
import { userContext } from './audit/record.ts';
import type { ClientInfo } from './tokens.ts';

/**
 * Revokes the session of `token` (an access or a refresh token). Logging out a session that is
 * already revoked still succeeds: the client's goal, an ended session, holds.
 */
export async function logout(deps: Deps, token: string, client: ClientInfo): Promise<void> {
  const now = deps.clock();
  let sid: unknown;
  for (const kind of ['access', 'refresh'] as const) {
    try {
      sid = (await deps.keys.verify(kind, token, now)).sid;
      break;
    } catch (e) {
      if (!(e instanceof TokenError)) throw e;
    }
  }
  if (typeof sid !== 'string') throw new AppError('invalid_token', { detail: 'Send a valid access or refresh token.' });
  const revokedSid = sid;
  await deps.db.transaction(async (tx) => {
    const userId = await revokeSession(tx, revokedSid, 'logout', now);
    if (userId) await recordSessionsRevoked(deps, tx, userContext(userId, client), userId, [revokedSid], 'logout');
  });
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
