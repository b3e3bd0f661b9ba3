/**
 * AUDIT_RETENTION: entries older than the setting (default 400 days) are deleted, in batches. The
 * same job drops the rows of other tables whose purpose has passed, and the sign-up addresses no
 * longer used (see {@link pruneSpentRows}).
 */
import type { Deps } from '../../deps.ts';
import type { Queryable } from '../../db/database.ts';
import { deleteAuditRowsBefore } from '../../db/repositories/audit/audit-log.ts';
import {
  clearOldSignupIps,
  deleteEndedSessions,
  deleteExpiredEmailTokens,
  deleteExpiredMfaChallenges,
  deleteExpiredWebauthnChallenges,
  deleteFinishedMails,
} from '../../db/repositories/retention.ts';
import { OWNER_MEMORY_DAYS } from '../mail-quota.ts';

/** Rows per DELETE: small enough that no batch holds locks for long, large enough to catch up fast. */
export const PRUNE_BATCH = 5000;

/** A repository's batched delete (or clearing): rows older than `before`, at most `batch`; returns how many. */
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
 * requests the owner's (mail-quota.ts), counted from the session's end. Challenges (MFA and WebAuthn)
 * and link tokens: a day past their expiry. Mails: 30 days after sending (or giving up), for the
 * admin's outbox view. A user's sign-up address: as long as it makes reset requests the owner's,
 * counted from the sign-up (mail-quota.ts reads it for nothing else).
 */
export const SPENT_ROW_RETENTION = {
  sessionsDays: OWNER_MEMORY_DAYS,
  challengesDays: 1,
  linkTokensDays: 1,
  mailsDays: 30,
  signupIpDays: OWNER_MEMORY_DAYS,
} as const;

/**
 * Deletes sessions, MFA and WebAuthn challenges, link tokens and mails whose purpose has passed, and
 * clears sign-up addresses past theirs. Kept for ever before (expired WebAuthn challenges until some
 * later request swept them), they held IP addresses, user agents, recipients and typed login names
 * long after any use. Returns how many rows of each went (`signup_ip`: how many users' addresses were
 * cleared).
 */
export async function pruneSpentRows(deps: Pick<Deps, 'db' | 'clock'>): Promise<Record<string, number>> {
  const now = deps.clock().getTime();
  const r = SPENT_ROW_RETENTION;
  const steps: Array<[string, BatchDelete, number]> = [
    ['sessions', deleteEndedSessions, r.sessionsDays],
    ['mfa_challenges', deleteExpiredMfaChallenges, r.challengesDays],
    ['webauthn_challenges', deleteExpiredWebauthnChallenges, r.challengesDays],
    ['email_tokens', deleteExpiredEmailTokens, r.linkTokensDays],
    ['outbox', deleteFinishedMails, r.mailsDays],
    ['signup_ip', clearOldSignupIps, r.signupIpDays],
  ];
  const deleted: Record<string, number> = {};
  for (const [table, remove, days] of steps) deleted[table] = await deleteAllBefore(deps.db, remove, new Date(now - days * DAY_MS));
  return deleted;
}
