/**
 * SQL for sessions (refresh-token families). Rotation and revocation are guarded single statements,
 * so concurrent refreshes with one token cannot both win, on PGlite or across server instances.
 */
import type { Queryable } from '../database.ts';

export interface SessionRow {
  id: string;
  user_id: string;
  current_jti: string;
  previous_jti: string | null;
  rotated_at: Date | null;
  /** Tokens rotated away before previous_jti, newest first, while still within the grace period (see rotate). */
  earlier_jtis: string[];
  earlier_rotated_at: Date[];
  amr: string[];
  aal: string;
  user_agent: string | null;
  ip: string | null;
  created_at: Date;
  last_used_at: Date;
  expires_at: Date;
  revoked_at: Date | null;
  revoked_reason: string | null;
}

export type NewSession = Pick<SessionRow, 'id' | 'user_id' | 'current_jti' | 'amr' | 'aal' | 'user_agent' | 'ip' | 'created_at' | 'expires_at'>;

/**
 * Inserts a session only while the user's password is still the one the login proved: the user's
 * `password_changed_at` must equal `passwordChangedAt`. False when nothing was inserted. The check
 * alone does not hold against a password change committing right after it: the caller's transaction
 * holds the user row's update lock, taken before (setLastLogin) or as its last statement
 * (noteLoginIfPasswordUnchanged), so a login in flight across a password change opens no session.
 * `FOR KEY SHARE`: a user row being deleted (an admin's uncommitted DELETE) is waited for and then
 * skipped, so nothing is inserted. Without it the row was read from before the deletion and the
 * foreign-key check failed once the deletion committed (a 500). The lock does not conflict with the
 * update lock of logins and password changes (FOR NO KEY UPDATE), so logins do not queue on it.
 */
export async function insertSession(tx: Queryable, s: NewSession, passwordChangedAt: Date | null): Promise<boolean> {
  const r = await tx.query(
    `INSERT INTO sessions (id, user_id, current_jti, amr, aal, user_agent, ip, created_at, last_used_at, expires_at)
     SELECT $1::uuid, u.id, $3::uuid, $4::text[], $5::text, $6::text, $7::text, $8::timestamptz, $8::timestamptz, $9::timestamptz
     FROM users u WHERE u.id = $2::uuid AND u.password_changed_at IS NOT DISTINCT FROM $10::timestamptz FOR KEY SHARE`,
    [s.id, s.user_id, s.current_jti, s.amr, s.aal, s.user_agent, s.ip, s.created_at, s.expires_at, passwordChangedAt],
  );
  return r.rowCount > 0;
}

export async function findSession(tx: Queryable, id: string): Promise<SessionRow | undefined> {
  return (await tx.query<SessionRow>('SELECT * FROM sessions WHERE id = $1', [id])).rows[0];
}

/** State needed to accept an access token: the session is live and its user active. */
export async function findLiveSessionUser(tx: Queryable, sessionId: string, now: Date): Promise<{ user_id: string; is_active: boolean; roles: string[] } | undefined> {
  const r = await tx.query<{ user_id: string; is_active: boolean; roles: string[] }>(
    `SELECT s.user_id, u.is_active, u.roles FROM sessions s JOIN users u ON u.id = s.user_id
     WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2`,
    [sessionId, now],
  );
  return r.rows[0];
}

/**
 * {@link findLiveSessionUser}, holding the session row (FOR SHARE) until the transaction ends: a
 * logout or revocation committing meanwhile waits for it, so a change made on the session's behalf is
 * either refused here or committed before the session ends, never made by a session already ended.
 */
export async function lockLiveSessionUser(tx: Queryable, sessionId: string, now: Date): Promise<{ user_id: string; is_active: boolean; roles: string[]; created_at: Date } | undefined> {
  const r = await tx.query<{ user_id: string; is_active: boolean; roles: string[]; created_at: Date }>(
    `SELECT s.user_id, u.is_active, u.roles, s.created_at FROM sessions s JOIN users u ON u.id = s.user_id
     WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 FOR SHARE OF s`,
    [sessionId, now],
  );
  return r.rows[0];
}

/**
 * Whether `jti` is the current refresh token of a live session of user `userId`, who is active: the
 * whole check of refresh-token introspection in one statement.
 */
export async function isCurrentRefreshToken(tx: Queryable, sessionId: string, userId: string, jti: string, now: Date): Promise<boolean> {
  const r = await tx.query(
    `SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id
     WHERE s.id = $1 AND s.user_id = $2 AND s.current_jti = $3 AND s.revoked_at IS NULL AND s.expires_at > $4 AND u.is_active`,
    [sessionId, userId, jti, now],
  );
  return r.rows.length > 0;
}

/** A rotated session with what its new tokens carry of it and of its user. */
export type RotatedSession = Pick<SessionRow, 'id' | 'user_id' | 'amr' | 'aal'> & { username: string; roles: string[] };

/** How many tokens rotated away before the previous one a session keeps for the grace period (see rotate). */
export const EARLIER_JTIS_KEPT = 16;

/**
 * Rotates `jti` → `newJti` only if `jti` is still the current one of a live session of `userId` (the
 * token's subject), and that user is active; returns the session with the user's name and roles (one round trip for a refresh).
 *
 * The token rotated away becomes previous_jti. The one previous before it joins earlier_jtis (newest
 * first, at most {@link EARLIER_JTIS_KEPT}) when it was rotated away within `graceSeconds`, so
 * {@link findWithinGrace} still knows it; otherwise every earlier one is older still, and the list is
 * emptied. So a session refreshed at ordinary intervals keeps an empty list, and only a burst of
 * rotations (tabs, retries) keeps a few entries, each checked against its own time.
 */
export async function rotate(tx: Queryable, sessionId: string, userId: string, jti: string, newJti: string, now: Date, expiresAt: Date, graceSeconds: number): Promise<RotatedSession | undefined> {
  const r = await tx.query<RotatedSession>(
    `UPDATE sessions s SET previous_jti = s.current_jti, current_jti = $3, rotated_at = $4, last_used_at = $4, expires_at = $5,
            earlier_jtis = CASE WHEN s.rotated_at > $4::timestamptz - make_interval(secs => $7)
                                THEN (s.previous_jti || s.earlier_jtis)[1:${EARLIER_JTIS_KEPT}] ELSE '{}' END,
            earlier_rotated_at = CASE WHEN s.rotated_at > $4::timestamptz - make_interval(secs => $7)
                                      THEN (s.rotated_at || s.earlier_rotated_at)[1:${EARLIER_JTIS_KEPT}] ELSE '{}' END
     FROM users u
     WHERE s.id = $1 AND s.user_id = $6 AND s.current_jti = $2 AND s.revoked_at IS NULL AND s.expires_at > $4
       AND u.id = s.user_id AND u.is_active
     -- Only what the new tokens carry: the rotation lists are arrays (uuid[], timestamptz[]) whose
     -- parsing cost a refresh about a tenth of its CPU when returned with s.*.
     RETURNING s.id, s.user_id, s.amr, s.aal, u.username, u.roles`,
    [sessionId, jti, newJti, now, expiresAt, userId, graceSeconds],
  );
  return r.rows[0];
}

/**
 * The grace path: `jti` was rotated away less than `graceSeconds` ago (two tabs refreshing at once, a
 * client retrying a refresh whose answer it lost), whether it is the previous token or an earlier one,
 * or the token was issued less than that ago (`issuedWithinGrace`: then it was rotated away since).
 * Returns the live session, whose current jti the caller re-issues, or undefined.
 */
export async function findWithinGrace(tx: Queryable, sessionId: string, jti: string, now: Date, graceSeconds: number, issuedWithinGrace: boolean): Promise<Pick<SessionRow, 'id' | 'user_id' | 'amr' | 'aal' | 'current_jti'> | undefined> {
  if (graceSeconds <= 0) return undefined;
  const r = await tx.query<Pick<SessionRow, 'id' | 'user_id' | 'amr' | 'aal' | 'current_jti'>>(
    `UPDATE sessions SET last_used_at = $3
     WHERE id = $1 AND revoked_at IS NULL AND expires_at > $3 AND current_jti <> $2
       AND ($5::boolean
         OR (previous_jti = $2 AND rotated_at > $3::timestamptz - make_interval(secs => $4))
         OR earlier_rotated_at[array_position(earlier_jtis, $2::uuid)] > $3::timestamptz - make_interval(secs => $4))
     RETURNING id, user_id, amr, aal, current_jti`,
    [sessionId, jti, now, graceSeconds, issuedWithinGrace],
  );
  return r.rows[0];
}

/** Revokes one session; returns its user's id, or undefined when it was already revoked or does not exist. */
export async function revokeSession(tx: Queryable, sessionId: string, reason: string, now: Date): Promise<string | undefined> {
  const r = await tx.query<{ user_id: string }>('UPDATE sessions SET revoked_at = $3, revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING user_id', [sessionId, reason, now]);
  return r.rows[0]?.user_id;
}

/** Revokes one session of one user (the user can only revoke their own). */
export async function revokeUserSession(tx: Queryable, userId: string, sessionId: string, reason: string, now: Date): Promise<boolean> {
  const r = await tx.query(
    'UPDATE sessions SET revoked_at = $4, revoked_reason = $3 WHERE id = $2 AND user_id = $1 AND revoked_at IS NULL AND expires_at > $4',
    [userId, sessionId, reason, now],
  );
  return r.rowCount > 0;
}

/**
 * Revokes every session of a user not yet revoked, except `keepSessionId` when given; returns the
 * ids of those that were still live (not expired), for the audit log.
 */
export async function revokeAllSessions(tx: Queryable, userId: string, reason: string, now: Date, keepSessionId?: string): Promise<string[]> {
  const r = await tx.query<{ id: string; live: boolean }>(
    `UPDATE sessions SET revoked_at = $3, revoked_reason = $2
     WHERE user_id = $1 AND revoked_at IS NULL AND ($4::uuid IS NULL OR id <> $4::uuid) RETURNING id, expires_at > $3 AS live`,
    [userId, reason, now, keepSessionId ?? null],
  );
  return r.rows.filter((s) => s.live).map((s) => s.id);
}

/**
 * The user's live sessions beyond the newest `max` ($1 user, $2 the session just opened, counted but
 * never one of them, $3 now, $4 `max` - 1), oldest last; the trim and its check below read the same.
 */
const OVER_LIMIT = `SELECT id FROM sessions
       WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $3 AND id <> $2
       ORDER BY created_at DESC, id DESC OFFSET $4`;

/**
 * Revokes, with reason `session_limit`, the user's live sessions beyond the newest `max` (counting
 * `keepSessionId`, the session just opened, which is never one of them: under a coarse clock it may
 * share its created_at with others), at most `batch` of them; returns their ids.
 *
 * Never waits for a session row: the candidates are picked without locks (`candidates`), then only
 * those are locked, skipping any another transaction holds (`taken`): a refresh of that session, a
 * request acting for it (a first factor confirmed from it holds it FOR SHARE, then waits for the user
 * row the login holds: waiting here would deadlock), or a logout or revocation ending it anyway. Nor
 * would a trim waiting for rows that a multi-row UPDATE of the user's sessions (revokeAllSessions)
 * holds, while that waits for rows the trim holds, ever end. The kept newest rows are not locked, so
 * their refreshes never wait here. A skipped row stays live until a later login trims it: the
 * overshoot is bounded by the user's old sessions busy at that instant (one refresh or request each).
 * Served by sessions_live_user_created_idx (migration 0017): only live rows are read.
 */
export async function revokeSessionsOverLimit(tx: Queryable, userId: string, keepSessionId: string, max: number, batch: number, now: Date): Promise<string[]> {
  const r = await tx.query<{ id: string }>(
    `WITH candidates AS (${OVER_LIMIT} LIMIT $5), taken AS MATERIALIZED (
       SELECT id FROM sessions WHERE id IN (SELECT id FROM candidates) AND revoked_at IS NULL FOR UPDATE SKIP LOCKED
     )
     UPDATE sessions s SET revoked_at = $3, revoked_reason = 'session_limit' FROM taken WHERE s.id = taken.id RETURNING s.id`,
    [userId, keepSessionId, now, max - 1, batch],
  );
  return r.rows.map((s) => s.id);
}

/**
 * Whether the user has more than `max` live sessions, `keepSessionId` (the one just opened) among
 * them: whether {@link revokeSessionsOverLimit} has anything to do. A plain read of at most `max`
 * entries of sessions_live_user_created_idx, asked first because the trim's statement (two CTEs, a
 * row lock, an UPDATE) cost 0.45 ms of PostgreSQL's CPU per login even with nothing to trim (the
 * bench's password row: 1.13 against 0.68 ms per login).
 */
export async function hasSessionsOverLimit(tx: Queryable, userId: string, keepSessionId: string, max: number, now: Date): Promise<boolean> {
  const r = await tx.query(
    `${OVER_LIMIT} LIMIT 1`,
    [userId, keepSessionId, now, max - 1],
  );
  return r.rows.length > 0;
}

/**
 * A user's live sessions, newest first, at most `limit` of them (an account over the cap, from before
 * it or while a later login trims it, has more); `currentSessionId`'s, when live, is always one of
 * them (in its place by age). Two bounded reads (the newest by the index, the current one by its key), not a
 * sort of every live session: a listing answered 33 MB for an account with 86,400 sessions.
 */
export async function listLiveSessions(tx: Queryable, userId: string, now: Date, limit: number, currentSessionId?: string): Promise<SessionRow[]> {
  return (
    await tx.query<SessionRow>(
      `SELECT * FROM (
         SELECT * FROM (
           (SELECT * FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND id IS DISTINCT FROM $4::uuid
            ORDER BY created_at DESC LIMIT $3)
           UNION ALL
           SELECT * FROM sessions WHERE id = $4::uuid AND user_id = $1 AND revoked_at IS NULL AND expires_at > $2
         ) u ORDER BY u.id IS NOT DISTINCT FROM $4::uuid DESC, u.created_at DESC LIMIT $3
       ) s ORDER BY s.created_at DESC`,
      [userId, now, limit, currentSessionId ?? null],
    )
  ).rows;
}
