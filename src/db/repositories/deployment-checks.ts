/**
 * SQL for deployment_checks: one value per name that every instance of a deployment must share
 * (migration 0016). A value is recorded once, by the first server to open the database, and only
 * replaced by an operator's explicit command.
 */
import type { Queryable } from '../database.ts';

/**
 * Records `value` under `name` unless a value is there already; returns the value stored afterwards.
 * Two processes doing this at once both read the one that won: PostgreSQL makes the second INSERT
 * wait for the first to commit, then do nothing (ON CONFLICT), and the read after it sees the winner.
 */
export async function recordCheckOnce(db: Queryable, name: string, value: string, at: Date): Promise<string> {
  await db.query('INSERT INTO deployment_checks (name, value, recorded_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING', [name, value, at]);
  const r = await db.query<{ value: string }>('SELECT value FROM deployment_checks WHERE name = $1', [name]);
  // Rows are never deleted, so the row the INSERT found or made is there.
  return r.rows[0]!.value;
}

/** The value under `name` (undefined when none was recorded). */
export async function readCheck(db: Queryable, name: string): Promise<string | undefined> {
  return (await db.query<{ value: string }>('SELECT value FROM deployment_checks WHERE name = $1', [name])).rows[0]?.value;
}

/** The value under `name`, locked until the end of `tx` (undefined when none was recorded). */
export async function lockCheck(tx: Queryable, name: string): Promise<string | undefined> {
  const r = await tx.query<{ value: string }>('SELECT value FROM deployment_checks WHERE name = $1 FOR UPDATE', [name]);
  return r.rows[0]?.value;
}

/** Records `value` under `name`, replacing the one there. */
export async function replaceCheck(tx: Queryable, name: string, value: string, at: Date): Promise<void> {
  await tx.query(
    `INSERT INTO deployment_checks (name, value, recorded_at) VALUES ($1, $2, $3)
     ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, recorded_at = EXCLUDED.recorded_at`,
    [name, value, at],
  );
}
