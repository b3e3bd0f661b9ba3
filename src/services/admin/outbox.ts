/**
 * GET /api/v1/admin/outbox: what mail was queued, is being sent, waits for a retry, was delivered or
 * given up, with the last error — never a body (links and codes) or an address.
 */
import type { Deps } from '../../deps.ts';
import { validationError } from '../../errors.ts';
import { listOutboxStatus, outboxStatusOf, type OutboxStatus } from '../../db/repositories/admin/outbox-status.ts';
import { maskAddresses } from '../../db/repositories/outbox.ts';
import { isUuid } from '../../crypto/random.ts';
import { decodeCursor, encodeCursor, pageLimit, parseIsoTime } from '../audit/cursor.ts';
import { DEFAULT_PAGE, MAX_PAGE } from '../audit/list.ts';

export const OUTBOX_STATUSES: readonly OutboxStatus[] = ['queued', 'sending', 'retrying', 'delivered', 'failed'];

/** A mail's delivery state as the admin API shows it. */
export interface OutboxMessageView {
  id: string;
  kind: string;
  status: OutboxStatus;
  attempts: number;
  last_error: string | null;
  created_at: string;
  next_attempt_at: string | null;
  delivered_at: string | null;
  failed_at: string | null;
}

const isCursor = (v: unknown): v is { t: string; i: string } => {
  const o = v as { t?: unknown; i?: unknown } | null;
  return typeof o === 'object' && o !== null && parseIsoTime(o.t) !== undefined && isUuid(o.i);
};

/** Lists mail newest first; `status` filters by state. */
export async function listOutbox(deps: Deps, q: { status?: string; limit?: string; cursor?: string }): Promise<{ messages: OutboxMessageView[]; next_cursor: string | null }> {
  const limit = pageLimit(q.limit, DEFAULT_PAGE, MAX_PAGE);
  if (q.status !== undefined && q.status !== '' && !OUTBOX_STATUSES.includes(q.status as OutboxStatus)) {
    throw validationError('status', `status is one of ${OUTBOX_STATUSES.join(', ')}.`);
  }
  const status = q.status ? (q.status as OutboxStatus) : undefined;
  const cursor = q.cursor ? decodeCursor(q.cursor, isCursor) : undefined;
  const now = deps.clock();
  const rows = await listOutboxStatus(deps.db, now, { status, before: cursor ? { at: new Date(cursor.t), id: cursor.i } : undefined, limit: limit + 1 });
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    messages: page.map((r) => {
      const s = outboxStatusOf(r, now);
      return {
        id: r.id,
        kind: r.kind,
        status: s,
        attempts: r.attempts,
        // Masked again on the way out: rows that failed before addresses were masked when stored keep theirs.
        last_error: r.last_error === null ? null : maskAddresses(r.last_error),
        created_at: r.created_at.toISOString(),
        next_attempt_at: s === 'queued' || s === 'retrying' || s === 'sending' ? r.next_attempt_at.toISOString() : null,
        delivered_at: r.sent_at ? r.sent_at.toISOString() : null,
        failed_at: r.failed_at ? r.failed_at.toISOString() : null,
      };
    }),
    next_cursor: rows.length > limit && last ? encodeCursor({ t: last.created_at.toISOString(), i: last.id }) : null,
  };
}
