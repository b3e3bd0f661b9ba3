/**
 * Sessions that ended in this process, told to whoever must act on it at once: the OpenID provider
 * sends its back-channel logouts from a sweep right after, rather than at its next timer. Every
 * revocation is recorded by recordSessionsRevoked (audit/login-events.ts), which is what calls
 * {@link sessionsEnded}, whatever route, job or flow ended them. Sessions that end by expiry, and
 * revocations made by another process (another instance, a CLI command), are left to the timer.
 */
import { afterCommit } from '../db/after-commit.ts';
import type { Database, Queryable } from '../db/database.ts';

/** Called with the database in which sessions ended (a process may hold several: tests). */
const listeners = new Set<(db: Database) => void>();

/**
 * Calls `fn` each time a transaction of this process that revoked sessions has committed; returns a
 * function that stops it. `fn` must be quick and must not throw (it runs in the committer's stack).
 */
export function onSessionsEnded(fn: (db: Database) => void): () => void {
  listeners.add(fn);
  return () => {
    listeners.delete(fn);
  };
}

/**
 * Tells the listeners that sessions of `db` ended in `tx`, once `tx` has committed: a sweep that
 * started earlier would not see them revoked and end nothing. Nothing is told when `tx` rolls back.
 */
export function sessionsEnded(db: Database, tx: Queryable): void {
  if (listeners.size === 0) return;
  afterCommit(tx, () => {
    for (const fn of listeners) fn(db);
  });
}
