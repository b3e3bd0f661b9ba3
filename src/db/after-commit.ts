/**
 * Work to do once a transaction has committed: waking the outbox worker for an event the transaction
 * wrote, so that it is delivered at once instead of at the next poll. Waking it earlier would let it
 * look before the rows are visible and then sleep a whole poll interval.
 *
 * The drivers register each transaction they open (`openedTransaction`) and run its callbacks after
 * COMMIT (`committedTransaction`); a rolled-back transaction's callbacks are dropped with it. Written
 * here because neither node-postgres nor PGlite has commit hooks.
 */
import type { Queryable } from './database.ts';

const callbacks = new WeakMap<Queryable, Array<() => void>>();

/** Called by a driver for every transaction it opens, before handing `tx` to the caller. */
export function openedTransaction<Q extends Queryable>(tx: Q): Q {
  callbacks.set(tx, []);
  return tx;
}

/** Called by a driver once `tx` has committed: runs its callbacks (a throwing one does not stop the rest). */
export function committedTransaction(tx: Queryable): void {
  const list = callbacks.get(tx);
  callbacks.delete(tx);
  for (const fn of list ?? []) {
    try {
      fn();
    } catch {
      // A wake-up is an optimisation: the poll finds the work anyway.
    }
  }
}

/**
 * Runs `fn` once what `q` wrote is committed: after the transaction's COMMIT when `q` is an open
 * transaction (never, when it rolls back), at once when it is the database itself (each statement
 * commits on its own). `fn` must be quick and must not throw anything that matters.
 */
export function afterCommit(q: Queryable, fn: () => void): void {
  const list = callbacks.get(q);
  if (list) list.push(fn);
  else queueMicrotask(fn);
}
