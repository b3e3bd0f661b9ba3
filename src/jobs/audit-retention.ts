/**
 * The audit retention job: once an hour (and once at start), entries older than AUDIT_RETENTION are
 * deleted, and spent sessions, challenges, link tokens and mails (services/audit/retention.ts). Every
 * instance runs it; deleting is idempotent, so two instances at once only overlap.
 */
import type { Deps } from '../deps.ts';
import { pruneAuditLog, pruneSpentRows } from '../services/audit/retention.ts';

const TICK_MS = 3_600_000;

/** Starts the job; returns a function that stops it. A failed run is logged and tried again next hour. */
export function startAuditRetentionJob(deps: Pick<Deps, 'db' | 'clock' | 'config' | 'logger'>): () => void {
  let running = false;
  const run = (): void => {
    if (running) return;
    running = true;
    pruneAuditLog(deps)
      .then(async (n) => {
        if (n > 0) deps.logger.info({ deleted: n, retentionSeconds: deps.config.auditRetentionSeconds }, 'old audit entries deleted');
        const spent = await pruneSpentRows(deps);
        if (Object.values(spent).some((x) => x > 0)) deps.logger.info({ deleted: spent }, 'spent sessions, challenges, link tokens and mails deleted');
      })
      .catch((err: unknown) => deps.logger.error({ err }, 'audit retention job failed'))
      .finally(() => {
        running = false;
      });
  };
  const first = setTimeout(run, 10_000);
  first.unref();
  const timer = setInterval(run, TICK_MS);
  timer.unref();
  return () => {
    clearTimeout(first);
    clearInterval(timer);
  };
}
