/**
 * Counters shared by every instance through Redis (REDIS_URL), so that adding instances does not
 * add guesses. Each counter is insured by an in-process one: while Redis is unreachable the
 * service keeps answering and keeps limiting, per instance, instead of failing or letting
 * everything through; once Redis answers again, what the insurance counted is added to Redis.
 */
import { once } from 'node:events';
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { RateLimiterRedis, type RateLimiterAbstract, type RateLimiterMemory, type RateLimiterRes } from 'rate-limiter-flexible';
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

/**
 * Adds points counted elsewhere to a Redis counter, in one step: INCRBY, and the key lives at least
 * `ms` more (the longer of its own life and theirs; a key INCRBY just created has none yet). A key
 * left without an expiry would lock for good: it gets the counter's own duration at least.
 */
const ADD_POINTS_SCRIPT = `local n = redis.call('incrby', KEYS[1], ARGV[1])
local ms = math.max(tonumber(ARGV[2]), tonumber(ARGV[3]))
if redis.call('pttl', KEYS[1]) < ms then redis.call('pexpire', KEYS[1], ms) end
return n`;

/** Keys one counter remembers as counted during outages, at most (see InsuredRedisCounter). */
const MAX_OFFLINE_KEYS = 50_000;

/**
 * A Redis counter that hands the failures its insurance counted during an outage back to Redis.
 * The library answers from Redis alone once it is reachable again, so a lock armed in the insurance
 * while Redis was down was dropped the moment it came back, and the failures counted meanwhile with
 * it (an account locked during the outage had the rest of its Redis budget again). Now, the first
 * time Redis answers for a key the insurance counted while Redis was not connected, the insurance's
 * points are added to the Redis count (its lock too, as a count over the limit that lives as long as
 * the lock) and the key is dropped from the insurance. The lock is then in Redis, where every
 * instance reads it. The same holds for the quotas (mails, sign-ups, e-mailed codes).
 *
 * Only keys counted while the client was not connected are handed over: those calls never reached
 * Redis (rejectIfRedisNotReady). A call that timed out on a connected but slow Redis was answered by
 * the insurance too, but Redis may still run it later; handing such points over counted them twice,
 * and while Redis lagged every call re-sent the whole count, which locked accounts after a few
 * failures. (A key counted both ways in one window, a stall and then an outage, can still count its
 * stalled points twice.)
 */
class InsuredRedisCounter extends RateLimiterRedis {
  /** Hand-overs under way, by store key: simultaneous calls for one key add its points once. */
  readonly #handing = new Map<string, Promise<void>>();
  /**
   * Store keys the insurance counted while Redis was not connected: theirs is a count Redis never saw.
   * A key leaves the set at its hand-over; one never used again stays, so the set is bounded (an
   * outage with more keys than that, a spraying attack, hands over the first ones only).
   */
  readonly #countedOffline = new Set<string>();

  constructor(
    opts: ConstructorParameters<typeof RateLimiterRedis>[0],
    private readonly redis: Redis,
    private readonly insurance: RateLimiterMemory,
  ) {
    super({ ...opts, storeClient: redis, insuranceLimiter: insurance });
  }

  /**
   * Before a call: while Redis is not connected the call goes to the insurance alone, so its key is
   * marked; once connected, a marked key's count is moved into Redis first. Unmarked keys cost one
   * set lookup.
   */
  private beforeCall(key: string | number): Promise<void> {
    const rlKey = this.getKey(key);
    if (this.redis.status !== 'ready') {
      if (this.#countedOffline.size < MAX_OFFLINE_KEYS) this.#countedOffline.add(rlKey);
      return Promise.resolve();
    }
    if (!this.#countedOffline.has(rlKey)) return Promise.resolve();
    let pending = this.#handing.get(rlKey);
    if (pending === undefined) {
      pending = (async () => {
        this.#countedOffline.delete(rlKey);
        const held = await this.insurance.get(key);
        if (held === null) return;
        // Taken out of the insurance before it is sent: a hand-over is applied at most once. One whose
        // answer is lost (Redis slow past the command timeout, but running it later) is not sent
        // again; one that really failed loses the outage's count, as every outage did before
        // hand-overs existed. A failure is never counted twice this way.
        await this.insurance.delete(key);
        // A record whose time is up (its expiry timer late, or the wall clock stepped) holds nothing.
        if (held.consumedPoints <= 0 || held.msBeforeNext <= 0) return;
        await this.redis.eval(ADD_POINTS_SCRIPT, 1, rlKey, held.consumedPoints, held.msBeforeNext, this.duration * 1000);
      })()
        // Redis failed: what was handed over is lost (see above); the counter's own call answers next.
        .catch(() => undefined)
        .finally(() => this.#handing.delete(rlKey));
      this.#handing.set(rlKey, pending);
    }
    return pending;
  }

  override async consume(key: string | number, points?: number, options?: Record<string, unknown>): Promise<RateLimiterRes> {
    await this.beforeCall(key);
    return super.consume(key, points, options);
  }

  override async penalty(key: string | number, points?: number, options?: Record<string, unknown>): Promise<RateLimiterRes> {
    await this.beforeCall(key);
    return super.penalty(key, points, options);
  }

  override async reward(key: string | number, points?: number, options?: Record<string, unknown>): Promise<RateLimiterRes> {
    await this.beforeCall(key);
    return super.reward(key, points, options);
  }

  override async get(key: string | number, options?: Record<string, unknown>): Promise<RateLimiterRes | null> {
    await this.beforeCall(key);
    return super.get(key, options);
  }

  override async block(key: string | number, secDuration: number, options?: Record<string, unknown>): Promise<RateLimiterRes> {
    await this.beforeCall(key);
    return super.block(key, secDuration, options);
  }

  /** Clears both stores: a login or unlock that reached Redis must not leave an outage's lock behind. */
  override async delete(key: string | number, options?: Record<string, unknown>): Promise<boolean> {
    const deleted = await super.delete(key, options);
    await this.insurance.delete(key);
    this.#countedOffline.delete(this.getKey(key));
    return deleted;
  }
}

/** A store of Redis counters, each insured by an in-process counter with the same limits; close() quits the client. */
export function redisStore(client: Redis): CounterStore {
  const insurances = new WeakMap<RateLimiterAbstract, RateLimiterMemory>();
  return {
    counter: (spec, keyPrefix) => {
      const insurance = memoryCounter(spec, keyPrefix);
      const counter = new InsuredRedisCounter(
        {
          storeClient: client,
          points: spec.points,
          duration: spec.durationSeconds,
          keyPrefix,
          // Do not even try while the connection is not ready; go to the insurance limiter.
          rejectIfRedisNotReady: true,
        },
        client,
        insurance,
      );
      insurances.set(counter, insurance);
      return counter;
    },
    // The library's delete answers from the insurance when Redis fails; this one rejects instead
    // (offline commands fail at once, a stalled Redis after commandTimeout). Same key as the library's.
    deleteWithoutFallback: async (counter, key) => {
      await client.del(counter.getKey(key));
      // The stand-in too, so that a later outage does not bring back on this instance a lock cleared here.
      await insurances.get(counter)?.delete(key);
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
