/** SQL for the consent remembered per user and client ("Connected applications"). */
import type { Queryable } from '../../database.ts';

export interface ConsentRow {
  user_id: string;
  client_id: string;
  scopes: string[];
  created_at: Date;
  updated_at: Date;
}

/** Records (or widens) the scopes `userId` granted `clientId`. */
export async function upsertConsent(tx: Queryable, userId: string, clientId: string, scopes: readonly string[], now: Date): Promise<void> {
  await tx.query(
    `INSERT INTO oidc_consents (user_id, client_id, scopes, created_at, updated_at) VALUES ($1, $2, $3::text[], $4, $4)
     ON CONFLICT (user_id, client_id) DO UPDATE SET
       scopes = ARRAY(SELECT DISTINCT unnest(oidc_consents.scopes || EXCLUDED.scopes) ORDER BY 1), updated_at = EXCLUDED.updated_at`,
    [userId, clientId, [...scopes], now],
  );
}

export async function findConsent(tx: Queryable, userId: string, clientId: string): Promise<ConsentRow | undefined> {
  return (await tx.query<ConsentRow>('SELECT * FROM oidc_consents WHERE user_id = $1 AND client_id = $2', [userId, clientId])).rows[0];
}

export async function listConsents(tx: Queryable, userId: string): Promise<ConsentRow[]> {
  return (await tx.query<ConsentRow>('SELECT * FROM oidc_consents WHERE user_id = $1 ORDER BY created_at, client_id', [userId])).rows;
}

/** Deletes a consent; false when there was none. */
export async function deleteConsent(tx: Queryable, userId: string, clientId: string): Promise<boolean> {
  return (await tx.query('DELETE FROM oidc_consents WHERE user_id = $1 AND client_id = $2', [userId, clientId])).rowCount > 0;
}

/** Forgets every consent given to `clientId` (the client was removed). */
export async function deleteConsentsOfClient(tx: Queryable, clientId: string): Promise<void> {
  await tx.query('DELETE FROM oidc_consents WHERE client_id = $1', [clientId]);
}
