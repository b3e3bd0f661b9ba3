/**
 * Deleting a webhook endpoint: marked deleted first (from then on it gets and sends nothing), then
 * its backlog removed in batches and the row last. One DELETE cascading over a large backlog held the
 * endpoint's row lock for as long, and every login announcing an event to it waited.
 */
import type { Queryable } from '../../db/database.ts';
import * as repo from '../../db/repositories/events/endpoints.ts';
import type { Deps as AppDeps } from '../../deps.ts';
import { AppError } from '../../errors.ts';
import { recheckAdminCaller } from '../admin/authorize.ts';
import { recordSecurityEvent, type AuditContext } from '../audit/record.ts';

type Deps = Pick<AppDeps, 'config' | 'db' | 'clock' | 'secretBox' | 'logger'>;

/**
 * Deletes an endpoint and its deliveries. Marked deleted first (from then on it gets and sends
 * nothing), then its backlog removed in batches and the row last: one DELETE cascading over a
 * large backlog held the endpoint's row lock for as long, and every login announcing an event waited.
 * A removal that fails or is cut short by a stop is finished by the webhook worker
 * ({@link finishEndpointDeletions}); the deletion itself has committed by then.
 */
export async function deleteEndpoint(deps: Deps, ctx: AuditContext, id: string): Promise<void> {
  await deps.db.transaction(async (tx) => {
    await recheckAdminCaller(tx, ctx);
    if (!(await repo.markEndpointDeleted(tx, id, deps.clock()))) throw new AppError('not_found', { detail: 'No webhook endpoint with this id.' });
    await recordSecurityEvent(tx, { ...ctx, type: 'admin.action', userId: null, data: { action: 'webhook.deleted', webhook_id: id }, at: deps.clock() });
  });
  try {
    // Most backlogs go at once; a larger one is left to the worker, not to the request (a proxy's
    // timeout), and so is one a worker is already removing.
    await removeDeletedEndpoint(deps.db, id, PURGE_BATCHES_IN_REQUEST);
  } catch (err) {
    deps.logger.warn({ err, webhookId: id }, "a deleted webhook endpoint's deliveries could not all be removed yet; the webhook worker finishes it");
  }
}

/** Deliveries removed per statement when an endpoint is deleted. */
const PURGE_BATCH = 5000;
/** Statements of removal the deleting request runs (100,000 deliveries); the worker does the rest. */
const PURGE_BATCHES_IN_REQUEST = 20;

/**
 * Removes up to `batches` statements' worth of a deleted endpoint's deliveries, and the endpoint once
 * none is left; true when it is gone. When another purger has the endpoint's turn (the request and a
 * worker, or two instances' workers, at once), it is left to that one for now: working the same rows
 * together, each waited for the other's row locks and the loser ran one cascade over the whole
 * backlog (and could deadlock with the other's next batch). A short batch does not mean none is left
 * (another statement may have deleted some of its rows), so the removal checks that itself, and the
 * batches go on while it finds deliveries left.
 */
async function removeDeletedEndpoint(db: Queryable, id: string, batches: number): Promise<boolean> {
  for (let i = 0; i < batches; i++) {
    const purged = await repo.purgeDeletedEndpointDeliveries(db, id, PURGE_BATCH);
    if (purged === null) return false;
    if (purged < PURGE_BATCH && (await repo.removeDeletedEndpoint(db, id))) return true;
  }
  return false;
}

/**
 * Goes on with the removal of deleted endpoints (a backlog larger than the request removed, or a
 * removal cut short by a stop), at most `batches` statements per endpoint per call, so a large one
 * delays the webhook worker's deliveries only a little each time; an endpoint another purger is at is
 * skipped until the next call. Returns how many are gone.
 */
export async function finishEndpointDeletions(db: Queryable, batches: number): Promise<number> {
  let removed = 0;
  for (const id of await repo.listDeletedEndpoints(db)) {
    if (await removeDeletedEndpoint(db, id, batches)) removed += 1;
  }
  return removed;
}
