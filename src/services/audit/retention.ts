/**
 * AUDIT_RETENTION: entries older than the setting (default 400 days) are deleted, in batches. The
 * same job drops the rows of other tables whose purpose has passed (see {@link pruneSpentRows}).
 */
import type { Deps } from '../../deps.ts';
import type { Queryable } from '../../db/database.ts';
import { deleteAuditRowsBefore } from '../../db/repositories/audit/audit-log.ts';
import { deleteEndedSessions, deleteExpiredEmailTokens, deleteExpiredMfaChallenges, deleteFinishedMails } from '../../db/repositories/retention.ts';
import { OWNER_MEMORY_DAYS } from '../mail-quota.ts';

/** Rows per DELETE: small enough that no batch holds locks for long, large enough to catch up fast. */
export const PRUNE_BATCH = 5000;

/** A repository's batched delete: rows older than `before`, at most `batch`; returns how many went. */
type BatchDelete = (db: Queryable, before: Date, batch: number) => Promise<number>;

/** Runs `remove` batch after batch until one comes back short; returns how many rows went in all. */
async function deleteAllBefore(db: Queryable, remove: BatchDelete, before: Date): Promise<number> {
  let total = 0;
  for (;;) {
    const n = await remove(db, before, PRUNE_BATCH);
    total += n;
    if (n < PRUNE_BATCH) return total;
  }
}

/** Deletes every entry older than the retention at `deps.clock()`; returns how many went. */
export async function pruneAuditLog(deps: Pick<Deps, 'db' | 'clock' | 'config'>): Promise<number> {
  return deleteAllBefore(deps.db, deleteAuditRowsBefore, new Date(deps.clock().getTime() - deps.config.auditRetentionSeconds * 1000));
}

const DAY_MS = 86_400_000;

/**
 * How long spent rows are kept. Sessions: as long as a login's address makes its owner's reset
 * requests the owner's (mail-quota.ts), counted from the session's end. Challenges and link tokens:
 * a day past their expiry. Mails: 30 days after sending (or giving up), for the admin's outbox view.
 */
export const SPENT_ROW_RETENTION = {
  sessionsDays: OWNER_MEMORY_DAYS,
  challengesDays: 1,
  linkTokensDays: 1,
  mailsDays: 30,
} as const;

/**
 * Deletes sessions, MFA challenges, link tokens and mails whose purpose has passed. Kept for ever
 * before, they grew without bound and held IP addresses, user agents and recipients long after any
 * use. Returns how many rows of each went.
 */
export async function pruneSpentRows(deps: Pick<Deps, 'db' | 'clock'>): Promise<Record<string, number>> {
  const now = deps.clock().getTime();
  const r = SPENT_ROW_RETENTION;
  const steps: Array<[string, BatchDelete, number]> = [
    ['sessions', deleteEndedSessions, r.sessionsDays],
    ['mfa_challenges', deleteExpiredMfaChallenges, r.challengesDays],
    ['email_tokens', deleteExpiredEmailTokens, r.linkTokensDays],
    ['outbox', deleteFinishedMails, r.mailsDays],
  ];
  const deleted: Record<string, number> = {};
  for (const [table, remove, days] of steps) deleted[table] = await deleteAllBefore(deps.db, remove, new Date(now - days * DAY_MS));
  return deleted;
}
