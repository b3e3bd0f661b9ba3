/** The caller's sessions: list them (marking the current one) and revoke one. */
import type { Deps } from '../deps.ts';
import { AppError } from '../errors.ts';
import { listLiveSessions, revokeUserSession } from '../db/repositories/sessions.ts';
import type { AuthContext } from './authenticate.ts';
import { recordSessionsRevoked } from './audit/login-events.ts';
import { userContext } from './audit/record.ts';
import type { ClientInfo } from './tokens.ts';
import { isUuid } from '../crypto/random.ts';

/** One session as the API shows it. */
export interface SessionView {
  id: string;
  created_at: string;
  last_used_at: string;
  user_agent: string | null;
  ip: string | null;
  /** True for the session of the access token making the request. */
  current: boolean;
}

/**
 * The caller's live sessions (not revoked, not expired), newest first: at most MAX_SESSIONS_PER_USER
 * (an account over the cap from before it has more until its logins trim them), always with the
 * caller's own.
 */
export async function listSessions(deps: Deps, auth: Pick<AuthContext, 'userId' | 'sessionId'>): Promise<SessionView[]> {
  const rows = await listLiveSessions(deps.db, auth.userId, deps.clock(), deps.config.maxSessionsPerUser, auth.sessionId);
  return rows.map((s) => ({
    id: s.id,
    created_at: s.created_at.toISOString(),
    last_used_at: s.last_used_at.toISOString(),
    user_agent: s.user_agent,
    ip: s.ip,
    current: s.id === auth.sessionId,
  }));
}

/**
 * Revokes one of the caller's sessions; its tokens are refused at once. Another user's session, an
 * ended one and an id that is no session at all get the same 404, so ids of others reveal nothing.
 * Returns whether it was the caller's own current session.
 */
export async function revokeOwnSession(deps: Deps, auth: Pick<AuthContext, 'userId' | 'sessionId'>, sessionId: string, client: ClientInfo): Promise<{ current: boolean }> {
  const sid = sessionId.toLowerCase();
  const revoked =
    isUuid(sessionId) &&
    (await deps.db.transaction(async (tx) => {
      if (!(await revokeUserSession(tx, auth.userId, sid, 'revoked_by_user', deps.clock()))) return false;
      await recordSessionsRevoked(deps, tx, userContext(auth.userId, client), auth.userId, [sid], 'revoked_by_user');
      return true;
    }));
  if (!revoked) throw new AppError('session_not_found', { detail: 'You have no live session with this id.' });
  return { current: sessionId.toLowerCase() === auth.sessionId };
}
