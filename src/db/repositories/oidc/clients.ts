/** SQL for OpenID clients registered through the admin API. */
import type { Queryable } from '../../database.ts';

export interface OidcClientRow {
  client_id: string;
  metadata: Record<string, unknown>;
  secret_sealed: string | null;
  created_at: Date;
}

/** Inserts a client; false when the id is taken. */
export async function insertClient(tx: Queryable, row: OidcClientRow): Promise<boolean> {
  const r = await tx.query(
    'INSERT INTO oidc_clients (client_id, metadata, secret_sealed, created_at) VALUES ($1, $2::jsonb, $3, $4) ON CONFLICT (client_id) DO NOTHING',
    [row.client_id, JSON.stringify(row.metadata), row.secret_sealed, row.created_at],
  );
  return r.rowCount > 0;
}

export async function findClient(tx: Queryable, clientId: string): Promise<OidcClientRow | undefined> {
  return (await tx.query<OidcClientRow>('SELECT * FROM oidc_clients WHERE client_id = $1', [clientId])).rows[0];
}

export async function listClients(tx: Queryable): Promise<OidcClientRow[]> {
  return (await tx.query<OidcClientRow>('SELECT * FROM oidc_clients ORDER BY created_at, client_id')).rows;
}

/** Deletes a client; false when there was none. */
export async function deleteClient(tx: Queryable, clientId: string): Promise<boolean> {
  return (await tx.query('DELETE FROM oidc_clients WHERE client_id = $1', [clientId])).rowCount > 0;
}

/** Which of `clientIds` are registered (through the admin API). */
export async function registeredClientIds(tx: Queryable, clientIds: readonly string[]): Promise<string[]> {
  if (clientIds.length === 0) return [];
  const r = await tx.query<{ client_id: string }>('SELECT client_id FROM oidc_clients WHERE client_id = ANY($1::text[])', [[...clientIds]]);
  return r.rows.map((row) => row.client_id);
}
