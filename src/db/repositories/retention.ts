/**
 * SQL for the retention job: rows whose purpose has passed, deleted in batches (each DELETE a
 * statement of its own, holding its locks briefly). Times come from the caller's clock.
 */
import type { Queryable } from '../database.ts';

/**
 * Sessions ended (revoked, or expired) before `before`, up to `batch`. A session an OpenID provider
 * session is still linked to stays: the logout sweep reads it to send the back-channel logouts.
 */
export async function deleteEndedSessions(db: Queryable, before: Date, batch: number): Promise<number> {
  const r = await db.query(
    `DELETE FROM sessions WHERE id IN (
       SELECT s.id FROM sessions s
        WHERE (s.revoked_at < $1 OR (s.revoked_at IS NULL AND s.expires_at < $1))
          AND NOT EXISTS (SELECT 1 FROM oidc_session_links l WHERE l.session_id = s.id)
        LIMIT $2)`,
    [before, batch],
  );
  return r.rowCount;
}

/** MFA challenges (and, by cascade, their WebAuthn challenges) expired before `before`, up to `batch`. */
export async function deleteExpiredMfaChallenges(db: Queryable, before: Date, batch: number): Promise<number> {
  const r = await db.query('DELETE FROM mfa_challenges WHERE id IN (SELECT id FROM mfa_challenges WHERE expires_at < $1 LIMIT $2)', [before, batch]);
  return r.rowCount;
}

/** E-mailed link tokens (verification, reset) expired before `before`, used or not, up to `batch`. */
export async function deleteExpiredEmailTokens(db: Queryable, before: Date, batch: number): Promise<number> {
  const r = await db.query('DELETE FROM email_tokens WHERE id IN (SELECT id FROM email_tokens WHERE expires_at < $1 LIMIT $2)', [before, batch]);
  return r.rowCount;
}

/** Outbox mails sent or given up before `before`, up to `batch` (pending ones are never touched). */
export async function deleteFinishedMails(db: Queryable, before: Date, batch: number): Promise<number> {
  const r = await db.query(
    'DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE sent_at < $1 OR failed_at < $1 LIMIT $2)',
    [before, batch],
  );
  return r.rowCount;
}

/**
 * WebAuthn challenges of every purpose expired before `before`, up to `batch`. Requests for new
 * options sweep expired ones too, but only when someone asks: without this, a passwordless sign-in's
 * login name (login_name: a keyed digest of whatever was typed, known or not; until the eighteenth
 * session the name as typed) stayed until the next such request, also after its account was deleted.
 */
export async function deleteExpiredWebauthnChallenges(db: Queryable, before: Date, batch: number): Promise<number> {
  const r = await db.query('DELETE FROM webauthn_challenges WHERE id IN (SELECT id FROM webauthn_challenges WHERE expires_at < $1 LIMIT $2)', [before, batch]);
  return r.rowCount;
}

/**
 * Clears the sign-up address of users created before `before`, up to `batch`; returns how many. Rows
 * locked by a transaction in flight (a login, an admin's change) are skipped, not waited for: the
 * next run takes them, and the job never holds a batch of user rows while it waits for one more. The
 * NO KEY lock, the UPDATE's own, does not block inserts of rows referencing the user (sessions).
 * The partial index users_signup_ip_created_idx (migration 0015) serves the inner query.
 */
export async function clearOldSignupIps(db: Queryable, before: Date, batch: number): Promise<number> {
  const r = await db.query(
    `UPDATE users SET signup_ip = NULL WHERE id IN (
       SELECT id FROM users WHERE signup_ip IS NOT NULL AND created_at < $1 LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED)`,
    [before, batch],
  );
  return r.rowCount;
}
