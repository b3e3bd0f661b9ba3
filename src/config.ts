import { trustProxy } from './config-trust-proxy.ts';
import { connectionUrl, origin, publicUrlSetting } from './config-urls.ts';
import { webauthnConfig, type WebauthnConfig } from './config-webauthn.ts';

/**
 * The one typed, validated, frozen configuration object. Every default lives here and nothing
 * else in `src/` reads `process.env` (only `server.ts` passes it in).
 */

/** Second-factor methods an operator can allow. Backup codes come with any of them. */
export type MfaMethod = 'totp' | 'email';

/** Validated settings of one Twofold process. */
export interface Config {
  /** `development` (generated keys, development mailbox) or `production` (keys required). */
  readonly env: 'development' | 'production' | 'test';
  readonly port: number;
  readonly host: string;
  /** Issuer of tokens and base of e-mailed links: PUBLIC_URL, an origin as written (no path, query or trailing slash). */
  readonly publicUrl: string;
  readonly publicOrigin: string;
  readonly secureCookies: boolean;
  readonly dataDir: string;
  readonly databaseUrl: string | undefined;
  readonly databasePoolSize: number;
  readonly redisUrl: string | undefined;
  /** Namespace of every Redis key (`<prefix>:rl:…`): deployments sharing one Redis database keep apart. */
  readonly redisKeyPrefix: string;
  readonly smtpUrl: string | undefined;
  readonly mailFrom: string;
  readonly productName: string;
  /** PEM key imported as the first signing key when the database holds none; unset: one is generated. */
  readonly jwtPrivateKeyFile: string | undefined;
  /** How long a rotated-in key is served as `next` before it signs (verifiers caching the JWKS see it first). */
  readonly jwtKeyActivationDelaySeconds: number;
  /** Scheduled rotation: a new key when the newest is this old; undefined: only by hand. */
  readonly jwtKeyRotationIntervalSeconds: number | undefined;
  readonly jwtAudience: string;
  /** Raw `TOTP_ENCRYPTION_KEY` value (`kid:base64key,...`); undefined means generate in development. */
  readonly totpEncryptionKey: string | undefined;
  /** Raw `TOKEN_HASH_KEY` (base64, 32 bytes): HMAC key for stored code/token digests; generated in development. */
  readonly tokenHashKey: string | undefined;
  readonly totpIssuer: string;
  readonly accessTokenTtlSeconds: number;
  readonly refreshTokenTtlSeconds: number;
  readonly refreshReuseGraceSeconds: number;
  /** Live sessions one user may hold (MAX_SESSIONS_PER_USER): a login beyond it ends the oldest (services/sessions-limit.ts). */
  readonly maxSessionsPerUser: number;
  readonly mfaChallengeTtlSeconds: number;
  readonly mfaChallengeMaxAttempts: number;
  readonly trustedOrigins: readonly string[];
  readonly introspectionSecret: string | undefined;
  /** Bearer secret (≥ 32 characters) of programs calling /api/v1/admin/*; unset: only admin people (role admin + aal2). */
  readonly adminApiKey: string | undefined;
  /** Audit entries older than this are deleted by the retention job (AUDIT_RETENTION, default 400 days). */
  readonly auditRetentionSeconds: number;
  readonly requireEmailVerification: boolean;
  readonly mfaPolicy: 'optional' | 'required';
  readonly mfaMethods: readonly MfaMethod[];
  readonly passwordMinLength: number;
  readonly passwordHash: { readonly memoryKib: number; readonly iterations: number; readonly parallelism: number };
  readonly emailVerificationTtlSeconds: number;
  readonly passwordResetTtlSeconds: number;
  readonly emailOtpTtlSeconds: number;
  readonly emailOtpMaxAttempts: number;
  readonly emailOtpCooldownSeconds: number;
  readonly emailOtpMaxPerHour: number;
  readonly rateLimit: {
    readonly disabled: boolean;
    /** Consecutive failed logins (password or code) per account before it is locked. */
    readonly accountMaxFailures: number;
    readonly accountLockSeconds: number;
    /** Consecutive failures (no success in between) after which the account stays locked much longer (NIST: at most 100). */
    readonly accountMaxConsecutiveFailures: number;
    readonly accountHardLockSeconds: number;
    /** Failed attempts per IP address within the window. */
    readonly ipMaxFailures: number;
    readonly ipWindowSeconds: number;
    /** Requests per IP per minute on endpoints that send mail or create accounts. */
    readonly ipMaxRequestsPerMinute: number;
    /** Mails (verification, reset) requested per address per hour. */
    readonly emailMaxPerHour: number;
  };
  readonly outbox: { readonly pollIntervalMs: number; readonly maxAgeSeconds: number; readonly maxBackoffSeconds: number };
  readonly logLevel: string;
  readonly bodyLimitBytes: number;
  /**
   * Fastify `trustProxy`: `false` (use the socket address), a hop count, or the addresses/CIDRs of the
   * proxies in front. Never `true` (that would trust every X-Forwarded-For entry, so a client could pick its address).
   */
  readonly trustProxy: false | number | readonly string[];
  /** Other origins that are this same service on a loopback host (localhost ↔ 127.0.0.1 ↔ [::1]), accepted like `publicOrigin`. */
  readonly loopbackAliases: readonly string[];
  /** Serve the development mailbox at /dev/mailbox: only without SMTP, and only on a plainly local instance or with DEV_MAILBOX=true. */
  readonly devMailbox: boolean;
  /** Bearer token `/metrics` requires; unset: open. */
  readonly metricsToken: string | undefined;
  /** Serve `/metrics` on this separate port (same HOST) instead of the main one; unset: on the main port. */
  readonly metricsPort: number | undefined;
  /** Longest time a client may take to send a whole request (headers and body); slower ones get 408. */
  readonly requestTimeoutSeconds: number;
  /** Worker processes (Node's cluster module) sharing the port; 1 = this process serves alone. */
  readonly webConcurrency: number;
  /** Signed webhooks to other services (see src/events/). */
  readonly webhooks: {
    /** One delivery attempt's limit (connect, send, answer), in milliseconds. */
    readonly timeoutMs: number;
    /** After this long without a 2xx an event is given up for that endpoint. */
    readonly maxAgeSeconds: number;
    /** Longest wait between two attempts. */
    readonly maxBackoffSeconds: number;
    /** How long a rotated-out secret still signs beside the new one. */
    readonly secretGraceSeconds: number;
    /** Allow private, loopback and link-local targets (off: refused at registration and delivery). */
    readonly allowPrivate: boolean;
  };
  /** RabbitMQ publication of the events and the introspection queue; url unset: off. */
  readonly eventsAmqp: { readonly url: string | undefined; readonly exchange: string; readonly introspectQueue: string; readonly replyQueues: readonly string[] };
  /** OpenID provider settings: clients file, token lifetimes, how often ended sessions are swept. */
  readonly oidc: {
    readonly clientsFile: string | undefined;
    readonly accessTokenTtlSeconds: number;
    readonly idTokenTtlSeconds: number;
    readonly refreshTokenTtlSeconds: number;
    readonly sweepIntervalMs: number;
  };
  /** Passkeys' relying party (PUBLIC_URL, WEBAUTHN_RP_ID); see config-webauthn.ts. */
  readonly webauthn: WebauthnConfig;
}

/** Thrown for a bad setting; the message names the variable. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Readonly<Record<string, string | undefined>>;

function str(env: Env, name: string, fallback: string): string {
  const v = env[name];
  return v === undefined || v === '' ? fallback : v;
}

function opt(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === '' ? undefined : v;
}

function int(env: Env, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be a whole number, got "${raw}"`);
  const n = Number(raw.trim());
  if (n < min || n > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
const MINUTE = 60;
const HOUR = 3600;
const DAY = 86400;

/**
 * Durations accept plain seconds or a number with s/m/h/d (`3600`, `60m`, `60d`). Every one has a
 * ceiling: beyond 2^31-1 ms Node's timers fire at once (WEBHOOK_TIMEOUT=25d timed out every delivery
 * after 1 ms), and a lifetime past the Date range made every login fail.
 */
function duration(env: Env, name: string, fallbackSeconds: number, minSeconds: number, maxSeconds: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallbackSeconds;
  const m = /^(\d+)\s*([smhd]?)$/.exec(raw.trim());
  if (!m) throw new ConfigError(`${name} must be seconds or a number with s, m, h or d, got "${raw}"`);
  const n = Number(m[1]) * (UNIT_SECONDS[m[2] || 's'] ?? 1);
  if (n < minSeconds) throw new ConfigError(`${name} must be at least ${minSeconds} seconds`);
  if (n > maxSeconds) throw new ConfigError(`${name} must be at most ${readable(maxSeconds)}, got "${raw.trim()}"`);
  return n;
}

/** 86400 → "1d (86400 seconds)", 2147483 → "2147483 seconds (about 24 days)". */
function readable(seconds: number): string {
  for (const [unit, size] of [['d', DAY], ['h', HOUR], ['m', MINUTE]] as const) {
    if (seconds % size === 0) return `${seconds / size}${unit} (${seconds} seconds)`;
  }
  return seconds >= DAY ? `${seconds} seconds (about ${Math.floor(seconds / DAY)} days)` : `${seconds} seconds`;
}

/**
 * The longest lock or counter window: the limiters' memory store expires keys with setTimeout, which
 * fires at once beyond 2^31-1 ms (a 30-day lock would last 1 ms). Checked here, with the other
 * settings, rather than when the limiter is built after the database was opened and migrated.
 */
const MAX_LIMIT_SECONDS = Math.floor(0x7fffffff / 1000);

/** pino's levels: anything else made the logger throw a stack trace at start. */
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function logLevel(env: Env, fallback: string): string {
  const v = str(env, 'LOG_LEVEL', fallback).trim().toLowerCase();
  if (!LOG_LEVELS.includes(v)) throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${env.LOG_LEVEL}"`);
  return v;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(`${name} must be true or false, got "${raw}"`);
}

/** The argon2id settings the server accepts (also what `twofold hash-calibrate` may suggest). */
export const PASSWORD_HASH_BOUNDS = Object.freeze({ memoryKib: { min: 1024, max: 4 * 1024 * 1024 }, parallelism: { min: 1, max: 16 } });

/** Reads and validates the environment once; throws ConfigError naming the bad variable. */
export function loadConfig(env: Env): Config {
  // Case-insensitive: `NODE_ENV=Production` must not silently start a development instance with generated keys.
  const nodeEnv = str(env, 'NODE_ENV', 'development').trim().toLowerCase() || 'development';
  // Anything else is refused: `prod` or `staging` ran as a development instance (generated keys per
  // container, no mail sent, the checks of production skipped) without a word.
  if (!['development', 'production', 'test'].includes(nodeEnv)) throw new ConfigError(`NODE_ENV must be development, production or test, got "${nodeEnv}"`);
  const mode: Config['env'] = nodeEnv === 'production' ? 'production' : nodeEnv === 'test' ? 'test' : 'development';
  const port = int(env, 'PORT', 8000, 0, 65535);
  // Trimmed: a value from an env file with a stray space was neither loopback (so the development
  // mailbox rules took it for a network address) nor a name the listener could resolve.
  const host = str(env, 'HOST', '127.0.0.1').trim() || '127.0.0.1';
  if (/\s/.test(host)) throw new ConfigError(`HOST must be one host name or address, got "${host}"`);
  // localhost (not 127.0.0.1) by default: it is what people type, and the passkey RP ID must be a name.
  const defaultHost = host === '0.0.0.0' || host === '::' || isLoopbackHost(host) ? 'localhost' : host;
  const { publicUrl, publicOrigin } = publicUrlSetting(str(env, 'PUBLIC_URL', `http://${defaultHost}:${port}`));

  const trustedOrigins = str(env, 'TRUSTED_ORIGINS', '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => origin(s, 'TRUSTED_ORIGINS'));

  const mfaPolicy = str(env, 'MFA_POLICY', 'optional');
  if (mfaPolicy !== 'optional' && mfaPolicy !== 'required') {
    throw new ConfigError(`MFA_POLICY must be "optional" or "required", got "${mfaPolicy}"`);
  }
  const mfaMethods = str(env, 'MFA_METHODS', 'totp,email')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  for (const m of mfaMethods) {
    if (m !== 'totp' && m !== 'email') throw new ConfigError(`MFA_METHODS may list only totp and email, got "${m}"`);
  }
  if (mfaMethods.length === 0) throw new ConfigError('MFA_METHODS must list at least one of totp, email');

  const smtpUrl = connectionUrl(env, 'SMTP_URL');
  const totpEncryptionKey = opt(env, 'TOTP_ENCRYPTION_KEY');
  const jwtPrivateKeyFile = opt(env, 'JWT_PRIVATE_KEY_FILE');
  if (mode === 'production') {
    // In production nothing secret may be invented on the spot: a lost generated key would void every
    // TOTP enrolment, and a per-instance key would break a cluster. (The JWT signing keys live in the
    // database, sealed under TOTP_ENCRYPTION_KEY, so every instance shares them: a generated one is fine.)
    if (!totpEncryptionKey) throw new ConfigError('TOTP_ENCRYPTION_KEY is required when NODE_ENV=production');
    if (!opt(env, 'TOKEN_HASH_KEY')) throw new ConfigError('TOKEN_HASH_KEY is required when NODE_ENV=production');
    if (!smtpUrl) throw new ConfigError('SMTP_URL is required when NODE_ENV=production (the development mailbox is never served in production)');
  }
  const introspectionSecret = bearerSecret(env, 'INTROSPECTION_SECRET', 16);
  // A short key is guessable; refusing it at start beats an admin API anyone can brute-force.
  const adminApiKey = bearerSecret(env, 'ADMIN_API_KEY', 32);

  // Issue 7's rule: a loopback PUBLIC_URL (or DEV_MAILBOX=true). A start that also listens beyond
  // loopback (HOST=0.0.0.0) says loudly that the mailbox is on the network (mail/dev-mailbox.ts).
  const loopback = isLoopbackHost(new URL(publicOrigin).hostname);
  const devMailboxSetting = opt(env, 'DEV_MAILBOX') === undefined ? undefined : bool(env, 'DEV_MAILBOX', false);
  if (devMailboxSetting && mode === 'production') throw new ConfigError('DEV_MAILBOX=true is not allowed when NODE_ENV=production');
  if (devMailboxSetting && smtpUrl) throw new ConfigError('DEV_MAILBOX=true needs SMTP_URL unset (the mailbox shows mail that is not sent)');
  // The mailbox shows every reset link and code: serve it only where that is plainly harmless.
  const devMailbox = !smtpUrl && mode !== 'production' && (devMailboxSetting ?? loopback);
  const metricsToken = bearerSecret(env, 'METRICS_TOKEN', 16);
  const metricsPortRaw = opt(env, 'METRICS_PORT');
  const metricsPort = metricsPortRaw === undefined ? undefined : int(env, 'METRICS_PORT', 0, 1, 65535);
  if (metricsPort !== undefined && metricsPort === port) throw new ConfigError('METRICS_PORT must differ from PORT');

  const passwordMinLength = int(env, 'PASSWORD_MIN_LENGTH', 8, 8, 256);

  // Its ceiling (7 days) is checked on the next line, in words of its own.
  const jwtKeyActivationDelaySeconds = duration(env, 'JWT_KEY_ACTIVATION_DELAY', 600, 0, Infinity);
  if (jwtKeyActivationDelaySeconds > 7 * 86400) throw new ConfigError('JWT_KEY_ACTIVATION_DELAY must be at most 7 days');
  const jwtKeyRotationIntervalSeconds = opt(env, 'JWT_KEY_ROTATION_INTERVAL') === undefined ? undefined : duration(env, 'JWT_KEY_ROTATION_INTERVAL', 0, HOUR, 400 * DAY);
  if (jwtKeyRotationIntervalSeconds !== undefined && jwtKeyRotationIntervalSeconds <= jwtKeyActivationDelaySeconds) {
    throw new ConfigError('JWT_KEY_ROTATION_INTERVAL must be longer than JWT_KEY_ACTIVATION_DELAY (a key must become current before the next one is made)');
  }

  const config: Config = {
    env: mode,
    port,
    host,
    publicUrl,
    publicOrigin,
    secureCookies: publicOrigin.startsWith('https:'),
    dataDir: str(env, 'DATA_DIR', './data'),
    databaseUrl: connectionUrl(env, 'DATABASE_URL'),
    databasePoolSize: int(env, 'DATABASE_POOL_SIZE', 10, 1, 1000),
    redisUrl: connectionUrl(env, 'REDIS_URL'),
    redisKeyPrefix: redisKeyPrefix(env),
    smtpUrl,
    mailFrom: str(env, 'MAIL_FROM', `Twofold <no-reply@${new URL(publicOrigin).hostname}>`),
    productName: str(env, 'PRODUCT_NAME', 'Twofold'),
    jwtPrivateKeyFile,
    jwtKeyActivationDelaySeconds,
    jwtKeyRotationIntervalSeconds,
    jwtAudience: str(env, 'JWT_AUDIENCE', 'twofold'),
    totpEncryptionKey,
    tokenHashKey: opt(env, 'TOKEN_HASH_KEY'),
    totpIssuer: str(env, 'TOTP_ISSUER', 'Twofold'),
    accessTokenTtlSeconds: duration(env, 'ACCESS_TOKEN_TTL', 3600, 60, DAY),
    refreshTokenTtlSeconds: duration(env, 'REFRESH_TOKEN_TTL', 60 * DAY, 300, 400 * DAY),
    refreshReuseGraceSeconds: duration(env, 'REFRESH_REUSE_GRACE_SECONDS', 10, 0, HOUR),
    // At most 1,000: every login's trim walks the account's live sessions up to the cap while it holds
    // the user row (0.5 ms at 100, 8 ms at 10,000 in the review of the cap).
    maxSessionsPerUser: int(env, 'MAX_SESSIONS_PER_USER', 100, 1, 1000),
    mfaChallengeTtlSeconds: duration(env, 'MFA_CHALLENGE_TTL', 300, 30, HOUR),
    mfaChallengeMaxAttempts: int(env, 'MFA_CHALLENGE_MAX_ATTEMPTS', 5, 1, 100),
    trustedOrigins,
    introspectionSecret,
    adminApiKey,
    auditRetentionSeconds: duration(env, 'AUDIT_RETENTION', 400 * DAY, DAY, 36500 * DAY),
    requireEmailVerification: bool(env, 'REQUIRE_EMAIL_VERIFICATION', false),
    mfaPolicy,
    mfaMethods: mfaMethods as MfaMethod[],
    passwordMinLength,
    passwordHash: {
      memoryKib: int(env, 'PASSWORD_HASH_MEMORY_KIB', 19456, PASSWORD_HASH_BOUNDS.memoryKib.min, PASSWORD_HASH_BOUNDS.memoryKib.max),
      iterations: int(env, 'PASSWORD_HASH_ITERATIONS', 2, 1, 100),
      parallelism: int(env, 'PASSWORD_HASH_PARALLELISM', 1, PASSWORD_HASH_BOUNDS.parallelism.min, PASSWORD_HASH_BOUNDS.parallelism.max),
    },
    emailVerificationTtlSeconds: duration(env, 'EMAIL_VERIFICATION_TTL', DAY, 60, 30 * DAY),
    passwordResetTtlSeconds: duration(env, 'PASSWORD_RESET_TTL', 1800, 60, DAY),
    emailOtpTtlSeconds: duration(env, 'EMAIL_OTP_TTL', 600, 60, HOUR),
    emailOtpMaxAttempts: int(env, 'EMAIL_OTP_MAX_ATTEMPTS', 5, 1, 100),
    emailOtpCooldownSeconds: duration(env, 'EMAIL_OTP_COOLDOWN', 60, 0, MAX_LIMIT_SECONDS),
    emailOtpMaxPerHour: int(env, 'EMAIL_OTP_MAX_PER_HOUR', 5, 1, 1000),
    rateLimit: {
      disabled: bool(env, 'RATE_LIMIT_DISABLED', false),
      accountMaxFailures: int(env, 'LOCKOUT_MAX_FAILURES', 10, 1, 100),
      accountLockSeconds: duration(env, 'LOCKOUT_DURATION', 900, 1, MAX_LIMIT_SECONDS),
      accountMaxConsecutiveFailures: int(env, 'LOCKOUT_MAX_CONSECUTIVE_FAILURES', 100, 1, 100),
      accountHardLockSeconds: duration(env, 'LOCKOUT_HARD_DURATION', 86400, 1, MAX_LIMIT_SECONDS),
      ipMaxFailures: int(env, 'RATE_LIMIT_IP_MAX_FAILURES', 50, 1),
      ipWindowSeconds: duration(env, 'RATE_LIMIT_IP_WINDOW', 900, 1, MAX_LIMIT_SECONDS),
      ipMaxRequestsPerMinute: int(env, 'RATE_LIMIT_IP_MAX_REQUESTS_PER_MINUTE', 30, 1),
      emailMaxPerHour: int(env, 'RATE_LIMIT_EMAIL_MAX_PER_HOUR', 5, 1),
    },
    outbox: {
      pollIntervalMs: int(env, 'OUTBOX_POLL_INTERVAL_MS', 1000, 10, 60000),
      maxAgeSeconds: duration(env, 'OUTBOX_MAX_AGE', DAY, 60, 30 * DAY),
      maxBackoffSeconds: duration(env, 'OUTBOX_MAX_BACKOFF', 300, 1, DAY),
    },
    logLevel: logLevel(env, mode === 'test' ? 'silent' : 'info'),
    bodyLimitBytes: 64 * 1024,
    requestTimeoutSeconds: duration(env, 'REQUEST_TIMEOUT', 30, 1, 10 * MINUTE),
    trustProxy: trustProxy(env),
    loopbackAliases: loopback ? loopbackAliasesOf(publicOrigin) : [],
    devMailbox,
    metricsToken,
    metricsPort,
    webConcurrency: int(env, 'WEB_CONCURRENCY', 1, 1, 64),
    webhooks: {
      timeoutMs: duration(env, 'WEBHOOK_TIMEOUT', 10, 1, 5 * MINUTE) * 1000,
      maxAgeSeconds: duration(env, 'WEBHOOK_MAX_AGE', 3 * DAY, 60, 90 * DAY),
      maxBackoffSeconds: duration(env, 'WEBHOOK_MAX_BACKOFF', HOUR, 1, DAY),
      secretGraceSeconds: duration(env, 'WEBHOOK_SECRET_GRACE', DAY, 0, 30 * DAY),
      allowPrivate: bool(env, 'WEBHOOK_ALLOW_PRIVATE', false),
    },
    eventsAmqp: {
      url: connectionUrl(env, 'EVENTS_AMQP_URL'),
      exchange: amqpName(env, 'EVENTS_AMQP_EXCHANGE', 'twofold.events'),
      introspectQueue: amqpName(env, 'EVENTS_AMQP_INTROSPECT_QUEUE', 'twofold.introspect'),
      replyQueues: amqpReplyQueues(env),
    },
    oidc: {
      clientsFile: opt(env, 'OIDC_CLIENTS_FILE'),
      accessTokenTtlSeconds: duration(env, 'OIDC_ACCESS_TOKEN_TTL', 600, 60, DAY),
      idTokenTtlSeconds: duration(env, 'OIDC_ID_TOKEN_TTL', HOUR, 60, DAY),
      refreshTokenTtlSeconds: duration(env, 'OIDC_REFRESH_TOKEN_TTL', 30 * DAY, 300, 400 * DAY),
      sweepIntervalMs: int(env, 'OIDC_LOGOUT_SWEEP_INTERVAL_MS', 2000, 100, 600000),
    },
    webauthn: webauthnConfig(publicOrigin, opt(env, 'WEBAUTHN_RP_ID'), str(env, 'PRODUCT_NAME', 'Twofold')),
  };
  if (config.webConcurrency > 1) {
    // PGlite is one process's embedded database; several processes need a PostgreSQL server.
    if (!config.databaseUrl) throw new ConfigError('WEB_CONCURRENCY > 1 needs DATABASE_URL (PGlite serves one process only)');
    // In-process limiters would each allow the full count: N processes, N times the guesses.
    if (!config.redisUrl && !config.rateLimit.disabled) throw new ConfigError('WEB_CONCURRENCY > 1 needs REDIS_URL, so that every process shares the brute-force limits');
  }
  return deepFreeze(config);
}

/** REDIS_KEY_PREFIX: 1-64 of letters, digits, `-`, `_`, `.`; no `:` (it separates the key's parts) and no glob characters. */
function redisKeyPrefix(env: Env): string {
  const v = str(env, 'REDIS_KEY_PREFIX', 'twofold');
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(v)) throw new ConfigError(`REDIS_KEY_PREFIX must be 1-64 of A-Za-z0-9_.- , got "${v}"`);
  return v;
}

/** An exchange or queue name: 1-255 of letters, digits, `-`, `_`, `.`, `:` (AMQP 0-9-1 short string). */
function amqpName(env: Env, name: string, fallback: string): string {
  const v = str(env, name, fallback);
  if (!/^[A-Za-z0-9_.:-]{1,255}$/.test(v) || v.startsWith('amq.')) throw new ConfigError(`${name} must be 1-255 of A-Za-z0-9_.:- and not start with "amq.", got "${v}"`);
  return v;
}

/**
 * EVENTS_AMQP_REPLY_QUEUES: the prefixes of the queues introspection replies may be sent to. By
 * default RabbitMQ's direct reply-to and server-named queues (a caller's own exclusive queue), so a
 * request cannot make the service write into another application's queue.
 */
function amqpReplyQueues(env: Env): string[] {
  const v = str(env, 'EVENTS_AMQP_REPLY_QUEUES', 'amq.rabbitmq.reply-to,amq.gen-');
  const prefixes = v.split(',').map((p) => p.trim()).filter(Boolean);
  if (prefixes.length === 0 || prefixes.some((p) => !/^[A-Za-z0-9_.:-]{1,255}$/.test(p))) {
    throw new ConfigError(`EVENTS_AMQP_REPLY_QUEUES must be a comma-separated list of queue-name prefixes (A-Za-z0-9_.:-), got "${v}"`);
  }
  return prefixes;
}

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];

/** True for localhost, 127.0.0.0/8 and ::1. */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || /^127\.\d+\.\d+\.\d+$/.test(h) || h === '::1' || h === '[::1]';
}

/** The same origin under the other loopback names (http://localhost:8000 → http://127.0.0.1:8000, http://[::1]:8000). */
function loopbackAliasesOf(publicOrigin: string): string[] {
  const u = new URL(publicOrigin);
  return LOOPBACK_NAMES.filter((n) => n !== u.hostname).map((n) => `${u.protocol}//${n}${u.port ? `:${u.port}` : ''}`);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/**
 * A secret that callers present as `Authorization: Bearer <secret>`: at least `min` characters, and
 * only visible ASCII. A space, tab or other character cannot travel in that header as one token (a
 * secret with a space was accepted at start and then matched no request).
 */
function bearerSecret(env: Env, name: string, min: number): string | undefined {
  const value = opt(env, name);
  if (value === undefined) return undefined;
  if (value.length < min) throw new ConfigError(`${name} must be at least ${min} characters`);
  if (!/^[\x21-\x7e]+$/.test(value)) throw new ConfigError(`${name} may hold only visible ASCII characters (no spaces): it is sent as a bearer token`);
  return value;
}
