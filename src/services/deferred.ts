/**
 * Work a request starts but does not wait for: it runs after the response has gone out. Used where
 * the answer must not depend on what the work finds — "forgot password" and "resend verification"
 * answer 202 with the same body at the same speed whether or not the address has an account, so the
 * lookup and the mail are done here, off the response path, instead of padding one branch to look
 * like the other (a write transaction is never quite as fast as no transaction).
 *
 * Nothing is lost that matters: the work either commits its change and its mail together (outbox)
 * or does nothing at all, and a user whose request died with the process simply asks again.
 * The owner (the app's deps) waits for its pending work on close; tests wait with settleDeferred.
 */

/** Where failures of deferred work are reported (they have no request to fail). */
export interface DeferredOwner {
  readonly logger: { error(obj: object, msg: string): void };
}

const pending = new WeakMap<DeferredOwner, Set<Promise<void>>>();

/**
 * Runs `work` once the current request has answered (on the next turn of the event loop). Errors are
 * logged, never thrown: the client already has its answer.
 */
export function runDeferred(owner: DeferredOwner, what: string, work: () => Promise<void>): void {
  let set = pending.get(owner);
  if (!set) {
    set = new Set();
    pending.set(owner, set);
  }
  const tasks = set;
  const task: Promise<void> = new Promise<void>((resolve) => setImmediate(resolve))
    .then(work)
    .catch((err: unknown) => owner.logger.error({ err }, `${what} failed`))
    .finally(() => tasks.delete(task));
  tasks.add(task);
}

/** How many deferred tasks of `owner` have not finished yet (tests: an answer came before its work). */
export function pendingDeferred(owner: DeferredOwner): number {
  return pending.get(owner)?.size ?? 0;
}

/** Resolves once every deferred task of `owner`, including those they start, has finished. */
export async function settleDeferred(owner: DeferredOwner): Promise<void> {
  const set = pending.get(owner);
  while (set && set.size > 0) await Promise.allSettled([...set]);
}
