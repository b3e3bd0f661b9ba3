/**
 * SQL for events and their deliveries: the events' part of the transactional outbox. Same rules as
 * the mail outbox (repositories/outbox.ts): times come from the caller's clock, `locked_until` is
 * a claim's lease, and `attempts` (raised by every claim) identifies the claim, so a worker whose
 * lease ran out can no longer record the outcome of its attempt over a newer claim's.
 */
import type { Queryable } from '../../database.ts';
import { storedErrorText } from '../../error-text.ts';

/** The target name of the RabbitMQ publication (webhook targets are endpoint ids). */
export const AMQP_TARGET = 'amqp';

/** An event to store, with the targets it goes to. */
export interface NewEvent {
  id: string;
  type: string;
  occurredAt: Date;
  data: Record<string, unknown>;
  /** Also queue it for the broker (EVENTS_AMQP_URL set). */
  amqp: boolean;
}

/** A claimed delivery with its event. */
export interface ClaimedDelivery {
  event_id: string;
  target: string;
  endpoint_id: string | null;
  seq: string;
  attempts: number;
  age_from: Date;
  type: string;
  occurred_at: Date;
  data: Record<string, unknown>;
}

/** Identifies one claim of a delivery row. */
export interface DeliveryClaim {
  eventId: string;
  target: string;
  attempts: number;
}

/** One line of an endpoint's delivery log. */
export interface DeliveryLogRow {
  event_id: string;
  type: string;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  last_status_code: number | null;
  last_error: string | null;
  created_at: Date;
  last_attempt_at: Date | null;
  next_attempt_at: Date | null;
  delivered_at: Date | null;
  failed_at: Date | null;
}

/** The advisory lock of pruning's turn (see {@link pruneEvents}); an admin's retry waits for it (see {@link requeue}). */
const PRUNE_TURN = "hashtextextended('twofold:events-prune', 0)";
export const PENDING = 'delivered_at IS NULL AND failed_at IS NULL';

/**
 * Inserts the event and, in the same statement, one delivery per webhook endpoint subscribed to its
 * type (or to `*`) and one for the broker when `amqp`. An event nobody receives (no subscribed
 * endpoint, no broker) is not stored: endpoints registered later get only later events anyway.
 * Called in the transaction of the change; returns how many deliveries it queued.
 *
 * The endpoints are locked FOR KEY SHARE (what the deliveries' foreign key check takes anyway, so no
 * new conflict): an endpoint whose DELETE is still uncommitted is waited for and then, under READ
 * COMMITTED, left out (a row deleted meanwhile is skipped by the lock, not re-read), instead of
 * being read from the snapshot and failing the foreign key check, which rolled back the change (a
 * sign-up answered 500). MATERIALIZED: the rows are locked once, and both INSERTs read the same locked set.
 * An endpoint marked deleted is left out (a mark that commits while this change is in flight does not
 * make it wait: the delivery it queued goes with the endpoint).
 */
export async function insertEvent(tx: Queryable, e: NewEvent): Promise<number> {
  const r = await tx.query(
    `WITH targets AS MATERIALIZED (
       SELECT w.id FROM webhook_endpoints w WHERE ($2::text = ANY (w.event_types) OR '*' = ANY (w.event_types)) AND w.deleted_at IS NULL
          FOR KEY SHARE
     ), ev AS (
       INSERT INTO events (id, type, occurred_at, data)
       SELECT $1, $2, $3, $4::jsonb WHERE $5::boolean OR EXISTS (SELECT 1 FROM targets)
       RETURNING id, seq
     )
     INSERT INTO event_deliveries (event_id, target, endpoint_id, seq, created_at, age_from, next_attempt_at)
     SELECT ev.id, t.id::text, t.id, ev.seq, $3, $3, $3 FROM ev, targets t
     UNION ALL
     SELECT ev.id, '${AMQP_TARGET}', NULL, ev.seq, $3, $3, $3 FROM ev WHERE $5::boolean`,
    [e.id, e.type, e.occurredAt, JSON.stringify(e.data), e.amqp],
  );
  return r.rowCount;
}

/** What one statement of pruning did: events deleted (their deliveries went with them), and whether more may be due. */
export interface PruneBatch {
  pruned: number;
  /** The batch was cut by a limit (events listed, or the deliveries' budget): more may be due. */
  full: boolean;
}

/**
 * Deletes, in a statement of its own, up to `maxEvents` events older than `before` none of whose
 * deliveries is still pending, with their delivery log (by cascade); null when another pruner has the
 * turn. It was one DELETE over every event due: at steady traffic, hundreds of thousands of events and
 * over a million cascaded deliveries in one transaction, the webhook lane waiting for it (see
 * PRUNE_BATCH_EVENTS in jobs/event-delivery.ts for the batches and their pace).
 *
 * An event has one delivery per target (endpoint or broker), so a batch of events cascades over up to
 * that many times its rows: the batch is cut, in order of creation, where its deliveries would pass
 * `maxDeliveries` (its first event always goes); a batch the budget cut counts as full, so the caller
 * goes on. The listing has no order: it reads the due events through events_occurred_at_idx
 * (migration 0014), where a walk of the seq index would read every recent event whenever fewer than a
 * batch are due.
 *
 * The turn is a transaction-level advisory lock, as purgeDeletedEndpointDeliveries takes one: two
 * pruners at once would list the same rows, and the second wait for the first's row locks and come back
 * short. With it, one statement prunes at a time (no lock waits between pruners, no row deleted twice);
 * the others get null and leave the work to it. The rule is the one the single DELETE had.
 */
export async function pruneEvents(db: Queryable, before: Date, maxEvents: number, maxDeliveries: number): Promise<PruneBatch | null> {
  const r = await db.query<{ turn: boolean; listed: number; chosen: number; pruned: number }>(
    `WITH turn AS MATERIALIZED (SELECT pg_try_advisory_xact_lock(${PRUNE_TURN}) AS taken),
     listed AS MATERIALIZED (
       SELECT e.ctid AS row_address, e.seq, (SELECT count(*) FROM event_deliveries c WHERE c.event_id = e.id) AS deliveries
         FROM events e
        WHERE e.occurred_at < $1
          AND NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.event_id = e.id AND d.delivered_at IS NULL AND d.failed_at IS NULL)
          AND (SELECT taken FROM turn)
        LIMIT $2
     ), chosen AS MATERIALIZED (
       SELECT row_address FROM (
         SELECT row_address, row_number() OVER w AS n, sum(deliveries) OVER w AS running FROM listed WINDOW w AS (ORDER BY seq)
       ) l WHERE l.n = 1 OR l.running <= $3
     ), pruned AS (
       DELETE FROM events WHERE ctid = ANY (ARRAY(SELECT row_address FROM chosen)) RETURNING 1
     )
     SELECT (SELECT taken FROM turn) AS turn, (SELECT count(*) FROM listed)::int AS listed,
            (SELECT count(*) FROM chosen)::int AS chosen, (SELECT count(*) FROM pruned)::int AS pruned`,
    [before, maxEvents, maxDeliveries],
  );
  const row = r.rows[0]!;
  if (!row.turn) return null;
  return { pruned: row.pruned, full: row.listed >= maxEvents || row.chosen < row.listed };
}

/**
 * Claims, for up to `limit` targets of the channel, the target's oldest pending delivery if it is
 * due and not leased: sets the lease and counts the attempt. Only a target's head is ever claimed,
 * so one target never has two deliveries in flight and receives its events in order of creation.
 * The lease conditions are on the locked row itself, so PostgreSQL re-checks them against a claim
 * that another worker committed meanwhile (no double claim under READ COMMITTED).
 * `skipTargets`: endpoints (ids) this worker is still serving; their heads are left to it.
 */
export async function claimHeads(db: Queryable, channel: 'webhook' | 'amqp', now: Date, limit: number, leaseSeconds: number, skipTargets: readonly string[]): Promise<ClaimedDelivery[]> {
  const leaseUntil = new Date(now.getTime() + leaseSeconds * 1000);
  // Bounded work per target whatever the statistics say: the head is the target's first entry in the
  // pending index, and it is locked and updated through its row address (ctid), read in the same
  // statement. The planner estimates `delivered_at IS NULL` far too low without fresh statistics (a
  // new or fast-growing table; PGlite never gathers any), and joins planned from that estimate read
  // a target's whole queue per head: 300 ms per batch at 3,000 pending deliveries.
  const r = await db.query<ClaimedDelivery>(
    `WITH targets AS (
       SELECT w.id::text AS target FROM webhook_endpoints w WHERE NOT $4::boolean AND w.deleted_at IS NULL AND NOT (w.id::text = ANY ($5::text[]))
       UNION ALL
       SELECT '${AMQP_TARGET}' WHERE $4::boolean
     ), heads AS (
       SELECT h.row_address, h.seq
         FROM targets t
        CROSS JOIN LATERAL (
          SELECT q.ctid AS row_address, q.seq, q.next_attempt_at, q.locked_until
            FROM event_deliveries q
           WHERE q.target = t.target AND q.delivered_at IS NULL AND q.failed_at IS NULL
           ORDER BY q.seq
           LIMIT 1
        ) h
        WHERE h.next_attempt_at <= $1 AND (h.locked_until IS NULL OR h.locked_until <= $1)
          -- Nothing else of the target in flight: an admin's retry can make an older event the head
          -- while another instance is still serving the target's later ones (one in flight: order).
          AND NOT EXISTS (
            SELECT 1 FROM event_deliveries x
             WHERE x.target = t.target AND x.locked_until IS NOT NULL AND x.locked_until > $1
               AND x.delivered_at IS NULL AND x.failed_at IS NULL)
        ORDER BY h.seq
        LIMIT $3
     ), due AS (
       -- Re-checked on the locked row: a row another worker changed meanwhile is skipped, not claimed twice.
       SELECT l.ctid AS row_address
         FROM heads h
        CROSS JOIN LATERAL (
          SELECT d.ctid FROM event_deliveries d
           WHERE d.ctid = h.row_address AND d.delivered_at IS NULL AND d.failed_at IS NULL
             AND d.next_attempt_at <= $1 AND (d.locked_until IS NULL OR d.locked_until <= $1)
             FOR UPDATE SKIP LOCKED
        ) l
     ), claimed AS (
       UPDATE event_deliveries d SET locked_until = $2, attempts = d.attempts + 1, last_attempt_at = $1, retry_asked = false
        WHERE d.ctid = ANY (ARRAY(SELECT row_address FROM due))
       RETURNING d.event_id, d.target, d.endpoint_id, d.seq, d.attempts, d.age_from
     )
     SELECT c.*, e.type, e.occurred_at, e.data FROM claimed c JOIN events e ON e.id = c.event_id`,
    [now, leaseUntil, limit, channel === 'amqp', [...skipTargets]],
  );
  return r.rows.sort((a, b) => Number(a.seq) - Number(b.seq));
}

/**
 * Records a delivery the receiver acknowledged. Guarded only on not being delivered yet: an
 * acknowledgement must be recorded even if the lease ran out meanwhile, so it is never sent again.
 */
export async function markDelivered(db: Queryable, eventId: string, target: string, at: Date, statusCode: number | null): Promise<boolean> {
  const r = await db.query(
    `UPDATE event_deliveries SET delivered_at = $3, failed_at = NULL, locked_until = NULL, retry_asked = false, last_status_code = $4, last_error = NULL
      WHERE event_id = $1 AND target = $2 AND delivered_at IS NULL`,
    [eventId, target, at, statusCode],
  );
  return r.rowCount === 1;
}

/**
 * Records a failed attempt and releases the lease: another attempt at `retryAt`, or given up at
 * `failedAt` (older than the age limit). An admin's retry asked while the attempt was in flight
 * (`retry_asked`) wins over both: the delivery is due at once (at the attempt's start, already past).
 * Guarded on the claim, so a worker whose lease ran out cannot overwrite a newer claim's state.
 * False: claim lost.
 */
export async function markAttemptFailed(
  db: Queryable,
  claim: DeliveryClaim,
  outcome: { retryAt: Date } | { failedAt: Date },
  error: string,
  statusCode: number | null,
): Promise<boolean> {
  const retryAt = 'retryAt' in outcome ? outcome.retryAt : null;
  const failedAt = 'failedAt' in outcome ? outcome.failedAt : null;
  const r = await db.query(
    `UPDATE event_deliveries
        SET next_attempt_at = CASE WHEN retry_asked THEN last_attempt_at ELSE COALESCE($4::timestamptz, next_attempt_at) END,
            failed_at = CASE WHEN retry_asked THEN NULL ELSE $7::timestamptz END,
            retry_asked = false, last_error = $5, last_status_code = $6, locked_until = NULL
      WHERE event_id = $1 AND target = $2 AND attempts = $3 AND ${PENDING}`,
    [claim.eventId, claim.target, claim.attempts, retryAt, storedErrorText(error), statusCode, failedAt],
  );
  return r.rowCount === 1;
}

/** An endpoint's delivery log, newest first. */
export async function listDeliveries(db: Queryable, endpointId: string, limit: number): Promise<DeliveryLogRow[]> {
  const r = await db.query<DeliveryLogRow>(
    `SELECT d.event_id, e.type,
            CASE WHEN d.delivered_at IS NOT NULL THEN 'delivered' WHEN d.failed_at IS NOT NULL THEN 'failed' ELSE 'pending' END AS status,
            d.attempts, d.last_status_code, d.last_error, d.created_at, d.last_attempt_at,
            CASE WHEN ${PENDING.replace(/(\w+_at)/g, 'd.$1')} THEN d.next_attempt_at END AS next_attempt_at,
            d.delivered_at, d.failed_at
       FROM event_deliveries d JOIN events e ON e.id = d.event_id
      WHERE d.endpoint_id = $1
      ORDER BY d.seq DESC
      LIMIT $2`,
    [endpointId, limit],
  );
  return r.rows;
}

/** The state of one delivery of an endpoint, or undefined. */
export async function findDelivery(db: Queryable, endpointId: string, eventId: string): Promise<{ delivered_at: Date | null } | undefined> {
  const r = await db.query<{ delivered_at: Date | null }>(
    `SELECT delivered_at FROM event_deliveries WHERE endpoint_id = $1 AND event_id = $2`,
    [endpointId, eventId],
  );
  return r.rows[0];
}

/**
 * Makes undelivered deliveries of an endpoint due now, with a fresh age limit: a given-up one comes
 * back, one waiting for its backoff goes at once. One in flight (leased) is left to its worker and
 * marked: if that attempt fails, it is due again at once (see markAttemptFailed), not after its
 * backoff. `eventId` limits it to one delivery. Returns how many were requeued or marked.
 *
 * Called in a transaction, which first takes pruning's turn and keeps it to its end. A given-up
 * delivery is old enough to be pruned with its event, and the prune's DELETE does not look again at
 * the deliveries it lists: a retry committed while a prune statement ran was deleted by the cascade
 * after the admin had been told 202 (it was requeued), and a retry waiting for the cascade's row lock
 * found nothing and was answered 202 as well. With the turn, a prune never runs beside a retry: a
 * retry after it finds the delivery gone (0, so the caller can say so), and a prune after it lists
 * the delivery as pending, which it keeps.
 */
export async function requeue(tx: Queryable, endpointId: string, now: Date, eventId?: string): Promise<number> {
  await tx.query(`SELECT pg_advisory_xact_lock(${PRUNE_TURN})`);
  const r = await tx.query(
    `UPDATE event_deliveries
        SET age_from = $2,
            failed_at = NULL,
            next_attempt_at = CASE WHEN locked_until > $2 THEN next_attempt_at ELSE $2 END,
            retry_asked = COALESCE(locked_until > $2, false)
      WHERE endpoint_id = $1 AND delivered_at IS NULL
        AND ($3::uuid IS NULL OR event_id = $3::uuid)`,
    [endpointId, now, eventId ?? null],
  );
  return r.rowCount;
}
