/**
 * The in-process limiter, with time moved by node:test's mock timers (rate-limiter-flexible's
 * memory store reads Date.now() and expires keys with setTimeout, both mocked here): no sleeping,
 * and Retry-After can be asserted exactly because the clock is frozen between ticks.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { ConfigError, loadConfig, type Config } from '../../src/config.ts';
import { isAppError } from '../../src/errors.ts';
import { createLimiter, noopLimiter } from '../../src/security/create-limiter.ts';
import type { Limiter, QuotaName } from '../../src/security/limiter.ts';
import { FlexibleLimiter, normalizeIp, type LimiterConfig } from '../../src/security/limiter-flexible.ts';
import { createMemoryLimiter, memoryStore } from '../../src/security/limiter-memory.ts';

const base = loadConfig({ NODE_ENV: 'test' });

function settings(rateLimit: Partial<Config['rateLimit']> = {}, other: Partial<Omit<LimiterConfig, 'rateLimit'>> = {}): LimiterConfig {
  return {
    rateLimit: { ...base.rateLimit, ...rateLimit },
    emailOtpCooldownSeconds: other.emailOtpCooldownSeconds ?? base.emailOtpCooldownSeconds,
    emailOtpMaxPerHour: other.emailOtpMaxPerHour ?? base.emailOtpMaxPerHour,
  };
}

/** Freezes time (mocked Date and setTimeout) for this test; returns a function that moves it on. */
function frozenTime(t: TestContext): (seconds: number) => void {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_700_000_000_000 });
  return (seconds) => t.mock.timers.tick(seconds * 1000);
}

function limiter(t: TestContext, config: LimiterConfig = settings()): Limiter {
  const l = createMemoryLimiter(config);
  t.after(() => l.close());
  return l;
}

/** Awaits a promise that must fail with 429 and returns its Retry-After in seconds. */
async function retryAfter(p: Promise<unknown>): Promise<number> {
  const err = await p.then(
    () => assert.fail('expected too_many_requests'),
    (e: unknown) => e,
  );
  assert.ok(isAppError(err, 'too_many_requests'), `expected too_many_requests, got ${String(err)}`);
  assert.equal(err.status, 429);
  const header = err.headers?.['Retry-After'];
  assert.match(header ?? '', /^\d+$/, 'Retry-After is whole seconds');
  const seconds = Number(header);
  assert.ok(seconds >= 1);
  return seconds;
}

async function fail(l: Limiter, times: number, account: string | undefined, ip = '192.0.2.1'): Promise<void> {
  for (let i = 0; i < times; i++) await l.recordFailure(account === undefined ? { ip } : { account, ip });
}

describe('account lock', () => {
  it('locks after accountMaxFailures failures: the failure that reaches the limit does not throw, every attempt after it gets 429', async (t) => {
    const tick = frozenTime(t);
    const l = limiter(t); // defaults: 10 failures → 900 s
    await fail(l, 9, 'alice');
    await l.assertAllowed({ account: 'alice', ip: '192.0.2.1' });
    await l.recordFailure({ account: 'alice', ip: '192.0.2.1' }); // the 10th: ordinary 401 for the caller
    // From now on even the right password is refused, because callers run assertAllowed first.
    assert.equal(await retryAfter(l.assertAllowed({ account: 'alice', ip: '192.0.2.1' })), 900);
    // The lock is on the account, not the address it came from.
    assert.equal(await retryAfter(l.assertAllowed({ account: 'alice', ip: '198.51.100.7' })), 900);
    tick(899.5);
    assert.equal(await retryAfter(l.assertAllowed({ account: 'alice', ip: '192.0.2.1' })), 1, 'rounded up, never 0');
    tick(0.5);
    await l.assertAllowed({ account: 'alice', ip: '192.0.2.1' });
    await l.assertAllowed({ account: 'bob', ip: '192.0.2.1' });
  });

  it('recordFailure never throws 429, even far past the limits', async (t) => {
    frozenTime(t);
    const l = limiter(t, settings({ accountMaxFailures: 2, accountMaxConsecutiveFailures: 3, ipMaxFailures: 4 }));
    await fail(l, 20, 'alice');
    await retryAfter(l.assertAllowed({ account: 'alice', ip: '192.0.2.1' }));
  });

  it('counts only failures within the window, and locks for the full lock time from the failure that reached the limit', async (t) => {
    const tick = frozenTime(t);
    const l = limiter(t, settings({ accountMaxFailures: 3, accountLockSeconds: 100 }));
    await fail(l, 2, 'alice');
    tick(101); // the window has passed: those two no longer count
    await fail(l, 2, 'alice');
    await l.assertAllowed({ account: 'alice', ip: '192.0.2.1' });
    tick(90);
    await fail(l, 1, 'alice'); // third in this window, 90 s in
    assert.equal(await retryAfter(l.assertAllowed({ account: 'alice', ip: '192.0.2.1' })), 100, 'not just the 10 s left of the window');
  });

  it('treats the account name case-insensitively', async (t) => {
    frozenTime(t);
    const l = limiter(t, settings({ accountMaxFailures: 3 }));
    await fail(l, 1, 'Alice');
    await fail(l, 1, 'ALICE');
    await fail(l, 1, 'alice');
    await retryAfter(l.assertAllowed({ account: 'aLiCe', ip: '203.0.113.9' }));
  });

  it('recordSuccess clears the account counters but not the IP counter', async (t) => {
    frozenTime(t);
    const l = limiter(t, settings({ accountMaxFailures: 3, accountMaxConsecutiveFailures: 5, ipMaxFailures: 7 }));
    await fail(l, 2, 'alice');
    await l.recordSuccess({ account: 'alice', ip: '192.0.2.1' });
    await fail(l, 2, 'alice');
    await l.assertAllowed({ account: 'alice', ip: '192.0.2.1' }); // 2, not 4: the short count was reset
    await l.recordSuccess({ account: 'alice', ip: '192.0.2.1' });
    await fail(l, 2, 'alice');
    await l.assertAllowed({ account: 'alice', ip: '192.0.2.1' }); // consecutive count 2, not 6: reset too
    // But the IP keeps all its failures, whatever the successes in between: 6 + 1 reaches 7.
    await fail(l, 1, 'carol');
    await retryAfter(l.assertAllowed({ account: 'carol', ip: '192.0.2.1' }));
  });
});

describe('consecutive-failure hard lock', () => {
  it('locks for accountHardLockSeconds once the consecutive limit is reached, even when the failures are spread out', async (t) => {
    const tick = frozenTime(t);
    const l = limiter(t, settings({ accountMaxFailures: 10, accountLockSeconds: 900, accountMaxConsecutiveFailures: 25, accountHardLockSeconds: 86400 }));
    // Nine failures every 20 minutes never trip the short lock...
    for (let burst = 0; burst < 2; burst++) {
      await fail(l, 9, 'alice');
      await l.assertAllowed({ account: 'alice', ip: '192.0.2.1' });
      tick(1200);
    }
    await fail(l, 6, 'alice');
    await l.assertAllowed({ account: 'alice', ip: '192.0.2.1' }); // 24 consecutive
    // ...but the 25th consecutive failure locks the account for the long duration.
    await fail(l, 1, 'alice');
    assert.equal(await retryAfter(l.assertAllowed({ account: 'alice', ip: '192.0.2.1' })), 86400);
    tick(86399);
    assert.equal(await retryAfter(l.assertAllowed({ account: 'alice', ip: '192.0.2.1' })), 1);
    tick(1);
    await l.assertAllowed({ account: 'alice', ip: '192.0.2.1' }); // the hard lock has run out and the count with it
    await fail(l, 9, 'alice');
    await l.assertAllowed({ account: 'alice', ip: '192.0.2.1' });
  });

  it('gives the longer wait when both locks apply', async (t) => {
    frozenTime(t);
    const l = limiter(t, settings({ accountMaxFailures: 3, accountLockSeconds: 900, accountMaxConsecutiveFailures: 3, accountHardLockSeconds: 7200 }));
    await fail(l, 3, 'alice');
    assert.equal(await retryAfter(l.assertAllowed({ account: 'alice', ip: '192.0.2.1' })), 7200);
  });

  it('applies the hard lock when the limit was reached but the lock write was lost', async (t) => {
    frozenTime(t);
    const config = settings({ accountMaxFailures: 50, accountMaxConsecutiveFailures: 3, accountHardLockSeconds: 600 });
    // A store whose first block() is lost, as if the process died between the count and the lock.
    const inner = memoryStore();
    let lose = true;
    const l = new FlexibleLimiter(config, {
      counter: (spec, keyPrefix): RateLimiterAbstract => {
        const counter = inner.counter(spec, keyPrefix);
        const block = counter.block.bind(counter);
        counter.block = (key, seconds) => {
          if (lose && spec.name === 'account-consecutive') {
            lose = false;
            return Promise.resolve(new RateLimiterRes());
          }
          return block(key, seconds);
        };
        return counter;
      },
      close: inner.close,
    });
    t.after(() => l.close());
    await fail(l, 3, 'alice');
    assert.equal(await retryAfter(l.assertAllowed({ account: 'alice', ip: '192.0.2.1' })), 600);
    assert.equal(lose, false);
    assert.equal(await retryAfter(l.assertAllowed({ account: 'alice', ip: '192.0.2.1' })), 600, 'now a real 600 s lock');
  });
});

describe('IP limit', () => {
  it('counts failures from one IP across different accounts and refuses that IP until the window passes', async (t) => {
    const tick = frozenTime(t);
    const l = limiter(t, settings({ ipMaxFailures: 5, ipWindowSeconds: 300 }));
    for (let i = 0; i < 4; i++) await l.recordFailure({ account: `user${i}`, ip: '192.0.2.1' });
    await l.assertAllowed({ account: 'fresh', ip: '192.0.2.1' });
    await l.recordFailure({ ip: '192.0.2.1' }); // a failure with no account (e.g. malformed login) counts too
    assert.equal(await retryAfter(l.assertAllowed({ account: 'fresh', ip: '192.0.2.1' })), 300);
    assert.equal(await retryAfter(l.assertAllowed({ ip: '192.0.2.1' })), 300);
    await l.assertAllowed({ account: 'fresh', ip: '192.0.2.2' }); // another client is unaffected
    await l.assertAllowed({ account: 'user0', ip: '192.0.2.2' }); // one failure each: no account lock
    tick(300);
    await l.assertAllowed({ account: 'fresh', ip: '192.0.2.1' });
  });

  it('counts an IPv6 client by its /64 and an IPv4-mapped address as IPv4', async (t) => {
    frozenTime(t);
    const l = limiter(t, settings({ ipMaxFailures: 3 }));
    await l.recordFailure({ ip: '2001:db8:1:2::1' });
    await l.recordFailure({ ip: '2001:db8:1:2:aaaa:bbbb:cccc:dddd' });
    await l.recordFailure({ ip: '2001:DB8:1:2::ffff' });
    await retryAfter(l.assertAllowed({ ip: '2001:db8:1:2::42' }));
    await l.assertAllowed({ ip: '2001:db8:1:3::1' });

    await l.recordFailure({ ip: '::ffff:198.51.100.1' });
    await l.recordFailure({ ip: '198.51.100.1' });
    await l.recordFailure({ ip: '::ffff:c633:6401' });
    await retryAfter(l.assertAllowed({ ip: '198.51.100.1' }));
  });

  it('normalizeIp', () => {
    assert.equal(normalizeIp('192.0.2.1'), '192.0.2.1');
    assert.equal(normalizeIp('::ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(normalizeIp('0:0:0:0:0:ffff:c000:201'), '192.0.2.1');
    assert.equal(normalizeIp('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(normalizeIp('2001:0DB8:0000:0001:1:2:3:4'), '2001:db8:0:1::/64');
    assert.equal(normalizeIp('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(normalizeIp('::1'), '0:0:0:0::/64');
    assert.equal(normalizeIp('64:ff9b::192.0.2.1'), '64:ff9b:0:0::/64');
    assert.equal(normalizeIp('Not-An-IP'), 'not-an-ip');
  });
});

describe('quotas', () => {
  async function exhaust(l: Limiter, quota: QuotaName, key: string, allowed: number): Promise<number> {
    for (let i = 0; i < allowed; i++) await l.consume(quota, key);
    return retryAfter(l.consume(quota, key));
  }

  it('signup:ip and mail:ip allow ipMaxRequestsPerMinute per minute, each on its own', async (t) => {
    const tick = frozenTime(t);
    const l = limiter(t, settings({ ipMaxRequestsPerMinute: 3 }));
    assert.equal(await exhaust(l, 'signup:ip', '192.0.2.1', 3), 60);
    await l.consume('signup:ip', '192.0.2.2');
    await l.consume('mail:ip', '192.0.2.1'); // a different quota
    tick(20);
    assert.equal(await retryAfter(l.consume('signup:ip', '192.0.2.1')), 40);
    tick(40);
    await l.consume('signup:ip', '192.0.2.1');
    assert.equal(await exhaust(l, 'mail:ip', '2001:db8::1', 3), 60);
    await retryAfter(l.consume('mail:ip', '2001:db8::2')); // same /64
  });

  it('mail:address allows emailMaxPerHour per hour, whatever the case of the address', async (t) => {
    const tick = frozenTime(t);
    const l = limiter(t, settings({ emailMaxPerHour: 2 }));
    await l.consume('mail:address', 'Alice@Example.com');
    await l.consume('mail:address', 'alice@example.com');
    assert.equal(await retryAfter(l.consume('mail:address', 'ALICE@example.COM')), 3600);
    await l.consume('mail:address', 'bob@example.com');
    tick(3600);
    await l.consume('mail:address', 'alice@example.com');
  });

  it('email_otp:cooldown allows one per emailOtpCooldownSeconds, email_otp:hour emailOtpMaxPerHour per hour', async (t) => {
    const tick = frozenTime(t);
    const l = limiter(t, settings({}, { emailOtpCooldownSeconds: 60, emailOtpMaxPerHour: 3 }));
    const user = '0b6c3f6e-0000-4000-8000-000000000001';
    for (let i = 0; i < 3; i++) {
      await l.consume('email_otp:cooldown', user);
      await l.consume('email_otp:hour', user);
      tick(15);
      assert.equal(await retryAfter(l.consume('email_otp:cooldown', user)), 45);
      tick(45);
    }
    await l.consume('email_otp:cooldown', user);
    assert.equal(await retryAfter(l.consume('email_otp:hour', user)), 3600 - 180);
  });

  it('email_otp:cooldown of 0 means no cooldown', async (t) => {
    frozenTime(t);
    const l = limiter(t, settings({}, { emailOtpCooldownSeconds: 0 }));
    for (let i = 0; i < 20; i++) await l.consume('email_otp:cooldown', 'user');
  });
});

describe('createLimiter', () => {
  it('refuses a duration the in-process timers cannot honour, naming the variable', () => {
    // loadConfig refuses it first (config-errors.test.ts); a config built another way meets this check.
    const base = loadConfig({ NODE_ENV: 'test' });
    const config = { ...base, rateLimit: { ...base.rateLimit, accountHardLockSeconds: 30 * 86400 } };
    assert.throws(() => createLimiter(config), (e: unknown) => e instanceof ConfigError && /LOCKOUT_HARD_DURATION/.test(e.message));
    const l = createLimiter(loadConfig({ NODE_ENV: 'test', LOCKOUT_HARD_DURATION: '24d' }));
    return l.close();
  });


  it('returns the in-process limiter when REDIS_URL is unset', async (t) => {
    frozenTime(t);
    const l = createLimiter(loadConfig({ NODE_ENV: 'test', LOCKOUT_MAX_FAILURES: '2' }));
    t.after(() => l.close());
    assert.ok(l instanceof FlexibleLimiter);
    await fail(l, 2, 'alice');
    await retryAfter(l.assertAllowed({ account: 'alice', ip: '192.0.2.1' }));
  });

  it('RATE_LIMIT_DISABLED=true: every method is a no-op that never throws', async (t) => {
    frozenTime(t);
    const config = loadConfig({
      NODE_ENV: 'test',
      RATE_LIMIT_DISABLED: 'true',
      LOCKOUT_MAX_FAILURES: '1',
      LOCKOUT_MAX_CONSECUTIVE_FAILURES: '1',
      RATE_LIMIT_IP_MAX_FAILURES: '1',
      RATE_LIMIT_IP_MAX_REQUESTS_PER_MINUTE: '1',
      RATE_LIMIT_EMAIL_MAX_PER_HOUR: '1',
      EMAIL_OTP_MAX_PER_HOUR: '1',
      // Disabled wins even over a Redis URL: nothing is opened.
      REDIS_URL: 'redis://127.0.0.1:1',
    });
    const l = createLimiter(config);
    assert.equal(l, noopLimiter);
    const quotas: QuotaName[] = ['signup:ip', 'mail:ip', 'mail:address', 'email_otp:cooldown', 'email_otp:hour'];
    for (let i = 0; i < 200; i++) {
      await l.assertAllowed({ account: 'alice', ip: '192.0.2.1' });
      await l.recordFailure({ account: 'alice', ip: '192.0.2.1' });
      for (const q of quotas) await l.consume(q, 'k');
    }
    await l.recordSuccess({ account: 'alice', ip: '192.0.2.1' });
    await l.close();
  });
});
