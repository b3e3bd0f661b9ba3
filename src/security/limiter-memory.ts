/**
 * In-process counters: the default when REDIS_URL is unset. Right for one instance; with several
 * instances each would count on its own, so an attacker could multiply the budget — set REDIS_URL.
 */
import { RateLimiterMemory } from 'rate-limiter-flexible';
import type { Limiter } from './limiter.ts';
import { DEFAULT_KEY_PREFIX, FlexibleLimiter, type CounterSpec, type CounterStore, type LimiterConfig } from './limiter-flexible.ts';

/** One rate-limiter-flexible memory counter; also the Redis store's insurance limiter. */
export function memoryCounter(spec: CounterSpec, keyPrefix: string): RateLimiterMemory {
  return new RateLimiterMemory({ points: spec.points, duration: spec.durationSeconds, keyPrefix });
}

/** A store of in-process counters; close() has nothing to release (their expiry timers are unref'd). */
export function memoryStore(): CounterStore {
  return { counter: memoryCounter, close: () => Promise.resolve() };
}

/** A limiter whose counters live in this process. */
export function createMemoryLimiter(config: LimiterConfig, keyPrefix: string = DEFAULT_KEY_PREFIX): Limiter {
  return new FlexibleLimiter(config, memoryStore(), keyPrefix);
}
