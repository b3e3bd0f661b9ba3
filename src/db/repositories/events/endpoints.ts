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
  deleted_at: Date | null;
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

/** Every endpoint not being deleted, oldest first. */
export async function listEndpoints(db: Queryable): Promise<EndpointRow[]> {
  const r = await db.query<EndpointRow>(`SELECT * FROM webhook_endpoints WHERE deleted_at IS NULL ORDER BY created_at, id`);
  return r.rows;
}

/** The endpoint, unless it is being deleted. */
export async function findEndpoint(db: Queryable, id: string): Promise<EndpointRow | undefined> {
  const r = await db.query<EndpointRow>(`SELECT * FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL`, [id]);
  return r.rows[0];
}

/**
 * Marks an endpoint deleted: from its commit on it gets no new deliveries, is not served, and is gone
 * from the API. An UPDATE of a non-key column: its row lock does not conflict with the FOR KEY SHARE
 * of changes announcing events, so they do not wait for it. False when there was none.
 */
export async function markEndpointDeleted(tx: Queryable, id: string, now: Date): Promise<boolean> {
  const r = await tx.query(`UPDATE webhook_endpoints SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL`, [id, now]);
  return r.rowCount === 1;
}

/** Endpoints marked deleted whose removal has not finished (an instance stopped during it). */
export async function listDeletedEndpoints(db: Queryable): Promise<string[]> {
  const r = await db.query<{ id: string }>(`SELECT id FROM webhook_endpoints WHERE deleted_at IS NOT NULL`);
  return r.rows.map((row) => row.id);
}

/**
 * Removes up to `limit` deliveries of an endpoint marked deleted, in a statement of its own (no lock held
 * across batches); returns how many, or null when another purger has the endpoint's turn. Two purgers
 * at once (the deleting request, any instance's worker) listed the same rows: the second waited for the
 * first's row locks and then skipped those rows, so its batch came back short, even empty, with most of
 * the backlog left. The turn is a transaction-level advisory lock, so it ends with the statement (or with
 * the caller's transaction, when called inside one); keyed by the endpoint's id, as lockLinkIssue keys its
 * lock. The batch is listed only once the turn is taken (a condition of the listing), never without it.
 * Even with the turn a batch can come back short (another statement deleted or moved some of its rows):
 * a short batch is no sign that none is left (see removeDeletedEndpoint).
 */
export async function purgeDeletedEndpointDeliveries(db: Queryable, id: string, limit: number): Promise<number | null> {
  const r = await db.query<{ turn: boolean; purged: number }>(
    `WITH turn AS MATERIALIZED (SELECT pg_try_advisory_xact_lock(hashtextextended($3, 0)) AS taken),
     purged AS (
       DELETE FROM event_deliveries WHERE ctid = ANY (ARRAY(
         SELECT d.ctid FROM event_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id
          WHERE d.endpoint_id = $1 AND w.deleted_at IS NOT NULL AND (SELECT taken FROM turn) LIMIT $2))
       RETURNING 1)
     SELECT (SELECT taken FROM turn) AS turn, (SELECT count(*) FROM purged)::int AS purged`,
    [id, limit, `webhook-endpoint-removal:${id}`],
  );
  const row = r.rows[0]!;
  return row.turn ? row.purged : null;
}

/**
 * Removes an endpoint marked deleted if none of its deliveries is left, checked in the same statement
 * (run after any short batch, the removal's cascade deleted the rest of the backlog in one long
 * statement). Needs no turn: rows another purger is deleting still count as left until it commits.
 * What can still cascade is what changes announcing events wrote while it was being marked (they hold
 * the row FOR KEY SHARE; the DELETE waits for them): a few rows. True when the endpoint is gone, now or
 * already (another purger finished it); false while deliveries of it are left.
 */
export async function removeDeletedEndpoint(db: Queryable, id: string): Promise<boolean> {
  const r = await db.query<{ gone: boolean }>(
    `WITH removed AS (
       DELETE FROM webhook_endpoints w
        WHERE w.id = $1 AND w.deleted_at IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.endpoint_id = w.id)
       RETURNING 1)
     SELECT EXISTS (SELECT 1 FROM removed) OR NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = $1) AS gone`,
    [id],
  );
  return r.rows[0]!.gone;
}

/** The endpoint, locked until the transaction ends (a rotation reads the secrets it replaces); not one being deleted. */
export async function lockEndpoint(tx: Queryable, id: string): Promise<EndpointRow | undefined> {
  const r = await tx.query<EndpointRow>(`SELECT * FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL FOR UPDATE`, [id]);
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
