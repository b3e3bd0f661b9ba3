/** SQL for passkeys (WebAuthn credentials) and the per-user WebAuthn user handle. */
import type { Queryable } from '../../database.ts';

/** A passkey as stored. */
export interface PasskeyRow {
  id: string;
  user_id: string;
  credential_id: string;
  public_key: string;
  /** bigint comes back as a string from node-postgres; {@link toCounter} reads it. */
  counter: string | number;
  transports: string[];
  device_type: string;
  backed_up: boolean;
  aaguid: string;
  name: string;
  created_at: Date;
  last_used_at: Date | null;
  counter_regressions: number;
}

export type NewPasskey = Pick<PasskeyRow, 'id' | 'user_id' | 'credential_id' | 'public_key' | 'transports' | 'device_type' | 'backed_up' | 'aaguid' | 'name' | 'created_at'> & { counter: number };

/** The stored counter as a number (a signature counter is 32 bits, so it always fits). */
export function toCounter(row: Pick<PasskeyRow, 'counter'>): number {
  return Number(row.counter);
}

/**
 * Inserts a passkey; false when its credential id is already registered (to anyone), so the unique
 * index, not a read before the write, decides a race between two registrations of one credential.
 */
export async function insertPasskey(tx: Queryable, p: NewPasskey): Promise<boolean> {
  const r = await tx.query(
    `INSERT INTO passkeys (id, user_id, credential_id, public_key, counter, transports, device_type, backed_up, aaguid, name, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (credential_id) DO NOTHING`,
    [p.id, p.user_id, p.credential_id, p.public_key, p.counter, p.transports, p.device_type, p.backed_up, p.aaguid, p.name, p.created_at],
  );
  return r.rowCount > 0;
}

/** The user's passkeys, oldest first. */
export async function listPasskeys(tx: Queryable, userId: string): Promise<PasskeyRow[]> {
  return (await tx.query<PasskeyRow>('SELECT * FROM passkeys WHERE user_id = $1 ORDER BY created_at, id', [userId])).rows;
}

export async function countPasskeys(tx: Queryable, userId: string): Promise<number> {
  const r = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM passkeys WHERE user_id = $1', [userId]);
  return r.rows[0]?.n ?? 0;
}

/** The passkey with this credential id, whoever owns it. */
export async function findPasskeyByCredentialId(tx: Queryable, credentialId: string): Promise<PasskeyRow | undefined> {
  return (await tx.query<PasskeyRow>('SELECT * FROM passkeys WHERE credential_id = $1', [credentialId])).rows[0];
}

/** Renames the user's passkey; undefined when it is not theirs. */
export async function renamePasskey(tx: Queryable, userId: string, id: string, name: string): Promise<PasskeyRow | undefined> {
  return (await tx.query<PasskeyRow>('UPDATE passkeys SET name = $3 WHERE user_id = $1 AND id = $2 RETURNING *', [userId, id, name])).rows[0];
}

/** Deletes the user's passkey; the deleted row, or undefined when it is not theirs (or already gone). */
export async function deletePasskey(tx: Queryable, userId: string, id: string): Promise<PasskeyRow | undefined> {
  return (await tx.query<PasskeyRow>('DELETE FROM passkeys WHERE user_id = $1 AND id = $2 RETURNING *', [userId, id])).rows[0];
}

/** Deletes every passkey of the user (lost-device recovery); how many went. */
export async function deleteAllPasskeys(tx: Queryable, userId: string): Promise<Array<Pick<PasskeyRow, 'id' | 'name'>>> {
  return (await tx.query<Pick<PasskeyRow, 'id' | 'name'>>('DELETE FROM passkeys WHERE user_id = $1 RETURNING id, name', [userId])).rows;
}

/**
 * Records a use: the new counter, the backup state and the time, guarded so the counter never goes
 * back — of two assertions racing with counters 5 and 6, the one with 5 loses if 6 landed first.
 * A counter of 0 (authenticators that do not count) stays 0 and always passes. False when refused.
 */
export async function recordPasskeyUse(tx: Queryable, id: string, oldCounter: number, newCounter: number, backedUp: boolean, now: Date): Promise<boolean> {
  const r = await tx.query(
    `UPDATE passkeys SET counter = $3, backed_up = $4, last_used_at = $5
     WHERE id = $1 AND counter = $2 AND ($3::bigint > $2::bigint OR ($3::bigint = 0 AND $2::bigint = 0))`,
    [id, oldCounter, newCounter, backedUp, now],
  );
  return r.rowCount > 0;
}

/** Counts a signature-counter regression on the credential (a sign of a cloned authenticator). */
export async function recordCounterRegression(tx: Queryable, id: string): Promise<void> {
  await tx.query('UPDATE passkeys SET counter_regressions = counter_regressions + 1 WHERE id = $1', [id]);
}

/** The user's WebAuthn user handle, created (random) on first use; concurrent callers get the same one. Undefined when the user row is gone. */
export async function ensureWebauthnUserId(tx: Queryable, userId: string, fresh: string): Promise<string | undefined> {
  const r = await tx.query<{ webauthn_user_id: string }>(
    'UPDATE users SET webauthn_user_id = COALESCE(webauthn_user_id, $2) WHERE id = $1 RETURNING webauthn_user_id',
    [userId, fresh],
  );
  return r.rows[0]?.webauthn_user_id;
}

/** The user id of a WebAuthn user handle. */
export async function findUserIdByWebauthnUserId(tx: Queryable, handle: string): Promise<string | undefined> {
  return (await tx.query<{ id: string }>('SELECT id FROM users WHERE webauthn_user_id = $1', [handle])).rows[0]?.id;
}
