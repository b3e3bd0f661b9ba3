/** SQL for backup codes, stored as keyed digests. Consumption is one DELETE … RETURNING: single use under any concurrency. */
import type { Queryable } from '../database.ts';
import { lockUserForUpdate } from './users.ts';

/** Replaces the user's whole set with `hashes` (earlier codes void). */
export async function replaceBackupCodes(tx: Queryable, userId: string, rows: Array<{ id: string; hash: string }>, now: Date): Promise<void> {
  await tx.query('DELETE FROM backup_codes WHERE user_id = $1', [userId]);
  for (const row of rows) {
    await tx.query('INSERT INTO backup_codes (id, user_id, code_hash, created_at) VALUES ($1, $2, $3, $4)', [row.id, userId, row.hash, now]);
  }
}

/** Deletes the matching code; true for exactly one caller per code. */
export async function consumeBackupCode(tx: Queryable, userId: string, hash: string): Promise<boolean> {
  const r = await tx.query('DELETE FROM backup_codes WHERE user_id = $1 AND code_hash = $2 RETURNING id', [userId, hash]);
  return r.rows.length > 0;
}

export async function countBackupCodes(tx: Queryable, userId: string): Promise<number> {
  const r = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM backup_codes WHERE user_id = $1', [userId]);
  return r.rows[0]?.n ?? 0;
}

export async function deleteBackupCodes(tx: Queryable, userId: string): Promise<void> {
  await tx.query('DELETE FROM backup_codes WHERE user_id = $1', [userId]);
}

/**
 * Serialises changes of one user's set until `tx` ends, by locking the user's row. Without it two
 * concurrent replacements on PostgreSQL (READ COMMITTED) would each delete only the rows they can
 * see and then both insert: twenty valid codes. FOR NO KEY UPDATE does not block inserts that merely
 * reference the user (foreign keys take KEY SHARE).
 */
export async function lockBackupCodes(tx: Queryable, userId: string): Promise<void> {
  await lockUserForUpdate(tx, userId);
}
