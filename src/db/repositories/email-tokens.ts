/**
 * SQL for the single-use tokens of e-mailed links (e-mail verification, password reset). Only an
 * HMAC digest of a token is stored; a token is consumed by one guarded UPDATE, so of several
 * concurrent requests with one token exactly one wins, on PGlite and across server instances.
 */
import type { Queryable } from '../database.ts';

/** What a link token is for; the digest is also keyed by it, so one kind never passes for another. */
export type EmailTokenPurpose = 'verify_email' | 'reset_password';

/** An email_tokens row as stored. */
export interface EmailTokenRow {
  id: string;
  user_id: string;
  purpose: EmailTokenPurpose;
  token_hash: string;
  /** The address the link was sent to: a token only vouches for that address. */
  email: string;
  created_at: Date;
  expires_at: Date;
  consumed_at: Date | null;
}

export type NewEmailToken = Omit<EmailTokenRow, 'consumed_at'>;

/** Inserts a token; also drops the user's dead tokens of that purpose (consumed or expired) so the table stays small. */
export async function insertEmailToken(tx: Queryable, t: NewEmailToken): Promise<void> {
  await tx.query('DELETE FROM email_tokens WHERE user_id = $1 AND purpose = $2 AND (consumed_at IS NOT NULL OR expires_at <= $3)', [t.user_id, t.purpose, t.created_at]);
  await tx.query(
    `INSERT INTO email_tokens (id, user_id, purpose, token_hash, email, created_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [t.id, t.user_id, t.purpose, t.token_hash, t.email, t.created_at, t.expires_at],
  );
}

/**
 * Serialises the issuing of one user's `purpose` links until the transaction ends, so that of two
 * requests at once the second voids the first's link (under READ COMMITTED both voided nothing and
 * both links stayed live). An advisory lock, taken after the user row: every transaction that
 * touches a user's reset links takes the user row first (issuing, resetting, changing the password,
 * deactivating), so none of them deadlocks with another.
 */
export async function lockLinkIssue(tx: Queryable, userId: string, purpose: EmailTokenPurpose): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`email-link:${purpose}:${userId}`]);
}

/** Voids every unconsumed token of the user for `purpose` (a newer link replaces older ones); returns how many. */
export async function voidEmailTokens(tx: Queryable, userId: string, purpose: EmailTokenPurpose): Promise<number> {
  const r = await tx.query('DELETE FROM email_tokens WHERE user_id = $1 AND purpose = $2 AND consumed_at IS NULL', [userId, purpose]);
  return r.rowCount;
}

/** The live (unconsumed, unexpired) token with this digest, without consuming it. */
export async function findLiveEmailToken(tx: Queryable, purpose: EmailTokenPurpose, tokenHash: string, now: Date): Promise<EmailTokenRow | undefined> {
  const r = await tx.query<EmailTokenRow>(
    'SELECT * FROM email_tokens WHERE token_hash = $1 AND purpose = $2 AND consumed_at IS NULL AND expires_at > $3',
    [tokenHash, purpose, now],
  );
  return r.rows[0];
}

/**
 * Consumes the live token with this digest: one guarded statement, so exactly one caller gets the
 * row back however many present the token at once; undefined for an unknown, used or expired token.
 */
export async function consumeEmailToken(tx: Queryable, purpose: EmailTokenPurpose, tokenHash: string, now: Date): Promise<EmailTokenRow | undefined> {
  const r = await tx.query<EmailTokenRow>(
    `UPDATE email_tokens SET consumed_at = $3
     WHERE token_hash = $1 AND purpose = $2 AND consumed_at IS NULL AND expires_at > $3 RETURNING *`,
    [tokenHash, purpose, now],
  );
  return r.rows[0];
}
