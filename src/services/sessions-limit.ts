/**
 * The cap on a user's live sessions (MAX_SESSIONS_PER_USER). Successful logins are not rate limited
 * and each opens a session that lives REFRESH_TOKEN_TTL (sliding), so without it one account grew the
 * sessions table without bound (about 70 logins a second, in the review). A login that takes the user
 * over the cap ends the oldest sessions, as every revocation is ended: audited (`session.revoked`,
 * reason `session_limit`) and announced to other services, in the login's transaction.
 */
import type { Deps } from '../deps.ts';
import type { Queryable } from '../db/database.ts';
import { hasSessionsOverLimit, revokeSessionsOverLimit } from '../db/repositories/sessions.ts';
import { recordSessionsRevoked } from './audit/login-events.ts';
import { userContext } from './audit/record.ts';
import type { ClientInfo } from './tokens.ts';

/**
 * Sessions one login ends at most. Steady state is one (the account sat at the cap); an account far
 * over it from before the cap (86,000 sessions in the review) is trimmed over several logins rather
 * than by one login writing 86,000 audit entries while it holds the user row's lock.
 */
const SESSION_TRIM_BATCH = 50;

/**
 * Ends the user's live sessions beyond the newest MAX_SESSIONS_PER_USER (the one just opened,
 * `sessionId`, always kept), at most {@link SESSION_TRIM_BATCH}.
 *
 * Call it as the LAST statement of a login's transaction, after the user row's update lock that the
 * login takes (at its start or as its last check) and after everything else there that could wait:
 * what follows it (the audit entries) only inserts. A password change, reset, logout everywhere or
 * admin revocation revokes the user's sessions in one UPDATE, some while holding the user row: a trim
 * holding old session rows while waiting for the user row would deadlock with them. The trim itself
 * never waits for a session row (see revokeSessionsOverLimit). And as every login holds the user
 * row's lock here, the trims of one account's logins run one after the other, each seeing the
 * sessions the ones before it committed: simultaneous logins do not overshoot the cap.
 */
export async function trimSessionsOverLimit(deps: Deps, tx: Queryable, userId: string, sessionId: string, client: ClientInfo): Promise<void> {
  const now = deps.clock();
  // Nearly every login is under the cap: a cheap read decides whether the trim's statement runs.
  if (!(await hasSessionsOverLimit(tx, userId, sessionId, deps.config.maxSessionsPerUser, now))) return;
  const ids = await revokeSessionsOverLimit(tx, userId, sessionId, deps.config.maxSessionsPerUser, SESSION_TRIM_BATCH, now);
  await recordSessionsRevoked(deps, tx, userContext(userId, client), userId, ids, 'session_limit');
}
