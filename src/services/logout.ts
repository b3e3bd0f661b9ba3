/** Logout: revoke the session named by an access or refresh token; logout-all revokes every session. */
import type { Deps } from '../deps.ts';
import { AppError } from '../errors.ts';
import { TokenError } from '../crypto/jwt.ts';
import { revokeAllSessions, revokeSession } from '../db/repositories/sessions.ts';

/**
 * Revokes the session of `token` (an access or a refresh token). Logging out a session that is
 * already revoked still succeeds: the client's goal, an ended session, holds.
 */
export async function logout(deps: Deps, token: string): Promise<void> {
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
  await revokeSession(deps.db, sid, 'logout', now);
}

/** Revokes every session of the user. */
export async function logoutAll(deps: Deps, userId: string): Promise<number> {
  return revokeAllSessions(deps.db, userId, 'logout_all', deps.clock());
}
