/**
 * The only SQL for the mail outbox. Timestamps always come from the caller's clock as parameters,
 * never `now()` in SQL, so tests can freeze and move time.
 *
 * Delivery safety rests on two columns: `locked_until` is a lease taken by claimDue (instead of a
 * transaction held open during SMTP, which on PGlite's single connection would block every
 * request), and `attempts`, raised by every claim, identifies the claim: a worker may record the
 * outcome of a failed attempt only while the row still carries its claim's attempt number.
 */
import type { Queryable } from '../database.ts';
import { storedErrorText } from '../error-text.ts';

/** One row of the outbox table. */
export interface OutboxRow {
  id: string;
  kind: string;
  to_address: string;
  subject: string;
  text_body: string;
  html_body: string;
  created_at: Date;
  attempts: number;
  next_attempt_at: Date;
  locked_until: Date | null;
  sent_at: Date | null;
  failed_at: Date | null;
  last_error: string | null;
}

/** A mail to queue, already rendered. */
export interface NewOutboxRow {
  id: string;
  kind: string;
  to: string;
  subject: string;
  text: string;
  html: string;
  createdAt: Date;
}

/** Identifies one claim of a row: its id and the attempt number the claim gave it. */
export interface OutboxClaim {
  id: string;
  attempts: number;
}

/**
 * Every address in a mail's error text becomes `<address>` (not `<recipient>`: a refused sender is
 * quoted the same way). An SMTP server refusing a recipient often quotes it (Postfix: `550 5.1.1 <user@example.com>: Recipient address rejected`), and
 * last_error is shown to admins (GET /api/v1/admin/outbox), which never shows an address; the rest of
 * the reply (codes, the server's reason) stays: it is what the admin needs. Two linear passes, as the
 * text can be long before it is cut: a bracketed address or one with a quoted local part
 * (`"j doe"@host`), then any remaining word holding an `@` (a bare address, in any script).
 */
export function maskAddresses(s: string): string {
  return s
    .replace(/<[^<>\s@]*@[^<>\s]*>|"[^"\r\n<>]*"@[^\s<>()[\]\\,;:"']*/g, '<address>')
    .replace(/[^\s<>()[\]\\,;:"]+/g, (word) => (word.includes('@') ? '<address>' : word));
}

/** last_error of a mail: addresses masked, then cut to the stored bound (db/error-text.ts). */
function mailErrorText(s: string): string {
  return storedErrorText(maskAddresses(s));
}

/** Inserts a mail in the caller's transaction; it is due at once. */
export async function insert(tx: Queryable, row: NewOutboxRow): Promise<void> {
  await tx.query(
    `INSERT INTO outbox (id, kind, to_address, subject, text_body, html_body, created_at, attempts, next_attempt_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $7)`,
    [row.id, row.kind, row.to, row.subject, row.text, row.html, row.createdAt],
  );
}

/**
 * Claims up to `limit` due rows for `leaseSeconds`: sets their lease and counts the attempt, in one
 * statement. `FOR UPDATE SKIP LOCKED` lets several workers claim at once without waiting on or
 * taking each other's rows; the lease keeps a claimed row away from other workers after this
 * statement commits, and lets it be claimed again if its worker dies before recording an outcome.
 * The CTE is materialised once, so the LIMIT and the row locks apply exactly to the rows updated.
 */
export async function claimDue(db: Queryable, now: Date, limit: number, leaseSeconds: number): Promise<OutboxRow[]> {
  const leaseUntil = new Date(now.getTime() + leaseSeconds * 1000);
  const r = await db.query<OutboxRow>(
    `WITH due AS (
       SELECT id FROM outbox
        WHERE sent_at IS NULL AND failed_at IS NULL
          AND next_attempt_at <= $1
          AND (locked_until IS NULL OR locked_until <= $1)
        ORDER BY next_attempt_at
        LIMIT $3
        FOR UPDATE SKIP LOCKED
     )
     UPDATE outbox o SET locked_until = $2, attempts = o.attempts + 1
       FROM due WHERE o.id = due.id
     RETURNING o.*`,
    [now, leaseUntil, limit],
  );
  // RETURNING has no defined order: deliver the oldest-due first.
  return r.rows.sort((a, b) => a.next_attempt_at.getTime() - b.next_attempt_at.getTime() || (a.id < b.id ? -1 : 1));
}

/**
 * Records a delivery. Guarded only on `sent_at IS NULL`, not on the claim: once the SMTP server has
 * accepted the mail, that fact must be recorded even if the lease ran out meanwhile, so the row is
 * never sent again. False means another worker recorded it first (a duplicate went out; the
 * shared Message-ID lets the receiver drop it).
 */
export async function markSent(db: Queryable, id: string, sentAt: Date, keepBody: boolean): Promise<boolean> {
  const r = await db.query(
    `UPDATE outbox SET sent_at = $2, locked_until = NULL, failed_at = NULL,
       text_body = CASE WHEN $3 THEN text_body ELSE '' END, html_body = CASE WHEN $3 THEN html_body ELSE '' END
     WHERE id = $1 AND sent_at IS NULL`,
    [id, sentAt, keepBody],
  );
  return r.rowCount === 1;
}

/**
 * Pushes the lease of a claim to `leaseUntil`, only while that claim still holds the row (its attempt
 * number, its lease not yet ended at `now`, nothing recorded). A worker whose mail was accepted but
 * cannot be recorded yet keeps it this way from other workers, who would send it again. False: the
 * claim is no longer held (or the row was recorded meanwhile).
 */
export async function extendLease(db: Queryable, claim: OutboxClaim, now: Date, leaseUntil: Date): Promise<boolean> {
  const r = await db.query(
    `UPDATE outbox SET locked_until = $4
      WHERE id = $1 AND attempts = $2 AND sent_at IS NULL AND failed_at IS NULL AND locked_until > $3`,
    [claim.id, claim.attempts, now, leaseUntil],
  );
  return r.rowCount === 1;
}

/**
 * Schedules another attempt and releases the lease. Guarded on the claim, so a worker whose lease
 * expired and whose row was claimed again cannot overwrite the newer claim's state. False: claim lost.
 */
export async function markRetry(db: Queryable, claim: OutboxClaim, nextAttemptAt: Date, error: string): Promise<boolean> {
  const r = await db.query(
    `UPDATE outbox SET next_attempt_at = $3, last_error = $4, locked_until = NULL
      WHERE id = $1 AND attempts = $2 AND sent_at IS NULL AND failed_at IS NULL`,
    [claim.id, claim.attempts, nextAttemptAt, mailErrorText(error)],
  );
  return r.rowCount === 1;
}

/** Gives up on a row for good (guarded on the claim like markRetry). False: claim lost. */
export async function markFailed(db: Queryable, claim: OutboxClaim, failedAt: Date, error: string, keepBody: boolean): Promise<boolean> {
  const r = await db.query(
    `UPDATE outbox SET failed_at = $3, last_error = $4, locked_until = NULL,
       text_body = CASE WHEN $5 THEN text_body ELSE '' END, html_body = CASE WHEN $5 THEN html_body ELSE '' END
      WHERE id = $1 AND attempts = $2 AND sent_at IS NULL AND failed_at IS NULL`,
    [claim.id, claim.attempts, failedAt, mailErrorText(error), keepBody],
  );
  return r.rowCount === 1;
}

/** The most recent rows, newest first (development mailbox). */
export async function listRecent(db: Queryable, limit: number): Promise<OutboxRow[]> {
  const r = await db.query<OutboxRow>(`SELECT * FROM outbox ORDER BY created_at DESC, id DESC LIMIT $1`, [limit]);
  return r.rows;
}

/** One row by id, or undefined. */
export async function findById(db: Queryable, id: string): Promise<OutboxRow | undefined> {
  const r = await db.query<OutboxRow>(`SELECT * FROM outbox WHERE id = $1`, [id]);
  return r.rows[0];
}
