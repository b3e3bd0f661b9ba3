/** SQL for MFA challenges. Attempts are reserved before a code is checked, so at most N codes are ever tried. */
import type { Queryable } from '../database.ts';

export interface MfaChallengeRow {
  id: string;
  user_id: string;
  attempts: number;
  created_at: Date;
  expires_at: Date;
  consumed_at: Date | null;
  /** The user's password_changed_at when the password that opened the challenge was checked (0010). */
  password_changed_at: Date | null;
}

/** A challenge to open: `password_changed_at` is the value the login's password check saw. */
export type NewMfaChallenge = Pick<MfaChallengeRow, 'id' | 'user_id' | 'created_at' | 'expires_at' | 'password_changed_at'> & { user_agent: string | null; ip: string | null };

/**
 * Inserts a challenge only while the user's password is still the one the login checked; false when
 * it changed. A reset ends open challenges (consumeAllChallenges), so a login whose check was in
 * flight across it must not open one afterwards. FOR SHARE on the user row: a reset that updated the
 * row but has not committed is waited for (and then nothing is inserted), and one that starts later
 * waits for this insert, then ends the challenge with the others.
 */
export async function insertChallenge(tx: Queryable, c: NewMfaChallenge): Promise<boolean> {
  const r = await tx.query(
    `INSERT INTO mfa_challenges (id, user_id, created_at, expires_at, user_agent, ip, password_changed_at)
     SELECT $1::uuid, u.id, $3::timestamptz, $4::timestamptz, $5::text, $6::text, u.password_changed_at
     FROM users u WHERE u.id = $2::uuid AND u.password_changed_at IS NOT DISTINCT FROM $7::timestamptz FOR SHARE`,
    [c.id, c.user_id, c.created_at, c.expires_at, c.user_agent, c.ip, c.password_changed_at],
  );
  return r.rowCount > 0;
}

/**
 * Reserves one attempt on a live challenge (guarded increment; committed on its own so a failing
 * request still counts). Undefined when the challenge is used, expired, over-tried or not the user's.
 */
export async function reserveAttempt(tx: Queryable, id: string, userId: string, now: Date, maxAttempts: number): Promise<MfaChallengeRow | undefined> {
  const r = await tx.query<MfaChallengeRow>(
    `UPDATE mfa_challenges SET attempts = attempts + 1
     WHERE id = $1 AND user_id = $2 AND consumed_at IS NULL AND expires_at > $3 AND attempts < $4 RETURNING *`,
    [id, userId, now, maxAttempts],
  );
  return r.rows[0];
}

/** A live challenge, without counting an attempt (e.g. to send an e-mailed code). */
export async function findLiveChallenge(tx: Queryable, id: string, userId: string, now: Date, maxAttempts: number): Promise<MfaChallengeRow | undefined> {
  const r = await tx.query<MfaChallengeRow>(
    'SELECT * FROM mfa_challenges WHERE id = $1 AND user_id = $2 AND consumed_at IS NULL AND expires_at > $3 AND attempts < $4',
    [id, userId, now, maxAttempts],
  );
  return r.rows[0];
}

/** Marks the challenge used; false when another request already did. */
export async function consumeChallenge(tx: Queryable, id: string, now: Date): Promise<boolean> {
  const r = await tx.query('UPDATE mfa_challenges SET consumed_at = $2 WHERE id = $1 AND consumed_at IS NULL', [id, now]);
  return r.rowCount > 0;
}

/** Ends every open challenge of the user (after a password change or reset: they were won with the old password). */
export async function consumeAllChallenges(tx: Queryable, userId: string, now: Date): Promise<number> {
  const r = await tx.query('UPDATE mfa_challenges SET consumed_at = $2 WHERE user_id = $1 AND consumed_at IS NULL', [userId, now]);
  return r.rowCount;
}
