/**
 * SQL for single-use WebAuthn challenges. A challenge is taken by one DELETE … RETURNING, so of any
 * number of simultaneous requests carrying it exactly one gets it, on PGlite and PostgreSQL alike.
 */
import type { Queryable } from '../../database.ts';

/** What a challenge is for. */
export type ChallengePurpose = 'registration' | 'login' | 'mfa';

export interface WebauthnChallengeRow {
  id: string;
  challenge: string;
  purpose: ChallengePurpose;
  user_id: string | null;
  mfa_challenge_id: string | null;
  /**
   * The limiter's account name (a keyed digest, services/password-check.ts loginAccountName) of the
   * login name a passwordless sign-in's options were asked for; null otherwise. Never the name as typed.
   */
  login_name: string | null;
  created_at: Date;
  expires_at: Date;
}

/** Stores a challenge; expired ones are swept first (the table holds only live challenges). */
export async function insertWebauthnChallenge(tx: Queryable, c: WebauthnChallengeRow): Promise<void> {
  await sweepExpiredChallenges(tx, c.created_at);
  await insertChallengeRow(tx, c);
}

/** Deletes every challenge expired at `now`. */
export async function sweepExpiredChallenges(db: Queryable, now: Date): Promise<void> {
  await db.query('DELETE FROM webauthn_challenges WHERE expires_at <= $1', [now]);
}

/** Stores a challenge without the sweep (a caller holding locks sweeps before taking them). */
export async function insertChallengeRow(tx: Queryable, c: WebauthnChallengeRow): Promise<void> {
  await tx.query(
    `INSERT INTO webauthn_challenges (id, challenge, purpose, user_id, mfa_challenge_id, login_name, created_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [c.id, c.challenge, c.purpose, c.user_id, c.mfa_challenge_id, c.login_name, c.created_at, c.expires_at],
  );
}

/**
 * Deletes the user's registration challenges but the `keep` newest: what one session's requests for
 * creation options can leave behind is bounded, not one row per request for five minutes.
 */
export async function trimRegistrationChallenges(tx: Queryable, userId: string, keep: number): Promise<void> {
  await tx.query(
    `DELETE FROM webauthn_challenges WHERE purpose = 'registration' AND user_id = $1 AND id NOT IN (
       SELECT id FROM webauthn_challenges WHERE purpose = 'registration' AND user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2)`,
    [userId, keep],
  );
}

/**
 * Takes the live challenge `challenge` of `purpose`, bound to `binding` (the user for
 * 'registration', the MFA challenge for 'mfa', the challenge_token's id for 'login'). Deleted
 * whatever happens next: a challenge is tried once. Undefined when it is unknown, used, expired or
 * bound to someone else.
 */
export async function takeWebauthnChallenge(
  tx: Queryable,
  purpose: ChallengePurpose,
  challenge: string,
  binding: { userId?: string; mfaChallengeId?: string; id?: string },
  now: Date,
): Promise<WebauthnChallengeRow | undefined> {
  // Never unbound: a challenge must only ever serve the one it was issued to.
  if (binding.userId === undefined && binding.mfaChallengeId === undefined && binding.id === undefined) throw new Error('a challenge is taken with its binding');
  const r = await tx.query<WebauthnChallengeRow>(
    `DELETE FROM webauthn_challenges
     WHERE challenge = $1 AND purpose = $2 AND expires_at > $3
       AND ($4::uuid IS NULL OR user_id = $4) AND ($5::uuid IS NULL OR mfa_challenge_id = $5) AND ($6::text IS NULL OR id = $6)
     RETURNING *`,
    [challenge, purpose, now, binding.userId ?? null, binding.mfaChallengeId ?? null, binding.id ?? null],
  );
  return r.rows[0];
}
