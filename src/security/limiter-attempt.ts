/**
 * Count first, check after: one attempt at a credential takes a point from every counter that judges
 * it (the IP's failures, the account's short window, the account's consecutive count) before the
 * password or code is checked. The store increments atomically (Redis INCR, or one process), so of
 * a burst of simultaneous guesses at most the configured number is ever checked, on one instance or
 * on many sharing Redis — checking "is it locked?" and counting the failure afterwards let every
 * guess of a burst through while the first ones were still being hashed.
 */
import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Attempt } from './limiter.ts';

/** One counter an attempt is taken from, and what happens when a failure lands exactly on its limit. */
export interface AttemptCounter {
  readonly counter: RateLimiterAbstract;
  readonly key: string;
  readonly limit: number;
  /** Seconds to lock for when a failure reached the limit (the lock runs from that failure); 0 = none. */
  readonly lockSeconds: number;
  /** Cleared by a complete login (the account's counters); the IP's is only given its point back. */
  readonly clearedOnSuccess: boolean;
}

/** Thrown by {@link takeAttempt} when a counter is over its limit; carries the wait. */
export class AttemptRefused extends Error {
  constructor(readonly msBeforeNext: number) {
    super('attempt refused');
  }
}

/**
 * Takes one point from each counter. When any is over its limit the others get their points back
 * (a refused attempt counts nowhere: a client locked out by its IP must not run down an account's
 * budget) and AttemptRefused is thrown with the longest wait.
 */
export async function takeAttempt(counters: readonly AttemptCounter[], clearKeys: (extra: readonly string[]) => Promise<void>): Promise<Attempt> {
  const results = await Promise.allSettled(counters.map((c) => c.counter.consume(c.key)));
  const refusedMs: number[] = [];
  for (const r of results) {
    if (r.status === 'fulfilled') continue;
    // rate-limiter-flexible rejects with a RateLimiterRes when over the limit, with an Error when the
    // store failed and no insurance limiter could answer.
    if (!(r.reason instanceof RateLimiterRes)) throw r.reason;
    refusedMs.push(r.reason.msBeforeNext);
  }
  if (refusedMs.length > 0) {
    await Promise.all(counters.map((c, i) => (results[i]?.status === 'fulfilled' ? c.counter.reward(c.key) : undefined)));
    throw new AttemptRefused(Math.max(...refusedMs));
  }
  const consumed = results.map((r) => (r.status === 'fulfilled' ? r.value.consumedPoints : 0));
  let settled = false;
  const once = (): void => {
    if (settled) throw new Error('an attempt is settled once');
    settled = true;
  };
  return {
    async failed() {
      once();
      // Only the attempt that landed exactly on the limit locks, so failures arriving together
      // cannot keep pushing the end of the lock further away.
      const locking = counters.filter((c, i) => c.lockSeconds > 0 && consumed[i] === c.limit);
      await Promise.all(locking.map((c) => c.counter.block(c.key, c.lockSeconds)));
      return locking.length > 0;
    },
    async passed() {
      once();
      await Promise.all(counters.map((c) => c.counter.reward(c.key)));
    },
    async succeeded(alsoClear = []) {
      once();
      await Promise.all([
        ...counters.map((c) => (c.clearedOnSuccess ? c.counter.delete(c.key) : c.counter.reward(c.key))),
        clearKeys(alsoClear),
      ]);
    },
  };
}
