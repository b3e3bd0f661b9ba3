/**
 * SQL for webhook endpoints. Secrets arrive and leave sealed (the service seals and opens them);
 * timestamps come from the caller's clock.
 */
import type { Queryable } from '../../database.ts';

/** One row of webhook_endpoints. */
export interface EndpointRow {
  id: string;
  url: string;
  description: string;
  event_types: string[];
  secret_sealed: string;
  previous_secret_sealed: string | null;
  previous_secret_expires_at: Date | null;
  created_at: Date;
  failing_since: Date | null;
  marked_failing_at: Date | null;
}

/** An endpoint to store. */
export interface NewEndpoint {
  id: string;
  url: string;
  description: string;
  eventTypes: readonly string[];
  secretSealed: string;
  createdAt: Date;
}

export async function insertEndpoint(db: Queryable, e: NewEndpoint): Promise<EndpointRow> {
  const r = await db.query<EndpointRow>(
    `INSERT INTO webhook_endpoints (id, url, description, event_types, secret_sealed, created_at)
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING *`,
    [e.id, e.url, e.description, e.eventTypes, e.secretSealed, e.createdAt],
  );
  return r.rows[0]!;
}

/** Every endpoint, oldest first. */
export async function listEndpoints(db: Queryable): Promise<EndpointRow[]> {
  const r = await db.query<EndpointRow>(`SELECT * FROM webhook_endpoints ORDER BY created_at, id`);
  return r.rows;
}

export async function findEndpoint(db: Queryable, id: string): Promise<EndpointRow | undefined> {
  const r = await db.query<EndpointRow>(`SELECT * FROM webhook_endpoints WHERE id = $1`, [id]);
  return r.rows[0];
}

/** Deletes an endpoint and (by cascade) its deliveries; false when there was none. */
export async function deleteEndpoint(db: Queryable, id: string): Promise<boolean> {
  const r = await db.query(`DELETE FROM webhook_endpoints WHERE id = $1`, [id]);
  return r.rowCount === 1;
}

/** The endpoint, locked until the transaction ends (a rotation reads the secrets it replaces). */
export async function lockEndpoint(tx: Queryable, id: string): Promise<EndpointRow | undefined> {
  const r = await tx.query<EndpointRow>(`SELECT * FROM webhook_endpoints WHERE id = $1 FOR UPDATE`, [id]);
  return r.rows[0];
}

/**
 * Replaces the secret; `previousSealed` (the secrets still in their grace period, sealed together)
 * keep signing, the last of them until `previousExpiresAt`.
 */
export async function rotateSecret(tx: Queryable, id: string, newSealed: string, previousSealed: string | null, previousExpiresAt: Date | null): Promise<void> {
  await tx.query(
    `UPDATE webhook_endpoints SET secret_sealed = $2, previous_secret_sealed = $3, previous_secret_expires_at = $4 WHERE id = $1`,
    [id, newSealed, previousSealed, previousExpiresAt],
  );
}

/** Stores the endpoint's secrets sealed again (under the secret box's current key); nothing else changes. */
export async function resealSecrets(tx: Queryable, id: string, sealed: string, previousSealed: string | null): Promise<void> {
  await tx.query('UPDATE webhook_endpoints SET secret_sealed = $2, previous_secret_sealed = $3 WHERE id = $1', [id, sealed, previousSealed]);
}

/** Records a failed attempt: starts the failure run if none, and marks the endpoint failing once the run is `failingAfterSeconds` old. True when it was just marked. */
export async function noteFailure(db: Queryable, id: string, now: Date, failingAfterSeconds: number): Promise<boolean> {
  const threshold = new Date(now.getTime() - failingAfterSeconds * 1000);
  const r = await db.query<{ marked: boolean }>(
    `UPDATE webhook_endpoints
        SET failing_since = COALESCE(failing_since, $2),
            marked_failing_at = CASE WHEN marked_failing_at IS NULL AND COALESCE(failing_since, $2) <= $3 THEN $2 ELSE marked_failing_at END
      WHERE id = $1
      RETURNING (marked_failing_at = $2) AS marked`,
    [id, now, threshold],
  );
  return r.rows[0]?.marked === true;
}

/** A success ends the failure run. */
export async function noteSuccess(db: Queryable, id: string): Promise<void> {
  await db.query(
    `UPDATE webhook_endpoints SET failing_since = NULL, marked_failing_at = NULL
      WHERE id = $1 AND (failing_since IS NOT NULL OR marked_failing_at IS NOT NULL)`,
    [id],
  );
}
