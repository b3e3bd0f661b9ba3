/** AUDIT_RETENTION: entries older than the setting (default 400 days) are deleted, in batches. */
import type { Deps } from '../../deps.ts';
import { deleteAuditRowsBefore } from '../../db/repositories/audit/audit-log.ts';

/** Rows per DELETE: small enough that no batch holds locks for long, large enough to catch up fast. */
export const PRUNE_BATCH = 5000;

/** Deletes every entry older than the retention at `deps.clock()`; returns how many went. */
export async function pruneAuditLog(deps: Pick<Deps, 'db' | 'clock' | 'config'>): Promise<number> {
  const before = new Date(deps.clock().getTime() - deps.config.auditRetentionSeconds * 1000);
  let total = 0;
  for (;;) {
    const n = await deleteAuditRowsBefore(deps.db, before, PRUNE_BATCH);
    total += n;
    if (n < PRUNE_BATCH) return total;
  }
}
