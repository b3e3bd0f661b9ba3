/** SQL for e-mailed one-time codes: one live code per (user, purpose); attempts survive a resend. */
import type { Queryable } from '../database.ts';

export interface EmailOtpRow {
  user_id: string;
  purpose: string;
  code_hash: string;
  expires_at: Date;
  attempts: number;
  last_sent_at: Date;
  created_at: Date;
}

/**
 * Stores a new code for (user, purpose), keeping the attempt count of an earlier one, unless that one
 * had used up `restartAt` attempts (a count of null never restarts).
 */
export async function upsertEmailOtp(tx: Queryable, userId: string, purpose: string, codeHash: string, now: Date, expiresAt: Date, restartAt: number | null): Promise<void> {
  await tx.query(
    `INSERT INTO email_otps (user_id, purpose, code_hash, expires_at, last_sent_at, created_at) VALUES ($1, $2, $3, $4, $5, $5)
     ON CONFLICT (user_id, purpose) DO UPDATE SET code_hash = $3, expires_at = $4, last_sent_at = $5,
       attempts = CASE WHEN email_otps.attempts >= $6::int THEN 0 ELSE email_otps.attempts END`,
    [userId, purpose, codeHash, expiresAt, now, restartAt],
  );
}

/**
 * Takes one attempt at the live code of (user, purpose) before it is compared: a guarded increment
 * that returns the stored digest, or undefined when there is no live code or it is over-tried.
 */
export async function reserveEmailOtpAttempt(tx: Queryable, userId: string, purpose: string, now: Date, maxAttempts: number): Promise<string | undefined> {
  const r = await tx.query<{ code_hash: string }>(
    `UPDATE email_otps SET attempts = attempts + 1
     WHERE user_id = $1 AND purpose = $2 AND expires_at > $3 AND attempts < $4 RETURNING code_hash`,
    [userId, purpose, now, maxAttempts],
  );
  return r.rows[0]?.code_hash;
}

/** Deletes the code with digest `codeHash`: true for exactly one caller (a resend in between replaced it: false). */
export async function spendEmailOtp(tx: Queryable, userId: string, purpose: string, codeHash: string): Promise<boolean> {
  const r = await tx.query('DELETE FROM email_otps WHERE user_id = $1 AND purpose = $2 AND code_hash = $3 RETURNING user_id', [userId, purpose, codeHash]);
  return r.rows.length > 0;
}

export async function findEmailOtp(tx: Queryable, userId: string, purpose: string): Promise<EmailOtpRow | undefined> {
  return (await tx.query<EmailOtpRow>('SELECT * FROM email_otps WHERE user_id = $1 AND purpose = $2', [userId, purpose])).rows[0];
}

export async function deleteEmailOtps(tx: Queryable, userId: string, purposePrefix: string): Promise<void> {
  await tx.query("DELETE FROM email_otps WHERE user_id = $1 AND purpose LIKE $2 || '%'", [userId, purposePrefix]);
}

/** Whether e-mailed codes are an enabled second factor of the user. */
export async function isEmailOtpEnabled(tx: Queryable, userId: string): Promise<boolean> {
  const r = await tx.query<{ on: boolean }>('SELECT enabled_at IS NOT NULL AS on FROM email_otp_factors WHERE user_id = $1', [userId]);
  return r.rows[0]?.on ?? false;
}

/** Records that the user asked to turn e-mailed codes on (enabled_at stays NULL until confirmed). */
export async function insertPendingEmailOtpFactor(tx: Queryable, userId: string, now: Date): Promise<void> {
  await tx.query('INSERT INTO email_otp_factors (user_id, enabled_at, created_at) VALUES ($1, NULL, $2) ON CONFLICT (user_id) DO NOTHING', [userId, now]);
}

/** Turns e-mailed codes on; true only for the call that switched them from off to on. */
export async function enableEmailOtpFactor(tx: Queryable, userId: string, now: Date): Promise<boolean> {
  const r = await tx.query(
    `INSERT INTO email_otp_factors (user_id, enabled_at, created_at) VALUES ($1, $2, $2)
     ON CONFLICT (user_id) DO UPDATE SET enabled_at = $2 WHERE email_otp_factors.enabled_at IS NULL`,
    [userId, now],
  );
  return r.rowCount > 0;
}

/** Turns e-mailed codes off (and forgets a pending enable); true when they were on. */
export async function deleteEmailOtpFactor(tx: Queryable, userId: string): Promise<boolean> {
  const r = await tx.query<{ enabled_at: Date | null }>('DELETE FROM email_otp_factors WHERE user_id = $1 RETURNING enabled_at', [userId]);
  return r.rows.some((row) => row.enabled_at !== null);
}

/** Deletes the user's expired codes, so the next code for that purpose starts with a fresh attempt count. */
export async function deleteExpiredEmailOtps(tx: Queryable, userId: string, now: Date): Promise<void> {
  await tx.query('DELETE FROM email_otps WHERE user_id = $1 AND expires_at <= $2', [userId, now]);
}
