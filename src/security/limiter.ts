/**
 * Brute-force and abuse limits. The interface the services use; `create-limiter.ts` picks the
 * implementation: `limiter-memory.ts` (one process) or `limiter-redis.ts` (shared by every
 * instance), both thin stores under `limiter-flexible.ts` on rate-limiter-flexible. Every refusal
 * is AppError('too_many_requests') with a Retry-After header (whole seconds, at least 1).
 *
 * Calling order for a credential check: `beginAttempt` first — it counts the attempt BEFORE the
 * expensive check, so a burst of simultaneous guesses cannot all pass a check that only counted
 * finished failures — then verify, then settle the attempt: `failed()` (the point stays),
 * `passed()` (the point is given back) or `succeeded()` (a whole login: the account's counts are
 * cleared). The attempt that reaches a limit still gets its ordinary error; every attempt after it
 * gets 429, even with the right password. `assertAllowed`/`recordFailure` are the older
 * check-then-count pair; they lose races and are kept only for callers not yet moved over.
 */

/** Who is trying: the account (user id, or the lower-cased login name when no user matched) and the client IP. */
export interface AttemptSubject {
  account?: string;
  ip: string;
  /**
   * More names of the same account, counted and judged like `account`. Used once the caller has
   * proven who the account is (an MFA token, a session), so that guesses there also lock the login
   * by username and by e-mail — never at the password step, where it would link the two names.
   */
  alsoAccounts?: readonly string[];
}

/** One attempt counted by {@link Limiter.beginAttempt}; settle it exactly once. */
export interface Attempt {
  /**
   * The credential was wrong: the point stays counted, and a lock is armed when this attempt reached a
   * limit. Resolves true when this failure locked the account (the audit log records login.locked).
   */
  failed(): Promise<boolean>;
  /** The credential was right but no login completed (a second factor is still due): the point is given back. */
  passed(): Promise<void>;
  /**
   * A complete login: the account's counts are cleared — for `alsoClear` too (the other names of the
   * same account) — and the IP's point is given back; the IP's earlier failures stay.
   */
  succeeded(alsoClear?: readonly string[]): Promise<void>;
}

/** How {@link Limiter.clearAccounts} may clear. */
export interface ClearOptions {
  /** false: fail rather than fall back to the per-process counters when the shared store is unreachable. Default true. */
  readonly fallback?: boolean;
}

/** Named quotas for requests that cost us something (mail, sign-ups), counted whether they succeed or not. */
export type QuotaName =
  | 'signup:ip'
  | 'mail:ip'
  | 'mail:address'
  | 'mail:pair'
  | 'mail:owner'
  | 'email_otp:cooldown'
  | 'email_otp:hour'
  | 'passkey:ip'
  | 'oidc:ip';

/** Brute-force counters and request quotas; see the module comment for the calling order. */
export interface Limiter {
  /**
   * Counts one attempt against the account and the IP before the credential is checked; throws
   * too_many_requests (counting nothing) when either is locked or this attempt would go over a limit.
   */
  beginAttempt(subject: AttemptSubject): Promise<Attempt>;
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
  /**
   * Milliseconds until the longest lock of any of `accounts` ends; 0 when none is locked. Read-only
   * (the admin API shows it as `locked_until`). `clearAccounts` ends the locks: the admin unlock.
   */
  accountLockMs(accounts: readonly string[]): Promise<number>;
  /**
   * Deletes every failure count and lock of each account name (admin unlock; a complete login clears
   * them the same way). With `fallback: false` the delete must reach the store every instance reads:
   * it throws service_unavailable (503) when Redis cannot be reached, instead of clearing only this
   * process's stand-in counters and leaving the shared lock in place.
   */
  clearAccounts(accounts: readonly string[], options?: ClearOptions): Promise<void>;
  /** Counts one request against `quota` for `key`; throws too_many_requests when over. */
  consume(quota: QuotaName, key: string): Promise<void>;
  /** Releases the store (quits the Redis client). */
  close(): Promise<void>;
}
