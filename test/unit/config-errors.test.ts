import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { AppError, ERROR_CODES } from '../../src/errors.ts';

test('defaults: port 8000 on 127.0.0.1 (public URL http://localhost:8000), PGlite in ./data, contract lifetimes', () => {
  const c = loadConfig({});
  assert.equal(c.port, 8000);
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.publicUrl, 'http://localhost:8000');
  assert.deepEqual(c.loopbackAliases, ['http://127.0.0.1:8000', 'http://[::1]:8000']);
  assert.equal(c.devMailbox, true);
  assert.equal(c.trustProxy, false);
  assert.equal(c.dataDir, './data');
  assert.equal(c.databaseUrl, undefined);
  assert.equal(c.accessTokenTtlSeconds, 3600);
  assert.equal(c.refreshTokenTtlSeconds, 60 * 86400);
  assert.equal(c.refreshReuseGraceSeconds, 10);
  assert.equal(c.mfaChallengeTtlSeconds, 300);
  assert.equal(c.totpIssuer, 'Twofold');
  assert.equal(c.requireEmailVerification, false);
  assert.equal(c.mfaPolicy, 'optional');
  assert.deepEqual(c.passwordHash, { memoryKib: 19456, iterations: 2, parallelism: 1 });
  assert.equal(c.rateLimit.disabled, false);
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.rateLimit));
});

test('TRUSTED_ORIGINS takes origins with or without a trailing slash; HOST is trimmed; a refused origin never shows its password', () => {
  assert.deepEqual(loadConfig({ TRUSTED_ORIGINS: 'https://app.example.com/, http://localhost:3000' }).trustedOrigins, ['https://app.example.com', 'http://localhost:3000']);
  assert.throws(() => loadConfig({ TRUSTED_ORIGINS: 'https://u:secret@other.example.com/x' }), (e: unknown) => e instanceof ConfigError && !e.message.includes('secret'));
  const c = loadConfig({ HOST: ' 127.0.0.1 ' });
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.publicUrl, 'http://localhost:8000', 'the padded loopback address is loopback');
  assert.equal(loadConfig({ HOST: '  ' }).host, '127.0.0.1');
});

test('durations accept units; PUBLIC_URL https makes cookies Secure', () => {
  const c = loadConfig({ ACCESS_TOKEN_TTL: '15m', REFRESH_TOKEN_TTL: '30d', PUBLIC_URL: 'https://auth.example.com/' });
  assert.equal(c.accessTokenTtlSeconds, 900);
  assert.equal(c.refreshTokenTtlSeconds, 30 * 86400);
  assert.equal(c.publicUrl, 'https://auth.example.com');
  assert.ok(c.secureCookies);
  assert.equal(c.requestTimeoutSeconds, 30, 'a request has 30 s to arrive by default');
  assert.equal(loadConfig({ REQUEST_TIMEOUT: '2m' }).requestTimeoutSeconds, 120);
});

test('a bad setting stops start-up with a message naming it', () => {
  for (const [env, name] of [
    [{ PORT: 'eighty' }, 'PORT'],
    [{ ACCESS_TOKEN_TTL: '1 hour' }, 'ACCESS_TOKEN_TTL'],
    [{ REQUEST_TIMEOUT: '0' }, 'REQUEST_TIMEOUT'],
    [{ MFA_POLICY: 'sometimes' }, 'MFA_POLICY'],
    [{ MFA_METHODS: 'sms' }, 'MFA_METHODS'],
    [{ PUBLIC_URL: 'ftp://x' }, 'PUBLIC_URL'],
    [{ TRUSTED_ORIGINS: 'not a url' }, 'TRUSTED_ORIGINS'],
    // An origin is scheme, host and port: a path was dropped without a word, trusting the whole host.
    [{ TRUSTED_ORIGINS: 'https://app.example.com/admin' }, 'TRUSTED_ORIGINS'],
    [{ TRUSTED_ORIGINS: 'https://app.example.com?x=1' }, 'TRUSTED_ORIGINS'],
    [{ TRUSTED_ORIGINS: 'https://app.example.com, https://u:secret@other.example.com' }, 'TRUSTED_ORIGINS'],
    [{ HOST: 'auth.lan 0.0.0.0' }, 'HOST'],
    [{ REQUIRE_EMAIL_VERIFICATION: 'maybe' }, 'REQUIRE_EMAIL_VERIFICATION'],
    [{ PASSWORD_MIN_LENGTH: '4' }, 'PASSWORD_MIN_LENGTH'],
    [{ INTROSPECTION_SECRET: 'short' }, 'INTROSPECTION_SECRET'],
    // Sent as `Authorization: Bearer <secret>`: a space would split it, and no request could match.
    [{ INTROSPECTION_SECRET: 'a passphrase with spaces' }, 'INTROSPECTION_SECRET'],
    [{ ADMIN_API_KEY: 'an admin key of well over thirty-two characters' }, 'ADMIN_API_KEY'],
    [{ METRICS_TOKEN: 'metrics\ttoken-0123456789' }, 'METRICS_TOKEN'],
  ] as const) {
    assert.throws(() => loadConfig(env), (e: unknown) => e instanceof ConfigError && e.message.includes(name), name);
  }
});

test('key rotation settings: durations, a minimum interval, and an interval longer than the activation delay', () => {
  assert.equal(loadConfig({}).jwtKeyActivationDelaySeconds, 600);
  assert.equal(loadConfig({}).jwtKeyRotationIntervalSeconds, undefined);
  assert.equal(loadConfig({ JWT_KEY_ACTIVATION_DELAY: '0' }).jwtKeyActivationDelaySeconds, 0);
  assert.equal(loadConfig({ JWT_KEY_ROTATION_INTERVAL: '30d' }).jwtKeyRotationIntervalSeconds, 30 * 86400);
  assert.throws(() => loadConfig({ JWT_KEY_ACTIVATION_DELAY: 'soon' }), (e) => e instanceof ConfigError && /JWT_KEY_ACTIVATION_DELAY/.test(e.message));
  assert.throws(() => loadConfig({ JWT_KEY_ACTIVATION_DELAY: '8d' }), /JWT_KEY_ACTIVATION_DELAY must be at most 7 days/);
  assert.throws(() => loadConfig({ JWT_KEY_ROTATION_INTERVAL: '10m' }), /JWT_KEY_ROTATION_INTERVAL must be at least 3600/);
  assert.throws(() => loadConfig({ JWT_KEY_ROTATION_INTERVAL: '2h', JWT_KEY_ACTIVATION_DELAY: '3h' }), /longer than JWT_KEY_ACTIVATION_DELAY/);
});

test('production refuses to invent secrets or to run without SMTP', () => {
  assert.throws(() => loadConfig({ NODE_ENV: 'production' }), /TOTP_ENCRYPTION_KEY/);
  // JWT_PRIVATE_KEY_FILE is optional: the signing keys live in the database, sealed under TOTP_ENCRYPTION_KEY.
  assert.throws(() => loadConfig({ NODE_ENV: 'production', TOTP_ENCRYPTION_KEY: 'x' }), /TOKEN_HASH_KEY/);
  assert.throws(() => loadConfig({ NODE_ENV: 'production', TOTP_ENCRYPTION_KEY: 'x', JWT_PRIVATE_KEY_FILE: '/k.pem' }), /TOKEN_HASH_KEY/);
  assert.throws(() => loadConfig({ NODE_ENV: 'production', TOTP_ENCRYPTION_KEY: 'x', JWT_PRIVATE_KEY_FILE: '/k.pem', TOKEN_HASH_KEY: 'y' }), /SMTP_URL/);
});

test('every error code has a client-error or server-error status and a title', () => {
  for (const [code, { status, title }] of Object.entries(ERROR_CODES)) {
    assert.ok(status >= 400 && status <= 599, code);
    assert.ok(title.length > 0, code);
    assert.equal(new AppError(code as keyof typeof ERROR_CODES).status, status);
  }
  // The statuses the contract fixes.
  const fixed: Record<string, number> = {
    not_found: 404, malformed_request: 400, payload_too_large: 413, validation_failed: 422, username_taken: 409, email_taken: 409,
    user_not_found: 404, invalid_or_expired_token: 400, invalid_credentials: 401, mfa_required: 403, invalid_security_code: 401,
    account_inactive: 403, email_not_verified: 403, invalid_token: 401, refresh_token_reused: 401, method_not_enabled: 400,
    too_many_requests: 429, csrf_rejected: 403, totp_already_enabled: 409, step_up_required: 403, mfa_not_enabled: 409,
  };
  for (const [code, status] of Object.entries(fixed)) assert.equal(ERROR_CODES[code as keyof typeof ERROR_CODES].status, status, code);
  assert.equal(new AppError('email_not_verified', { status: 422 }).status, 422, 'the one code the contract uses with two statuses');
});

test('WEB_CONCURRENCY > 1 needs PostgreSQL and shared limits: PGlite is one process, per-process limiters multiply the guesses', () => {
  assert.equal(loadConfig({}).webConcurrency, 1);
  assert.throws(() => loadConfig({ WEB_CONCURRENCY: '2' }), (e: unknown) => e instanceof ConfigError && /WEB_CONCURRENCY.*DATABASE_URL/.test(e.message));
  assert.throws(() => loadConfig({ WEB_CONCURRENCY: '2', DATABASE_URL: 'postgres://db/x' }), (e: unknown) => e instanceof ConfigError && /WEB_CONCURRENCY.*REDIS_URL/.test(e.message));
  assert.equal(loadConfig({ WEB_CONCURRENCY: '2', DATABASE_URL: 'postgres://db/x', REDIS_URL: 'redis://r:6379' }).webConcurrency, 2);
  assert.throws(() => loadConfig({ WEB_CONCURRENCY: '0' }), /WEB_CONCURRENCY/);
});

test('REDIS_KEY_PREFIX: default twofold; a colon, a glob character, an empty word or over 64 characters are refused', () => {
  assert.equal(loadConfig({}).redisKeyPrefix, 'twofold');
  assert.equal(loadConfig({ REDIS_KEY_PREFIX: 'billing-prod.eu_1' }).redisKeyPrefix, 'billing-prod.eu_1');
  for (const bad of ['a:b', 'tw*', 'a b', 'x'.repeat(65), '[ab]']) {
    assert.throws(() => loadConfig({ REDIS_KEY_PREFIX: bad }), (e: unknown) => e instanceof ConfigError && /REDIS_KEY_PREFIX/.test(e.message), bad);
  }
});

test('LOG_LEVEL: one of pino\'s levels, any case; anything else is a configuration error, not a stack trace from the logger', () => {
  assert.equal(loadConfig({ LOG_LEVEL: 'WARN' }).logLevel, 'warn');
  assert.equal(loadConfig({ NODE_ENV: 'test' }).logLevel, 'silent');
  for (const bad of ['verbose', 'warning', 'info,debug']) {
    assert.throws(() => loadConfig({ LOG_LEVEL: bad }), (e: unknown) => e instanceof ConfigError && /LOG_LEVEL must be one of/.test(e.message), bad);
  }
});

test('lock and window durations over 24 days are refused with the other settings (the memory store\'s timers cannot hold them)', () => {
  for (const name of ['LOCKOUT_DURATION', 'LOCKOUT_HARD_DURATION', 'RATE_LIMIT_IP_WINDOW', 'EMAIL_OTP_COOLDOWN']) {
    assert.throws(() => loadConfig({ [name]: '30d' }), (e: unknown) => e instanceof ConfigError && e.message.startsWith(`${name} must be at most`), name);
    assert.equal(loadConfig({ [name]: '24d' }) !== undefined, true);
  }
});
