/**
 * Brute-force and abuse limits. The interface the services use; `create-limiter.ts` picks the
 * implementation: `limiter-memory.ts` (one process) or `limiter-redis.ts` (shared by every
 * instance), both thin stores under `limiter-flexible.ts` on rate-limiter-flexible. Every refusal
 * is AppError('too_many_requests') with a Retry-After header (whole seconds, at least 1).
 *
 * Calling order for a credential check: `assertAllowed` first, then verify, then `recordFailure`
 * or (once the whole login succeeded) `recordSuccess`. The failure that reaches a limit still gets
 * its ordinary error; every attempt after it gets 429, even with the right password.
 */

/** Who is trying: the account (user id, or the lower-cased login name when no user matched) and the client IP. */
export interface AttemptSubject {
  account?: string;
  ip: string;
}

/** Named quotas for requests that cost us something (mail, sign-ups), counted whether they succeed or not. */
export type QuotaName =
  | 'signup:ip'
  | 'mail:ip'
  | 'mail:address'
  | 'email_otp:cooldown'
  | 'email_otp:hour';

/** Brute-force counters and request quotas; see the module comment for the calling order. */
export interface Limiter {
  /** Throws too_many_requests when the account is locked or the IP has reached its failure limit. */
  assertAllowed(subject: AttemptSubject): Promise<void>;
  /**
   * Counts one failed attempt (wrong password or code) against the account and the IP. Does not
   * throw too_many_requests: when this failure reaches a limit it arms the lock, the caller still
   * answers its ordinary error, and the next assertAllowed refuses.
   */
  recordFailure(subject: AttemptSubject): Promise<void>;
  /** Clears the account's failure counts (both) after a complete successful login; the IP's count stays. */
  recordSuccess(subject: AttemptSubject): Promise<void>;
  /** Counts one request against `quota` for `key`; throws too_many_requests when over. */
  consume(quota: QuotaName, key: string): Promise<void>;
  /** Releases the store (quits the Redis client). */
  close(): Promise<void>;
}
