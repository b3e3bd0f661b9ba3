/**
 * The brute-force and quota logic of Twofold, written once on top of rate-limiter-flexible and
 * parameterised by store: `limiter-memory.ts` hands it in-process counters, `limiter-redis.ts`
 * counters shared through Redis. Nothing here knows which store it talks to.
 *
 * Time is the store's (Date.now() in memory, the Redis server's clock for Redis), not deps.clock:
 * counters shared by several instances must agree on one clock. Tests move time with node:test's
 * mock.timers, which the memory store honours.
 */
import { createHash } from 'node:crypto';
import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { ConfigError, type Config } from '../config.ts';
import { AppError } from '../errors.ts';
import type { Attempt, AttemptSubject, ClearOptions, Limiter, QuotaName } from './limiter.ts';
import { AttemptRefused, takeAttempt } from './limiter-attempt.ts';
import { normalizeIp } from './ip-key.ts';

export { normalizeIp };

/** The part of the configuration the limiter reads. */
export type LimiterConfig = Pick<Config, 'rateLimit' | 'emailOtpCooldownSeconds' | 'emailOtpMaxPerHour'>;

/** What one counter needs: a name unique within the limiter, its limit and its window (0 = never expires). */
export interface CounterSpec {
  /** Part of the store key, e.g. `account` → `twofold:rl:account:<hash>`. */
  readonly name: string;
  readonly points: number;
  readonly durationSeconds: number;
}

/** A store: makes rate-limiter-flexible counters and releases its resources on close. */
export interface CounterStore {
  /** Creates one counter; `keyPrefix` already carries the limiter's namespace and the counter's name. */
  counter(spec: CounterSpec, keyPrefix: string): RateLimiterAbstract;
  /**
   * Deletes each `[counter, key]` from the store itself, all or none, rejecting when that store cannot
   * be reached (where `delete` would answer from a stand-in). Absent when `delete` already is that.
   */
  deleteWithoutFallback?(entries: ReadonlyArray<readonly [RateLimiterAbstract, string]>): Promise<void>;
  /** Resolves once the store is reachable; absent for stores that always are. */
  ready?(): Promise<void>;
  close(): Promise<void>;
}

/** Default namespace of every key; Redis is often shared with other software. */
export const DEFAULT_KEY_PREFIX = 'twofold';

// One message for every lock: whether the account or the IP tripped, and whether the account
// exists at all, is nothing an attacker should learn from the answer.
const LOCKED_DETAIL = 'Too many failed attempts. Try again later.';
const QUOTA_DETAIL = 'Too many requests. Try again later.';

/**
 * How long a consecutive-failure count is kept without reaching the limit. Counters also exist for
 * login names that match no user (so a lock reveals nothing), and a counter that never expired
 * would let anyone grow the store without bound by spraying made-up names. 14 days does not weaken
 * the ceiling: an attacker who runs into the hard lock gets 100 guesses per hard lock (a day by
 * default), far more than 100 guesses spread thinly over 14 days.
 */
export const CONSECUTIVE_RETENTION_SECONDS = 14 * 86400;

/**
 * The longest duration a counter or lock may have: the memory store (also Redis's insurance)
 * expires keys with setTimeout, which fires at once for more than 2^31-1 ms — a 30-day lock would
 * silently last 1 ms. About 24.8 days.
 */
export const MAX_DURATION_SECONDS = Math.floor(0x7fffffff / 1000);

/** Refuses settings the stores cannot honour, naming the variable, rather than limit less than configured. */
function assertDurations(config: LimiterConfig): void {
  const s = config.rateLimit;
  const checks: [number, string][] = [
    [s.accountLockSeconds, 'LOCKOUT_DURATION'],
    [s.accountHardLockSeconds, 'LOCKOUT_HARD_DURATION'],
    [s.ipWindowSeconds, 'RATE_LIMIT_IP_WINDOW'],
    [config.emailOtpCooldownSeconds, 'EMAIL_OTP_COOLDOWN'],
  ];
  for (const [seconds, name] of checks) {
    if (seconds > MAX_DURATION_SECONDS) {
      throw new ConfigError(`${name} must be at most ${MAX_DURATION_SECONDS} seconds (24 days), got ${seconds}`);
    }
  }
}

type Counter = RateLimiterAbstract;

/**
 * Implements {@link Limiter} over any {@link CounterStore}.
 *
 * Failures are counted by `recordFailure` and judged by `assertAllowed`, which callers run before
 * they check the credentials: the attempt that reaches a limit still gets its ordinary answer
 * (401), every attempt after it gets 429 — even one with the right password.
 */
export class FlexibleLimiter implements Limiter {
  private readonly settings: LimiterConfig['rateLimit'];
  private readonly store: CounterStore;
  /** Failures per account in a fixed window; reaching the limit locks for accountLockSeconds. */
  private readonly accountFailures: Counter;
  /** Failures per account with no success in between (NIST SP 800-63B §5.2.2: at most 100). */
  private readonly accountConsecutive: Counter;
  /** Failures per client IP (or IPv6 /64) in a fixed window, across all accounts (password spraying). */
  private readonly ipFailures: Counter;
  private readonly quotas: ReadonlyMap<QuotaName, Counter>;

  constructor(config: LimiterConfig, store: CounterStore, keyPrefix: string = DEFAULT_KEY_PREFIX) {
    assertDurations(config);
    const s = config.rateLimit;
    this.settings = s;
    this.store = store;
    const make = (spec: CounterSpec): Counter => store.counter(spec, `${keyPrefix}:rl:${spec.name}`);

    this.accountFailures = make({ name: 'account', points: s.accountMaxFailures, durationSeconds: s.accountLockSeconds });
    // Not reset by the short window: only a successful login (recordSuccess), the end of the hard
    // lock or the long retention clears it, so pacing guesses below the short limit does not get
    // around the NIST ceiling.
    this.accountConsecutive = make({
      name: 'account-consecutive',
      points: s.accountMaxConsecutiveFailures,
      durationSeconds: CONSECUTIVE_RETENTION_SECONDS,
    });
    this.ipFailures = make({ name: 'ip', points: s.ipMaxFailures, durationSeconds: s.ipWindowSeconds });

    const quotas = new Map<QuotaName, Counter>([
      ['signup:ip', make({ name: 'quota:signup-ip', points: s.ipMaxRequestsPerMinute, durationSeconds: 60 })],
      ['mail:ip', make({ name: 'quota:mail-ip', points: s.ipMaxRequestsPerMinute, durationSeconds: 60 })],
      ['mail:address', make({ name: 'quota:mail-address', points: s.emailMaxPerHour, durationSeconds: 3600 })],
      // One requester's mails to one address, and the owner's own budget (see services/mail-quota.ts).
      ['mail:pair', make({ name: 'quota:mail-pair', points: s.emailMaxPerHour, durationSeconds: 3600 })],
      ['mail:owner', make({ name: 'quota:mail-owner', points: s.emailMaxPerHour, durationSeconds: 3600 })],
      ['email_otp:hour', make({ name: 'quota:email-otp-hour', points: config.emailOtpMaxPerHour, durationSeconds: 3600 })],
      // Passkey options store a challenge row each, unauthenticated: bounded per IP, but generously,
      // since every visit of the login page asks for one (browser autofill).
      ['passkey:ip', make({ name: 'quota:passkey-ip', points: s.ipMaxRequestsPerMinute * 4, durationSeconds: 60 })],
      // The OpenID authorization and logout requests store a row each (an interaction, a provider
      // session), unauthenticated: bounded per IP as generously as passkey options, since every sign-in
      // to an application starts with one (oidc/mount.ts).
      ['oidc:ip', make({ name: 'quota:oidc-ip', points: s.ipMaxRequestsPerMinute * 4, durationSeconds: 60 })],
    ]);
    // A cooldown of 0 means none; rate-limiter-flexible would read duration 0 as "never expires".
    if (config.emailOtpCooldownSeconds > 0) {
      quotas.set('email_otp:cooldown', make({ name: 'quota:email-otp-cooldown', points: 1, durationSeconds: config.emailOtpCooldownSeconds }));
    }
    this.quotas = quotas;
  }

  /**
   * Counts the attempt before the caller checks the credential (see limiter-attempt.ts). Locks
   * already in place are judged first by assertAllowed, for their Retry-After and the repair of a
   * hard lock that never landed.
   */
  async beginAttempt(subject: AttemptSubject): Promise<Attempt> {
    await this.assertAllowed(subject);
    const s = this.settings;
    const counters = [{ counter: this.ipFailures, key: ipKey(subject.ip), limit: s.ipMaxFailures, lockSeconds: 0, clearedOnSuccess: false }];
    for (const name of accountsOf(subject)) {
      const account = accountKey(name);
      counters.push(
        { counter: this.accountFailures, key: account, limit: s.accountMaxFailures, lockSeconds: s.accountLockSeconds, clearedOnSuccess: true },
        { counter: this.accountConsecutive, key: account, limit: s.accountMaxConsecutiveFailures, lockSeconds: s.accountHardLockSeconds, clearedOnSuccess: true },
      );
    }
    try {
      return await takeAttempt(counters, (extra) => this.clearAccounts(extra));
    } catch (e) {
      if (e instanceof AttemptRefused) throw tooManyRequests(e.msBeforeNext, LOCKED_DETAIL);
      throw e;
    }
  }

  /**
   * Deletes both failure counts (and so the locks) of each account name. A login clears with the
   * fallback (it must work while Redis is down); the admin unlock without: an unlock that cleared
   * only this process's stand-ins would be reported done while every instance still reads the lock.
   */
  async clearAccounts(accounts: readonly string[], options: ClearOptions = {}): Promise<void> {
    const entries = accounts.flatMap((a) => [[this.accountFailures, accountKey(a)], [this.accountConsecutive, accountKey(a)]] as const);
    const strict = options.fallback === false ? this.store.deleteWithoutFallback?.bind(this.store) : undefined;
    try {
      // Strict: one deletion of every key, so a store lost halfway clears nothing (the answer says so).
      await (strict ? strict(entries) : Promise.all(entries.map(([counter, key]) => counter.delete(key))));
    } catch (e) {
      if (!strict) throw e;
      throw new AppError('service_unavailable', { detail: 'The shared lockout counters (Redis) could not be cleared: the account may still be locked. Try again once Redis is reachable.', cause: e });
    }
  }

  /**
   * Throws too_many_requests while the account is locked (either lock) or the IP has reached its
   * failure limit. Retry-After is the longest of the applicable waits.
   */
  async assertAllowed(subject: AttemptSubject): Promise<void> {
    const s = this.settings;
    const ipRes = await this.ipFailures.get(ipKey(subject.ip));
    const waitsMs: number[] = [];
    if (reached(ipRes, s.ipMaxFailures)) waitsMs.push(ipRes.msBeforeNext);
    const accountWaits = await Promise.all(accountsOf(subject).map((a) => this.accountWaitMs(accountKey(a))));
    waitsMs.push(...accountWaits.flat());
    if (waitsMs.length > 0) throw tooManyRequests(Math.max(...waitsMs), LOCKED_DETAIL);
  }

  /** The longest wait of the locks of `accounts`; 0 when none is locked. Reads only. */
  async accountLockMs(accounts: readonly string[]): Promise<number> {
    const s = this.settings;
    const waits = await Promise.all(
      accounts.map(async (a) => {
        const key = accountKey(a);
        const [shortRes, longRes] = await Promise.all([this.accountFailures.get(key), this.accountConsecutive.get(key)]);
        return Math.max(reached(shortRes, s.accountMaxFailures) ? shortRes.msBeforeNext : 0, reached(longRes, s.accountMaxConsecutiveFailures) ? Math.max(0, longRes.msBeforeNext) : 0);
      }),
    );
    return Math.max(0, ...waits);
  }

  /** The waits of one account's locks (short and hard); none when it is not locked. */
  private async accountWaitMs(account: string): Promise<number[]> {
    const s = this.settings;
    const [shortRes, longRes] = await Promise.all([this.accountFailures.get(account), this.accountConsecutive.get(account)]);
    const waitsMs: number[] = [];
    if (reached(shortRes, s.accountMaxFailures)) waitsMs.push(shortRes.msBeforeNext);
    if (reached(longRes, s.accountMaxConsecutiveFailures)) {
      const hardLockMs = s.accountHardLockSeconds * 1000;
      if (longRes.msBeforeNext > 0 && longRes.msBeforeNext <= hardLockMs) {
        waitsMs.push(longRes.msBeforeNext);
      } else {
        // The limit was reached but the hard lock never landed (the process died between the two
        // writes), so the count would hold for the rest of its retention: lock for the set time.
        await this.accountConsecutive.block(account, s.accountHardLockSeconds);
        waitsMs.push(hardLockMs);
      }
    }
    return waitsMs;
  }

  /**
   * Counts one failed attempt against the IP and, when given, the account. Never throws
   * too_many_requests itself: the failure that reaches a limit arms the lock, and the caller's
   * next assertAllowed refuses.
   */
  async recordFailure(subject: AttemptSubject): Promise<void> {
    const s = this.settings;
    const tasks: Promise<unknown>[] = [this.ipFailures.penalty(ipKey(subject.ip))];
    if (subject.account !== undefined) {
      const account = accountKey(subject.account);
      tasks.push(
        // The lock runs for the full accountLockSeconds from the failure that reached the limit,
        // not just for what is left of the counting window. Only the one increment that lands
        // exactly on the limit blocks, so concurrent failures cannot keep extending the lock.
        this.accountFailures.penalty(account).then(async (res) => {
          if (res.consumedPoints === s.accountMaxFailures) await this.accountFailures.block(account, s.accountLockSeconds);
        }),
        this.accountConsecutive.penalty(account).then(async (res) => {
          if (res.consumedPoints === s.accountMaxConsecutiveFailures) {
            await this.accountConsecutive.block(account, s.accountHardLockSeconds);
          }
        }),
      );
    }
    await Promise.all(tasks);
  }

  /**
   * Clears the account's counters (both) after a complete successful login. The IP's count stays:
   * one good password from an address must not wipe a spraying attacker's record there.
   */
  async recordSuccess(subject: AttemptSubject): Promise<void> {
    if (subject.account !== undefined) await this.clearAccounts([subject.account]);
  }

  /** Counts one request against `quota` for `key` (an IP, an e-mail address, a user id); throws too_many_requests when over. */
  async consume(quota: QuotaName, key: string): Promise<void> {
    const counter = this.quotas.get(quota);
    if (counter === undefined) return; // only email_otp:cooldown can be switched off (0 seconds)
    try {
      await counter.consume(quotaKey(quota, key));
    } catch (e) {
      // rate-limiter-flexible rejects with a RateLimiterRes when over the limit, with an Error
      // when the store failed and no insurance limiter could answer: only the first is a 429.
      if (e instanceof RateLimiterRes) throw tooManyRequests(e.msBeforeNext, QUOTA_DETAIL);
      throw e;
    }
  }

  /**
   * Resolves once the store is reachable (Redis connected), rejects if the first connection attempt
   * fails. Optional to await: until then the Redis store answers from its insurance counters.
   */
  async ready(): Promise<void> {
    await this.store.ready?.();
  }

  /** Releases the store (quits the Redis client). */
  async close(): Promise<void> {
    await this.store.close();
  }
}

/** The account names of a subject: `account` and `alsoAccounts`, without repeats. */
function accountsOf(subject: AttemptSubject): string[] {
  return [...new Set([...(subject.account === undefined ? [] : [subject.account]), ...(subject.alsoAccounts ?? [])])];
}

function reached(res: RateLimiterRes | null, limit: number): res is RateLimiterRes {
  return res !== null && res.consumedPoints >= limit;
}

/** A 429 whose Retry-After is the wait in whole seconds, rounded up and at least 1. */
function tooManyRequests(msBeforeNext: number, detail: string): AppError {
  const seconds = Math.max(1, Math.ceil(msBeforeNext / 1000));
  return new AppError('too_many_requests', { detail, headers: { 'Retry-After': String(seconds) } });
}

/**
 * Store keys hold a SHA-256 of the subject, not the subject: a login name or e-mail address sent
 * by an attacker can be any length (bounded key size), and Redis then keeps no personal data in
 * clear.
 */
function digest(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('base64url');
}

/** Lower-cased so `Alice` and `alice` share one counter; case variants must not multiply the guesses. */
export function accountKey(account: string): string {
  return digest(account.trim().toLowerCase());
}

/** The counter key of a client address; see {@link normalizeIp}. */
export function ipKey(ip: string): string {
  return digest(normalizeIp(ip));
}

function quotaKey(quota: QuotaName, key: string): string {
  if (quota === 'signup:ip' || quota === 'mail:ip' || quota === 'passkey:ip' || quota === 'oidc:ip') return ipKey(key);
  // Addresses are compared case-insensitively so case variants cannot multiply the mails sent.
  if (quota === 'mail:address' || quota === 'mail:owner') return digest(key.trim().toLowerCase());
  return digest(key);
}
