/**
 * Runs of webhook deliveries: the next events of one endpoint claimed together, sent one after the
 * other, and recorded together. A worker that has just delivered an endpoint's head serves the rest of
 * its queue this way with two statements per run instead of two per event (claim, record), which is
 * most of the database's share of delivering (issue 10's bench). The rules stay those of
 * {@link claimHeads}: only a contiguous run from the endpoint's oldest pending event is claimed (order
 * holds), each claimed row is leased (no other instance sends it meanwhile), and a crash before the
 * record resends with the same webhook-id once the lease ends.
 */
import type { Queryable } from '../../database.ts';
import { PENDING, type ClaimedDelivery } from './deliveries.ts';

/** A row of a claimed run: its place in the run, and what the claim overwrote (to give it back). */
export interface RunDelivery extends ClaimedDelivery {
  rank: number;
  prev_last_attempt_at: Date | null;
  locked_until: Date;
}

/**
 * Claims up to `limit` pending deliveries of `target` from its oldest one, stopping before the first
 * that is not due or is held by another worker. Rows a concurrent claim took from the middle of the
 * run would break the order, so only the unbroken prefix is kept and the rest given back at once.
 */
export async function claimRun(db: Queryable, target: string, now: Date, limit: number, leaseSeconds: number): Promise<RunDelivery[]> {
  const leaseUntil = new Date(now.getTime() + leaseSeconds * 1000);
  const r = await db.query<RunDelivery>(
    `WITH queue AS (
       SELECT ctid AS row_address, seq, row_number() OVER (ORDER BY seq) AS rank,
              (next_attempt_at <= $1 AND (locked_until IS NULL OR locked_until <= $1)) AS free
         FROM event_deliveries
        WHERE ${PENDING} AND target = $3
          -- An endpoint marked deleted gets nothing more, also from a worker already serving it.
          AND NOT EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.id::text = $3 AND w.deleted_at IS NOT NULL)
        ORDER BY seq
        LIMIT $4
     ), prefix AS (
       SELECT row_address, rank FROM queue
        WHERE rank < COALESCE((SELECT min(rank) FROM queue WHERE NOT free), $4 + 1)
     ), due AS (
       -- Locked through the row address read above (see claimHeads: never a join sized from statistics).
       SELECT l.ctid AS row_address, l.event_id, p.rank, l.last_attempt_at AS prev_last_attempt_at
         FROM prefix p
        CROSS JOIN LATERAL (
          SELECT d.ctid, d.event_id, d.last_attempt_at FROM event_deliveries d
           WHERE d.ctid = p.row_address
             AND ${PENDING.replace(/(\w+_at)/g, 'd.$1')} AND (d.locked_until IS NULL OR d.locked_until <= $1)
             FOR UPDATE SKIP LOCKED
        ) l
     ), claimed AS (
       UPDATE event_deliveries d SET locked_until = $2, attempts = d.attempts + 1, last_attempt_at = $1, retry_asked = false
        WHERE d.ctid = ANY (ARRAY(SELECT row_address FROM due))
       RETURNING d.event_id, d.target, d.endpoint_id, d.seq, d.attempts, d.age_from, d.locked_until
     )
     SELECT c.*, e.type, e.occurred_at, e.data, due.rank::int AS rank, due.prev_last_attempt_at
       FROM claimed c JOIN due ON due.event_id = c.event_id JOIN events e ON e.id = c.event_id`,
    [now, leaseUntil, target, limit],
  );
  const rows = r.rows.sort((a, b) => a.rank - b.rank);
  let kept = 0;
  while (kept < rows.length && rows[kept]!.rank === kept + 1) kept++;
  if (kept < rows.length) await releaseRun(db, rows.slice(kept));
  return rows.slice(0, kept);
}

/** Records the acknowledged deliveries of a run (one statement); returns how many were still unrecorded. */
export async function markRunDelivered(db: Queryable, target: string, acknowledged: ReadonlyArray<{ eventId: string; statusCode: number | null }>, at: Date): Promise<number> {
  if (acknowledged.length === 0) return 0;
  const r = await db.query(
    // `= ANY` on the primary key, the status code picked by position: an index scan, never a nested
    // loop over the table (see claimHeads).
    `UPDATE event_deliveries d SET delivered_at = $4, failed_at = NULL, locked_until = NULL, last_error = NULL,
            last_status_code = ($3::int[])[array_position($2::uuid[], d.event_id)]
      WHERE d.event_id = ANY ($2::uuid[]) AND d.target = $1 AND d.delivered_at IS NULL`,
    [target, acknowledged.map((a) => a.eventId), acknowledged.map((a) => a.statusCode), at],
  );
  return r.rowCount ?? 0;
}

/**
 * Gives back claimed rows that were never sent: lease released, attempt count and last attempt time
 * as before the claim. Guarded on this claim (its lease and attempt count), so a row that another
 * worker claimed after the lease ran out is left alone.
 */
export async function releaseRun(db: Queryable, rows: readonly RunDelivery[]): Promise<void> {
  if (rows.length === 0) return;
  // One run's rows share their target; each row's own claim is picked by position (see markRunDelivered).
  await db.query(
    `UPDATE event_deliveries d SET locked_until = NULL, attempts = d.attempts - 1,
            last_attempt_at = ($5::timestamptz[])[array_position($2::uuid[], d.event_id)]
      WHERE d.target = $1 AND d.event_id = ANY ($2::uuid[]) AND d.delivered_at IS NULL
        AND d.attempts = ($3::int[])[array_position($2::uuid[], d.event_id)]
        AND d.locked_until = ($4::timestamptz[])[array_position($2::uuid[], d.event_id)]`,
    [rows[0]!.target, rows.map((r) => r.event_id), rows.map((r) => r.attempts), rows.map((r) => r.locked_until), rows.map((r) => r.prev_last_attempt_at)],
  );
}
