/**
 * The limiter contract run on every store: always on the in-process store, and on Redis when
 * REDIS_URL is set (then also: two instances sharing one Redis, key namespacing, createLimiter).
 * The outage case needs no Redis server and always runs. Real time is used here (the Redis server
 * keeps its own clock), so windows are one second where a test must outlive one; nothing asserts on
 * elapsed wall-clock time.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, it, type TestContext } from 'node:test';
import { Redis } from 'ioredis';
import { loadConfig, type Config } from '../../src/config.ts';
import { isAppError } from '../../src/errors.ts';
import { createLimiter } from '../../src/security/create-limiter.ts';
import type { Limiter } from '../../src/security/limiter.ts';
import { accountKey, FlexibleLimiter, ipKey, type LimiterConfig } from '../../src/security/limiter-flexible.ts';
import { createMemoryLimiter } from '../../src/security/limiter-memory.ts';
import { createRedisClient, createRedisLimiter } from '../../src/security/limiter-redis.ts';

const REDIS_URL = process.env.REDIS_URL;
// One namespace per run, so parallel or aborted runs never see each other's counters.
const RUN_PREFIX = `twofold-test:${randomUUID()}`;
const base = loadConfig({ NODE_ENV: 'test' });

function settings(rateLimit: Partial<Config['rateLimit']> = {}, other: Partial<Omit<LimiterConfig, 'rateLimit'>> = {}): LimiterConfig {
  return {
    rateLimit: { ...base.rateLimit, ...rateLimit },
    emailOtpCooldownSeconds: other.emailOtpCooldownSeconds ?? base.emailOtpCooldownSeconds,
    emailOtpMaxPerHour: other.emailOtpMaxPerHour ?? base.emailOtpMaxPerHour,
  };
}

/** Awaits a promise that must fail with 429 and returns its Retry-After in seconds. */
async function retryAfter(p: Promise<unknown>): Promise<number> {
  const err = await p.then(
    () => assert.fail('expected too_many_requests'),
    (e: unknown) => e,
  );
  assert.ok(isAppError(err, 'too_many_requests'), `expected too_many_requests, got ${String(err)}`);
  const header = err.headers?.['Retry-After'];
  assert.match(header ?? '', /^\d+$/, 'Retry-After is whole seconds');
  const seconds = Number(header);
  assert.ok(seconds >= 1);
  return seconds;
}

async function fail(l: Limiter, times: number, account: string, ip = '192.0.2.1'): Promise<void> {
  for (let i = 0; i < times; i++) await l.recordFailure({ account, ip });
}

/** Makes a limiter on one store; every limiter a test makes with the same `scope` shares counters. */
interface Store {
  readonly name: string;
  open(t: TestContext, config: LimiterConfig, scope: string): Promise<Limiter>;
}

const memory: Store = {
  name: 'memory',
  open: (t, config) => {
    const l = createMemoryLimiter(config);
    t.after(() => l.close());
    return Promise.resolve(l);
  },
};

const redis: Store = {
  name: 'redis',
  open: async (t, config, scope) => {
    const l = createRedisLimiter(config, { client: createRedisClient(REDIS_URL ?? ''), keyPrefix: `${RUN_PREFIX}:${scope}` });
    t.after(() => l.close());
    // Until the connection is ready the insurance counters answer; these tests need Redis itself.
    await ready(l);
    return l;
  },
};

async function ready(l: Limiter): Promise<void> {
  assert.ok(l instanceof FlexibleLimiter);
  await l.ready();
}

function contract(store: Store): void {
  describe(`limiter contract on ${store.name}`, () => {
    it('locks the account after accountMaxFailures failures, with a numeric Retry-After even for the right password', async (t) => {
      const l = await store.open(t, settings({ accountMaxFailures: 3, accountLockSeconds: 600 }), 'lock');
      await fail(l, 2, 'alice');
      await l.assertAllowed({ account: 'alice', ip: '192.0.2.1' });
      await fail(l, 1, 'alice'); // reaches the limit: the caller still answers its ordinary 401
      const seconds = await retryAfter(l.assertAllowed({ account: 'Alice', ip: '198.51.100.1' }));
      assert.ok(seconds <= 600);
      await l.assertAllowed({ account: 'bob', ip: '198.51.100.1' });
    });

    it('recordSuccess resets the account counters', async (t) => {
      const l = await store.open(t, settings({ accountMaxFailures: 3, accountMaxConsecutiveFailures: 4 }), 'success');
      await fail(l, 2, 'alice');
      await l.recordSuccess({ account: 'alice', ip: '192.0.2.1' });
      await fail(l, 2, 'alice');
      await l.assertAllowed({ account: 'alice', ip: '192.0.2.1' });
    });

    it('counts failures from one IP across different accounts', async (t) => {
      const l = await store.open(t, settings({ ipMaxFailures: 4 }), 'ip');
      for (let i = 0; i < 4; i++) await l.recordFailure({ account: `user${i}`, ip: '203.0.113.5' });
      await retryAfter(l.assertAllowed({ account: 'someone-else', ip: '203.0.113.5' }));
      await l.assertAllowed({ account: 'someone-else', ip: '203.0.113.6' });
    });

    it('hard-locks after the consecutive limit even when the failures are spread over several windows', async (t) => {
      const l = await store.open(
        t,
        settings({ accountMaxFailures: 3, accountLockSeconds: 1, accountMaxConsecutiveFailures: 6, accountHardLockSeconds: 600 }),
        'hard',
      );
      for (let burst = 0; burst < 2; burst++) {
        await fail(l, 2, 'alice'); // below the short limit
        await sleep(1100); // the short window passes
        await l.assertAllowed({ account: 'alice', ip: '192.0.2.1' });
      }
      await fail(l, 2, 'alice'); // the sixth consecutive failure
      const seconds = await retryAfter(l.assertAllowed({ account: 'alice', ip: '192.0.2.1' }));
      assert.ok(seconds > 1, 'the hard lock, not the one-second short lock');
    });

    it('consume refuses over quota with Retry-After', async (t) => {
      const l = await store.open(t, settings({ emailMaxPerHour: 2 }, { emailOtpCooldownSeconds: 60 }), 'quota');
      await l.consume('mail:address', 'alice@example.com');
      await l.consume('mail:address', 'Alice@Example.com');
      assert.ok((await retryAfter(l.consume('mail:address', 'alice@example.com'))) <= 3600);
      await l.consume('email_otp:cooldown', 'user-1');
      assert.ok((await retryAfter(l.consume('email_otp:cooldown', 'user-1'))) <= 60);
      await l.consume('email_otp:cooldown', 'user-2');
    });
  });
}

// The in-process store always runs, so this file passes with or without a Redis server.
contract(memory);

if (REDIS_URL !== undefined && REDIS_URL !== '') {
  const admin = new Redis(REDIS_URL);
  after(async () => {
    // Remove everything this run wrote, then let go of the connection.
    const keys: string[] = [];
    for await (const batch of admin.scanStream({ match: `${RUN_PREFIX}:*`, count: 500 })) keys.push(...(batch as string[]));
    if (keys.length > 0) await admin.del(...keys);
    await admin.quit();
  });

  contract(redis);

  describe('Redis: counters shared by every instance', () => {
    it('two instances on one Redis see each other\'s failures and quota use', async (t) => {
      const config = settings({ accountMaxFailures: 4, ipMaxFailures: 6, ipMaxRequestsPerMinute: 2 });
      const a = await redis.open(t, config, 'shared');
      const b = await redis.open(t, config, 'shared');
      await fail(a, 2, 'alice', '192.0.2.10');
      await fail(b, 2, 'alice', '192.0.2.11'); // 4 in all: neither instance saw 4 by itself
      await retryAfter(a.assertAllowed({ account: 'alice', ip: '192.0.2.12' }));
      await retryAfter(b.assertAllowed({ account: 'alice', ip: '192.0.2.12' }));
      await b.recordSuccess({ account: 'alice', ip: '192.0.2.11' });
      await a.assertAllowed({ account: 'alice', ip: '192.0.2.12' });

      for (let i = 0; i < 3; i++) await a.recordFailure({ account: `a${i}`, ip: '198.51.100.20' });
      for (let i = 0; i < 3; i++) await b.recordFailure({ account: `b${i}`, ip: '198.51.100.20' });
      await retryAfter(a.assertAllowed({ ip: '198.51.100.20' }));

      await a.consume('signup:ip', '203.0.113.1');
      await b.consume('signup:ip', '203.0.113.1');
      await retryAfter(a.consume('signup:ip', '203.0.113.1'));
    });

    it('keeps every key under its prefix and no account name or address in clear', async (t) => {
      const scope = `keys-${randomUUID()}`;
      const l = await redis.open(t, settings(), scope);
      await l.recordFailure({ account: 'Visible-Name@example.com', ip: '192.0.2.99' });
      await l.consume('mail:address', 'visible-name@example.com');
      const keys: string[] = [];
      for await (const batch of admin.scanStream({ match: `${RUN_PREFIX}:${scope}:*` })) keys.push(...(batch as string[]));
      assert.ok(keys.length >= 4, `expected the account, consecutive, ip and quota keys, got ${keys.join(', ')}`);
      for (const key of keys) {
        assert.ok(key.startsWith(`${RUN_PREFIX}:${scope}:rl:`), key);
        assert.ok(!/visible|192\.0\.2\.99/i.test(key), key);
      }
      // A short counter has a window; the consecutive counter has its retention, never "no expiry".
      for (const key of keys) assert.ok((await admin.pttl(key)) > 0, `${key} has a TTL`);
    });

    it('createLimiter uses Redis when REDIS_URL is set (default twofold: namespace)', async (t) => {
      const config = loadConfig({ NODE_ENV: 'test', REDIS_URL, LOCKOUT_MAX_FAILURES: '2' });
      const account = `test-${randomUUID()}`;
      const ip = '2001:db8:feed::1';
      t.after(async () => {
        // Only this test's keys: the default namespace may be shared with a running service.
        const ours = [accountKey(account), ipKey(ip)];
        const keys: string[] = [];
        for await (const batch of admin.scanStream({ match: 'twofold:rl:*' })) {
          keys.push(...(batch as string[]).filter((k) => ours.some((h) => k.endsWith(`:${h}`))));
        }
        if (keys.length > 0) await admin.del(...keys);
      });
      const a = createLimiter(config);
      const b = createLimiter(config);
      t.after(() => Promise.all([a.close(), b.close()]));
      await Promise.all([ready(a), ready(b)]);
      await fail(a, 1, account, ip);
      await fail(b, 1, account, ip);
      await retryAfter(a.assertAllowed({ account, ip }));
    });

    it('REDIS_KEY_PREFIX keeps two deployments on one Redis database apart, and instances of one together', async (t) => {
      const run = randomUUID();
      const prefixes = [`deploy-a-${run}`, `deploy-b-${run}`];
      t.after(async () => {
        for (const prefix of prefixes) {
          const keys: string[] = [];
          for await (const batch of admin.scanStream({ match: `${prefix}:*` })) keys.push(...(batch as string[]));
          if (keys.length > 0) await admin.del(...keys);
        }
      });
      const configOf = (prefix: string) => loadConfig({ NODE_ENV: 'test', REDIS_URL, REDIS_KEY_PREFIX: prefix, LOCKOUT_MAX_FAILURES: '2' });
      const a1 = createLimiter(configOf(prefixes[0]!));
      const a2 = createLimiter(configOf(prefixes[0]!));
      const b = createLimiter(configOf(prefixes[1]!));
      t.after(() => Promise.all([a1.close(), a2.close(), b.close()]));
      await Promise.all([ready(a1), ready(a2), ready(b)]);
      await fail(a1, 1, 'shared-name', '192.0.2.40');
      await fail(b, 1, 'shared-name', '192.0.2.41');
      // One failure in each deployment: neither locks the name, though both counted it.
      await a1.assertAllowed({ account: 'shared-name', ip: '192.0.2.42' });
      await b.assertAllowed({ account: 'shared-name', ip: '192.0.2.42' });
      // A second instance of deployment A counts into A's counter: A locks, B does not.
      await fail(a2, 1, 'shared-name', '192.0.2.43');
      await retryAfter(a1.assertAllowed({ account: 'shared-name', ip: '192.0.2.42' }));
      await b.assertAllowed({ account: 'shared-name', ip: '192.0.2.42' });
      for (const prefix of prefixes) {
        const keys: string[] = [];
        for await (const batch of admin.scanStream({ match: `${prefix}:rl:*` })) keys.push(...(batch as string[]));
        assert.ok(keys.length > 0, `${prefix} has keys`);
      }
    });
  });
}

describe('Redis outage', () => {
  it('keeps answering and keeps limiting (insurance counters) while Redis is unreachable', async (t) => {
    // Port 1 refuses connections: every Redis command fails at once (no offline queue).
    const l = createRedisLimiter(settings({ accountMaxFailures: 3, ipMaxFailures: 50 }, { emailOtpCooldownSeconds: 60 }), {
      client: createRedisClient('redis://127.0.0.1:1'),
      keyPrefix: `${RUN_PREFIX}:outage`,
    });
    t.after(() => l.close());
    await fail(l, 2, 'alice');
    await l.assertAllowed({ account: 'alice', ip: '192.0.2.1' });
    await fail(l, 1, 'alice');
    await retryAfter(l.assertAllowed({ account: 'alice', ip: '192.0.2.1' }));
    await l.recordSuccess({ account: 'alice', ip: '192.0.2.1' });
    await l.assertAllowed({ account: 'alice', ip: '192.0.2.1' });
    await l.consume('email_otp:cooldown', 'user-1');
    await retryAfter(l.consume('email_otp:cooldown', 'user-1'));
  });
});
