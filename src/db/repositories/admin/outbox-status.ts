/** SQL of the admin's mail status listing: delivery state only, never a body or an address. */
import type { Queryable } from '../../database.ts';

/** What a mail's row says about its delivery. */
export interface OutboxStatusRow {
  id: string;
  kind: string;
  attempts: number;
  last_error: string | null;
  created_at: Date;
  next_attempt_at: Date;
  locked_until: Date | null;
  sent_at: Date | null;
  failed_at: Date | null;
}

/** The states a mail can be in, as the API names them. */
export type OutboxStatus = 'queued' | 'sending' | 'retrying' | 'delivered' | 'failed';

/** SQL condition of each state at `now` ($1). */
const STATUS_SQL: Record<OutboxStatus, string> = {
  delivered: 'sent_at IS NOT NULL',
  failed: 'sent_at IS NULL AND failed_at IS NOT NULL',
  sending: 'sent_at IS NULL AND failed_at IS NULL AND locked_until > $1',
  retrying: 'sent_at IS NULL AND failed_at IS NULL AND (locked_until IS NULL OR locked_until <= $1) AND attempts > 0',
  queued: 'sent_at IS NULL AND failed_at IS NULL AND (locked_until IS NULL OR locked_until <= $1) AND attempts = 0',
};

/** Rows newest first after the cursor (created_at, id), optionally of one state; selects no body and no address. */
export async function listOutboxStatus(tx: Queryable, now: Date, f: { status?: OutboxStatus; before?: { at: Date; id: string }; limit: number }): Promise<OutboxStatusRow[]> {
  const params: unknown[] = [now, f.limit];
  const where: string[] = [];
  if (f.status) where.push(`(${STATUS_SQL[f.status]})`);
  if (f.before) {
    params.push(f.before.at, f.before.id);
    where.push('(created_at, id) < ($3, $4::uuid)');
  }
  const r = await tx.query<OutboxStatusRow>(
    `SELECT id, kind, attempts, last_error, created_at, next_attempt_at, locked_until, sent_at, failed_at FROM outbox
     WHERE $1::timestamptz IS NOT NULL ${where.length ? `AND ${where.join(' AND ')}` : ''}
     ORDER BY created_at DESC, id DESC LIMIT $2`,
    params,
  );
  return r.rows;
}

/** The state of one row at `now`. */
export function outboxStatusOf(r: OutboxStatusRow, now: Date): OutboxStatus {
  if (r.sent_at) return 'delivered';
  if (r.failed_at) return 'failed';
  if (r.locked_until && r.locked_until > now) return 'sending';
  return r.attempts > 0 ? 'retrying' : 'queued';
}
