/**
 * Brute-force and abuse limits. The interface the services use; implementations live in
 * `limiter-memory.ts` (one process) and `limiter-redis.ts` (shared by every instance), both on
 * rate-limiter-flexible. Every refusal is AppError('too_many_requests') with a Retry-After header.
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

export interface Limiter {
  /** Throws too_many_requests when the account is locked or the IP is over its failure limit. */
  assertAllowed(subject: AttemptSubject): Promise<void>;
  /**
   * Counts one failed attempt (wrong password or code) against the account and the IP. Throws
   * too_many_requests when this failure crosses a limit, so the caller answers 429 at once.
   */
  recordFailure(subject: AttemptSubject): Promise<void>;
  /** Clears the account's consecutive-failure count after a complete successful login. */
  recordSuccess(subject: AttemptSubject): Promise<void>;
  /** Counts one request against `quota` for `key`; throws too_many_requests when over. */
  consume(quota: QuotaName, key: string): Promise<void>;
  close(): Promise<void>;
}
