/**
 * SQL for TOTP factors. `last_used_step` only ever grows, through guarded updates, so one code (one
 * time step) is accepted at most once per user even under concurrent requests on several instances.
 */
import type { Queryable } from '../database.ts';

export interface TotpFactorRow {
  user_id: string;
  active_secret: string | null;
  activated_at: Date | null;
  pending_secret: string | null;
  pending_created_at: Date | null;
  last_used_step: number;
  updated_at: Date;
}

export async function findTotpFactor(tx: Queryable, userId: string): Promise<TotpFactorRow | undefined> {
  return (await tx.query<TotpFactorRow>('SELECT * FROM totp_factors WHERE user_id = $1', [userId])).rows[0];
}

/** The parts of a TOTP row that checking a code needs. */
export type TotpSecrets = Pick<TotpFactorRow, 'user_id' | 'active_secret' | 'pending_secret' | 'last_used_step'>;

/** A user's TOTP secrets (if any), whether e-mailed codes are on, how many passkeys and backup codes they have: one round trip for login. */
export async function findFactorSummary(tx: Queryable, userId: string): Promise<{ totp: TotpSecrets | undefined; emailEnabled: boolean; passkeys: number; backupCodes: number }> {
  const r = await tx.query<{ totp: TotpSecrets | null; email_enabled: boolean; passkeys: number; backup_codes: number }>(
    `SELECT (SELECT jsonb_build_object('user_id', t.user_id, 'active_secret', t.active_secret, 'pending_secret', t.pending_secret,
                                       'last_used_step', t.last_used_step)
             FROM totp_factors t WHERE t.user_id = $1) AS totp,
       COALESCE((SELECT e.enabled_at IS NOT NULL FROM email_otp_factors e WHERE e.user_id = $1), false) AS email_enabled,
       (SELECT count(*)::int FROM passkeys p WHERE p.user_id = $1) AS passkeys,
       (SELECT count(*)::int FROM backup_codes b WHERE b.user_id = $1) AS backup_codes`,
    [userId],
  );
  const row = r.rows[0]!;
  return { totp: row.totp ?? undefined, emailEnabled: row.email_enabled, passkeys: row.passkeys, backupCodes: row.backup_codes };
}

/**
 * True when the user has set up a second factor (an active TOTP secret, e-mailed codes, a passkey),
 * offered or not: {@link findFactorSummary}'s answer to hasActiveFactor, in one cheap statement.
 */
export async function hasStoredFactor(tx: Queryable, userId: string): Promise<boolean> {
  const r = await tx.query<{ found: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM totp_factors t WHERE t.user_id = $1 AND t.active_secret IS NOT NULL)
         OR EXISTS (SELECT 1 FROM email_otp_factors e WHERE e.user_id = $1 AND e.enabled_at IS NOT NULL)
         OR EXISTS (SELECT 1 FROM passkeys p WHERE p.user_id = $1) AS found`,
    [userId],
  );
  return r.rows[0]?.found === true;
}

/** Stores a new pending secret (replacing an earlier pending one); the active secret, if any, stays. */
export async function setPendingSecret(tx: Queryable, userId: string, sealed: string, now: Date): Promise<void> {
  await tx.query(
    `INSERT INTO totp_factors (user_id, pending_secret, pending_created_at, updated_at) VALUES ($1, $2, $3, $3)
     ON CONFLICT (user_id) DO UPDATE SET pending_secret = $2, pending_created_at = $3, updated_at = $3`,
    [userId, sealed, now],
  );
}

/**
 * Stores a pending secret only while no secret is active (the /qrcode path, authenticated by
 * password alone, may never replace an active secret). Returns false when one is active.
 */
export async function setPendingSecretIfInactive(tx: Queryable, userId: string, sealed: string, now: Date): Promise<boolean> {
  const r = await tx.query(
    `INSERT INTO totp_factors (user_id, pending_secret, pending_created_at, updated_at) VALUES ($1, $2, $3, $3)
     ON CONFLICT (user_id) DO UPDATE SET pending_secret = $2, pending_created_at = $3, updated_at = $3
     WHERE totp_factors.active_secret IS NULL`,
    [userId, sealed, now],
  );
  return r.rowCount > 0;
}

/** Accepts time step `step` for the active secret: true only if it is later than every accepted one. */
export async function useActiveStep(tx: Queryable, userId: string, sealedActive: string, step: number, now: Date): Promise<boolean> {
  const r = await tx.query(
    'UPDATE totp_factors SET last_used_step = $3, updated_at = $4 WHERE user_id = $1 AND active_secret = $2 AND last_used_step < $3',
    [userId, sealedActive, step, now],
  );
  return r.rowCount > 0;
}

/** Activates the pending secret `sealedPending` with its first accepted step; false if it changed or the step is stale. */
export async function activatePending(tx: Queryable, userId: string, sealedPending: string, step: number, now: Date): Promise<boolean> {
  const r = await tx.query(
    `UPDATE totp_factors SET active_secret = pending_secret, activated_at = $4, pending_secret = NULL, pending_created_at = NULL,
       last_used_step = $3, updated_at = $4
     WHERE user_id = $1 AND pending_secret = $2 AND last_used_step < $3`,
    [userId, sealedPending, step, now],
  );
  return r.rowCount > 0;
}

/** Re-seals the active secret under the current key (key rotation), guarded on the old value. */
export async function resealActive(tx: Queryable, userId: string, oldSealed: string, newSealed: string): Promise<void> {
  await tx.query('UPDATE totp_factors SET active_secret = $3 WHERE user_id = $1 AND active_secret = $2', [userId, oldSealed, newSealed]);
}

/** Removes TOTP entirely (active and pending). Returns false if there was no active secret. */
export async function deleteTotpFactor(tx: Queryable, userId: string): Promise<boolean> {
  const r = await tx.query('DELETE FROM totp_factors WHERE user_id = $1 AND active_secret IS NOT NULL', [userId]);
  return r.rowCount > 0;
}

/**
 * Confirms the pending secret `sealedPending`: it becomes the active secret, replacing any active one
 * (re-enrolment by an aal2 session). `last_used_step` restarts at the confirming step, because the
 * old value belonged to the old secret; the guard on the pending value makes a second concurrent
 * confirm (or one racing a newer enrolment) change nothing. False when the pending secret changed.
 */
export async function confirmPendingSecret(tx: Queryable, userId: string, sealedPending: string, step: number, now: Date): Promise<boolean> {
  const r = await tx.query(
    `UPDATE totp_factors SET active_secret = pending_secret, activated_at = $4, pending_secret = NULL, pending_created_at = NULL,
       last_used_step = $3, updated_at = $4
     WHERE user_id = $1 AND pending_secret = $2`,
    [userId, sealedPending, step, now],
  );
  return r.rowCount > 0;
}
