/** Picks the limiter for a configuration: none, in-process, or shared through Redis. */
import type { Config } from '../config.ts';
import type { Attempt, AttemptSubject, Limiter, QuotaName } from './limiter.ts';
import { createMemoryLimiter } from './limiter-memory.ts';
import { createRedisClient, createRedisLimiter, type LimiterLogger } from './limiter-redis.ts';

/** A limiter that allows everything: RATE_LIMIT_DISABLED=true, for benchmarks only. */
const noAttempt: Attempt = Object.freeze({
  failed: () => Promise.resolve(false),
  passed: () => Promise.resolve(),
  succeeded: () => Promise.resolve(),
});

export const noopLimiter: Limiter = Object.freeze({
  beginAttempt: (_subject: AttemptSubject) => Promise.resolve(noAttempt),
  assertAllowed: (_subject: AttemptSubject) => Promise.resolve(),
  recordFailure: (_subject: AttemptSubject) => Promise.resolve(),
  recordSuccess: (_subject: AttemptSubject) => Promise.resolve(),
  accountLockMs: (_accounts: readonly string[]) => Promise.resolve(0),
  clearAccounts: (_accounts: readonly string[]) => Promise.resolve(),
  consume: (_quota: QuotaName, _key: string) => Promise.resolve(),
  close: () => Promise.resolve(),
});

/** Options of {@link createLimiter}. */
export interface CreateLimiterOptions {
  /** Receives Redis outage and recovery messages. */
  readonly logger?: LimiterLogger;
}

/**
 * The limiter for `config`: a no-op when rate limiting is disabled, Redis-backed when REDIS_URL is
 * set (counters shared by every instance), in-process otherwise.
 */
export function createLimiter(config: Config, options: CreateLimiterOptions = {}): Limiter {
  // Disabled means every per-IP and per-account limit and quota, never a partial set: a benchmark
  // must not trip one, and production must not run with a forgotten half.
  if (config.rateLimit.disabled) return noopLimiter;
  if (config.redisUrl !== undefined) {
    return createRedisLimiter(config, { client: createRedisClient(config.redisUrl, options.logger), keyPrefix: config.redisKeyPrefix });
  }
  return createMemoryLimiter(config);
}
