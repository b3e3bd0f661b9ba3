/**
 * Counters shared by every instance through Redis (REDIS_URL), so that adding instances does not
 * add guesses. Each counter is insured by an in-process one: while Redis is unreachable the
 * service keeps answering and keeps limiting, per instance, instead of failing or letting
 * everything through.
 */
import { once } from 'node:events';
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { RateLimiterRedis, type RateLimiterAbstract, type RateLimiterMemory } from 'rate-limiter-flexible';
import type { Limiter } from './limiter.ts';
import { DEFAULT_KEY_PREFIX, FlexibleLimiter, type CounterStore, type LimiterConfig } from './limiter-flexible.ts';
import { memoryCounter } from './limiter-memory.ts';

/**
 * ioredis (45 modules, about 2 MB of heap) is loaded by the first client, so an instance without
 * REDIS_URL never carries it. It is CommonJS, so it loads synchronously here, as createLimiter needs.
 */
const loadIoredis = (): typeof import('ioredis') => createRequire(import.meta.url)('ioredis') as typeof import('ioredis');

/** Where the Redis client reports losing and regaining its connection. */
export type LimiterLogger = Pick<Logger, 'warn' | 'info'>;

/** Opens an ioredis client tuned for counters that must answer fast or fall back. */
export function createRedisClient(url: string, logger?: LimiterLogger): Redis {
  const client = new (loadIoredis().Redis)(url, {
    // Fail at once while disconnected instead of queueing: the insurance limiter then answers, and
    // a login never waits on a Redis that is down.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // A Redis that accepts connections but stalls would otherwise hang every login.
    commandTimeout: 1000,
    connectTimeout: 5000,
  });
  // Without an 'error' listener ioredis prints every failed reconnect; log the outage once instead.
  let down = false;
  client.on('error', (err: Error) => {
    if (down) return;
    down = true;
    // The error serializer drops the failed command ioredis attaches: its arguments can hold the password.
    logger?.warn({ err }, 'Redis unreachable: rate limits fall back to per-instance counters until it returns');
  });
  client.on('ready', () => {
    if (!down) return;
    down = false;
    logger?.info('Redis reachable again: rate limits are shared again');
  });
  return client;
}

/** A store of Redis counters, each insured by an in-process counter with the same limits; close() quits the client. */
export function redisStore(client: Redis): CounterStore {
  const insurances = new WeakMap<RateLimiterAbstract, RateLimiterMemory>();
  return {
    counter: (spec, keyPrefix) => {
      const insurance = memoryCounter(spec, keyPrefix);
      const counter = new RateLimiterRedis({
        storeClient: client,
        points: spec.points,
        duration: spec.durationSeconds,
        keyPrefix,
        // Do not even try while the connection is not ready; go to the insurance limiter.
        rejectIfRedisNotReady: true,
        insuranceLimiter: insurance,
      });
      insurances.set(counter, insurance);
      return counter;
    },
    // The library's delete answers from the insurance when Redis fails; this one rejects instead
    // (offline commands fail at once, a stalled Redis after commandTimeout). Same key as the library's.
    // One DEL of every key: Redis runs it whole or not at all, so an unlock never clears half the counts.
    deleteWithoutFallback: async (entries) => {
      if (entries.length === 0) return;
      await client.del(...entries.map(([counter, key]) => counter.getKey(key)));
      // The stand-ins too, so that a later outage does not bring back on this instance a lock cleared here.
      await Promise.all(entries.map(([counter, key]) => insurances.get(counter)?.delete(key)));
    },
    // events.once rejects on an 'error' event, so a Redis that is down fails this instead of hanging.
    ready: async () => {
      if (client.status !== 'ready') await once(client, 'ready');
    },
    close: async () => {
      try {
        await client.quit();
      } catch {
        client.disconnect(); // not connected (Redis down): nothing to say goodbye to
      }
    },
  };
}

/** Options of {@link createRedisLimiter}. */
export interface RedisLimiterOptions {
  /** The client to count through; the limiter owns it from now on and quits it on close(). */
  readonly client: Redis;
  /** Namespace of every key (`<prefix>:rl:...`); default `twofold`. */
  readonly keyPrefix?: string;
}

/** A limiter whose counters live in Redis, shared by every instance using the same prefix. */
export function createRedisLimiter(config: LimiterConfig, options: RedisLimiterOptions): Limiter {
  return new FlexibleLimiter(config, redisStore(options.client), options.keyPrefix ?? DEFAULT_KEY_PREFIX);
}
