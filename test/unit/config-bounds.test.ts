/**
 * Settings with a ceiling. Every duration has one (WEBHOOK_TIMEOUT=25d overflowed Node's timer and
 * timed out every delivery after 1 ms; REFRESH_TOKEN_TTL=200000000d made every login fail), and
 * TRUST_PROXY refuses networks that hold clients in IPv6 and IPv4-mapped notation as in IPv4.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';

const DAY = 86400;
/** Node's timers fire at once beyond this many milliseconds. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** The latest instant a Date holds. */
const MAX_DATE_MS = 8.64e15;

/** Each duration's ceiling, in seconds, and whether a timer waits on it. */
const CEILINGS: ReadonlyArray<[name: string, maxSeconds: number, timer: boolean]> = [
  ['ACCESS_TOKEN_TTL', DAY, false],
  ['REFRESH_TOKEN_TTL', 400 * DAY, false],
  ['REFRESH_REUSE_GRACE_SECONDS', 3600, false],
  ['MFA_CHALLENGE_TTL', 3600, false],
  ['AUDIT_RETENTION', 36500 * DAY, false],
  ['EMAIL_VERIFICATION_TTL', 30 * DAY, false],
  ['PASSWORD_RESET_TTL', DAY, false],
  ['EMAIL_OTP_TTL', 3600, false],
  ['EMAIL_OTP_COOLDOWN', Math.floor(MAX_TIMER_MS / 1000), true],
  ['LOCKOUT_DURATION', Math.floor(MAX_TIMER_MS / 1000), true],
  ['LOCKOUT_HARD_DURATION', Math.floor(MAX_TIMER_MS / 1000), true],
  ['RATE_LIMIT_IP_WINDOW', Math.floor(MAX_TIMER_MS / 1000), true],
  ['OUTBOX_MAX_AGE', 30 * DAY, false],
  ['OUTBOX_MAX_BACKOFF', DAY, true],
  ['REQUEST_TIMEOUT', 600, true],
  ['WEBHOOK_TIMEOUT', 300, true],
  ['WEBHOOK_MAX_AGE', 90 * DAY, false],
  ['WEBHOOK_MAX_BACKOFF', DAY, true],
  ['WEBHOOK_SECRET_GRACE', 30 * DAY, false],
  ['JWT_KEY_ACTIVATION_DELAY', 7 * DAY, false],
  ['JWT_KEY_ROTATION_INTERVAL', 400 * DAY, false],
  ['OIDC_ACCESS_TOKEN_TTL', DAY, false],
  ['OIDC_ID_TOKEN_TTL', DAY, false],
  ['OIDC_REFRESH_TOKEN_TTL', 400 * DAY, false],
];

test('every duration takes its ceiling and refuses one second more, naming the setting', () => {
  for (const [name, max] of CEILINGS) {
    assert.doesNotThrow(() => loadConfig({ [name]: String(max) }), name);
    for (const over of [String(max + 1), '200000000d', '9'.repeat(400)]) {
      assert.throws(() => loadConfig({ [name]: over }), (e: unknown) => e instanceof ConfigError && e.message.startsWith(`${name} must be at most`), `${name}=${over}`);
    }
  }
});

test('the ceilings keep timers below 2^31-1 ms and lifetimes within the Date range', () => {
  for (const [name, max, timer] of CEILINGS) {
    if (timer) assert.ok(max * 1000 <= MAX_TIMER_MS, name);
    assert.ok(Date.now() + max * 1000 < MAX_DATE_MS && Date.now() - max * 1000 > -MAX_DATE_MS, name);
  }
  // The values the proofs used: WEBHOOK_TIMEOUT=25d (Node's timer fired after 1 ms), lifetimes of 200000000 days.
  assert.throws(() => loadConfig({ WEBHOOK_TIMEOUT: '25d' }), /WEBHOOK_TIMEOUT must be at most 5m \(300 seconds\), got "25d"/);
  assert.throws(() => loadConfig({ WEBHOOK_TIMEOUT: '24d' }), /WEBHOOK_TIMEOUT must be at most/);
  for (const name of ['ACCESS_TOKEN_TTL', 'REFRESH_TOKEN_TTL', 'MFA_CHALLENGE_TTL']) assert.throws(() => loadConfig({ [name]: '200000000d' }), ConfigError, name);
  // The defaults are well inside.
  const c = loadConfig({});
  assert.equal(c.webhooks.timeoutMs, 10_000);
  assert.equal(c.refreshTokenTtlSeconds, 60 * DAY);
});

test('TRUST_PROXY: an IPv4-mapped network is an IPv4 one (at least /104 = /8), IPv6 at least /32 outside the private ranges', () => {
  const refused = [
    // ::ffff:0:0/96 is proxy-addr's 0.0.0.0/0 for IPv4 clients: every client's own X-Forwarded-For trusted.
    '::ffff:0:0/96', '::ffff:0.0.0.0/96', '::ffff:0:0/103', '::ffff:0:0/80', '::ffff:10.0.0.0/100',
    // A continent's or a provider's clients, not proxies.
    '::/8', '::/16', '::/31', '2a00::/8', '2001::/16', '2001:db8::/31',
    // Private ranges follow the IPv4 rule (/8); their names trust them whole.
    'fc00::/7', 'fe80::/7',
  ];
  for (const bad of refused) {
    assert.throws(() => loadConfig({ TRUST_PROXY: bad }), (e: unknown) => e instanceof ConfigError && e.message.startsWith(`TRUST_PROXY "${bad}" trusts too large a network`), bad);
  }
  const accepted = ['::ffff:10.0.0.0/104', '::ffff:192.168.1.0/120', '::ffff:10.1.2.3', '2001:db8::/32', '2001:db8:1::/48', 'fd00::/8', 'fd12:3456::/32', 'fe80::/10', '::1', '::1/128'];
  for (const good of accepted) assert.deepEqual(loadConfig({ TRUST_PROXY: good }).trustProxy, [good], good);
});
