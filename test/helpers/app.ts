/**
 * buildTestApp: one app per test on a real PostgreSQL engine (PGlite in memory; also a fresh database
 * on the server when DATABASE_URL is set), with a controllable clock, cheap argon2 parameters, an
 * in-process limiter and a capturing mail transport delivered through the real outbox worker.
 */
import { randomBytes } from 'node:crypto';
import { after, before, describe, type TestContext } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import pino from 'pino';
import { buildApp, type AppOptions } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { PasswordHasher } from '../../src/crypto/password.ts';
import { SecretBox } from '../../src/crypto/secret-box.ts';
import { TokenHasher } from '../../src/crypto/token-hash.ts';
import { totpCodeAt, TOTP_PERIOD_SECONDS } from '../../src/crypto/totp.ts';
import type { Database } from '../../src/db/database.ts';
import type { Deps } from '../../src/deps.ts';
import { OutboxWorker } from '../../src/jobs/outbox-worker.ts';
import type { MailMessage, MailTransport } from '../../src/mail/types.ts';
import { createLimiter } from '../../src/security/create-limiter.ts';
import { openKeyStore } from '../../src/services/signing-keys/open.ts';
import type { Limiter } from '../../src/security/limiter.ts';
import { createTestDatabase, type DatabaseKind, type TestDatabase } from './pg-database.ts';
import { cachedTestKeyPem } from './test-key.ts';

/** A clock tests move by hand. */
export interface TestClock {
  (): Date;
  set(date: Date | string): void;
  advance(seconds: number): void;
}

/** Frozen at `start` until moved. */
export function createTestClock(start: Date | string = '2026-06-01T12:00:10Z'): TestClock {
  let now = new Date(start).getTime();
  const clock = (() => new Date(now)) as TestClock;
  clock.set = (d) => {
    now = new Date(d).getTime();
  };
  clock.advance = (s) => {
    now += s * 1000;
  };
  return clock;
}

/** A MailTransport that keeps what it is given; `failing` makes it throw (an SMTP outage). */
export class CapturingTransport implements MailTransport {
  readonly name = 'capture';
  readonly sent: MailMessage[] = [];
  failing = false;
  async send(message: MailMessage): Promise<void> {
    if (this.failing) throw new Error('SMTP unavailable (test)');
    this.sent.push(message);
  }
  async close(): Promise<void> {}
}

let rsaPem: Promise<string> | undefined;
/** The test RSA key (one per checkout: see test-key.ts). */
export function testKeyPem(): Promise<string> {
  rsaPem ??= cachedTestKeyPem();
  return rsaPem;
}

/**
 * The secret box of every test app in this process: one key, so that apps sharing a database (a
 * second instance) open each other's sealed values, as real instances sharing TOTP_ENCRYPTION_KEY do.
 */
export const testSecretBox = new SecretBox([{ kid: 'test', key: randomBytes(32) }]);

export interface TestApp {
  app: FastifyInstance;
  deps: Deps;
  clock: TestClock;
  mail: CapturingTransport;
  worker: OutboxWorker;
  /** Delivers every due mail through the real outbox worker; returns the messages captured so far. */
  deliverMail(): Promise<MailMessage[]>;
}

export interface TestAppOptions {
  env?: Record<string, string>;
  clock?: TestClock;
  limiter?: Limiter;
  appOptions?: AppOptions;
  /** Another app on the same database (a second instance): pass the database explicitly. */
  db?: Database;
  /** The app's logger (default: {@link testLogger}). */
  logger?: pino.Logger;
  /** The secret box (default: the process-wide testSecretBox). */
  secretBox?: SecretBox;
  /** The token-hash key's hasher (default: one shared by the process's apps); a CLI run beside the app needs the same TOKEN_HASH_KEY. */
  tokenHasher?: TokenHasher;
}

/**
 * Errors only, on stderr (or TEST_LOG_LEVEL): an unexpected 500 in a test run, in CI above all, then
 * shows its cause next to the failing test instead of nothing. A test that causes errors on purpose
 * (a database outage) passes `logger: quietLogger()`.
 */
export function testLogger(): pino.Logger {
  return pino({ level: process.env.TEST_LOG_LEVEL ?? 'error' }, pino.destination(2));
}

/** A logger that prints nothing, for tests whose errors are the point. */
export function quietLogger(): pino.Logger {
  return pino({ level: 'silent' });
}

/**
 * One token-hash key for every app of the process, as every instance of a deployment shares its key:
 * two apps on one database (and one limiter) must digest codes and login names alike.
 */
const testTokenHasher = new TokenHasher(randomBytes(32));

/** Builds deps and app on `db`; the app (not the database) is closed when the test ends. */
export async function buildTestApp(t: TestContext | undefined, db: Database, options: TestAppOptions = {}): Promise<TestApp> {
  const config = loadConfig({
    NODE_ENV: 'test',
    PORT: '8000',
    PUBLIC_URL: 'http://127.0.0.1:8000',
    PASSWORD_HASH_MEMORY_KIB: '1024',
    PASSWORD_HASH_ITERATIONS: '1',
    ...options.env,
  });
  const clock = options.clock ?? createTestClock();
  const mail = new CapturingTransport();
  const logger = options.logger ?? testLogger();
  const secretBox = options.secretBox ?? testSecretBox;
  // The database's keys, as in production; the first one imported from the process's test key (generation is slow).
  const keys = await openKeyStore({ config, db, clock, secretBox, logger }, { pem: await testKeyPem(), source: 'test key' });
  const limiter = options.limiter ?? createLimiter(config);
  const deps: Deps = {
    config,
    db,
    clock,
    keys,
    secretBox,
    tokenHasher: options.tokenHasher ?? testTokenHasher,
    passwords: new PasswordHasher(config.passwordHash),
    limiter,
    mailTransport: mail,
    logger,
  };
  const app = await buildApp(deps, options.appOptions);
  await app.ready();
  const worker = new OutboxWorker({ db, clock, transport: mail, logger, config });
  t?.after(async () => {
    await app.close();
    if (!options.limiter) await limiter.close();
  });
  return {
    app,
    deps,
    clock,
    mail,
    worker,
    async deliverMail() {
      await worker.drain();
      return mail.sent;
    },
  };
}

/** The engines route and database suites run on: PGlite always, PostgreSQL when DATABASE_URL is set. */
export function databaseKinds(): DatabaseKind[] {
  return process.env.DATABASE_URL ? ['pglite', 'postgres'] : ['pglite'];
}

/** Suite context: the suite's database, and a way to build one app per test on it. */
export interface AppSuite {
  kind: DatabaseKind;
  db(): Database;
  build(t: TestContext, options?: TestAppOptions): Promise<TestApp>;
}

/**
 * Declares `name [pglite]` and, with DATABASE_URL, `name [postgres]`; each suite gets one fresh
 * migrated database (tests use unique users, so they don't interfere) and builds one app per test.
 */
export function describeWithApp(name: string, fn: (suite: AppSuite) => void): void {
  for (const kind of databaseKinds()) {
    void describe(`${name} [${kind}]`, () => {
      let database: TestDatabase | undefined;
      before(async () => {
        database = await createTestDatabase(kind);
      });
      after(async () => {
        await database?.cleanup();
      });
      fn({
        kind,
        db: () => {
          if (!database) throw new Error('database not ready');
          return database.db;
        },
        build: (t, options) => {
          if (!database) throw new Error('database not ready');
          return buildTestApp(t, options?.db ?? database.db, options);
        },
      });
    });
  }
}

let counter = 0;
/** A unique, valid username. */
export function uniqueName(prefix = 'user'): string {
  counter += 1;
  return `${prefix}_${randomBytes(3).toString('hex')}${counter}`.slice(0, 32);
}

export const PASSWORD = 'correct horse battery staple';

/** A user created through the API. */
export interface TestUser {
  uuid: string;
  username: string;
  email: string;
  password: string;
}

/** Signs up a user through POST /api/v1/user. */
export async function createUser(app: FastifyInstance, overrides: Partial<{ username: string; email: string; password: string; mfa: string }> = {}): Promise<TestUser> {
  const username = overrides.username ?? uniqueName();
  const email = overrides.email ?? `${username}@example.com`;
  const password = overrides.password ?? PASSWORD;
  const res = await app.inject({
    method: 'POST',
    url: '/api/v1/user',
    payload: { username, email, password1: password, password2: password, ...(overrides.mfa ? { mfa: overrides.mfa } : {}) },
  });
  if (res.statusCode !== 201) throw new Error(`sign-up failed: ${res.statusCode} ${res.body}`);
  return { uuid: res.json().uuid, username, email, password };
}

/** POST /api/v1/auth-jwt/login with a JSON body. */
export function login(app: FastifyInstance, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: body, headers });
}

/** Logs in with password only and returns the token pair (fails the test otherwise). */
export async function loginTokens(app: FastifyInstance, user: TestUser): Promise<{ access_token: string; refresh_token: string }> {
  const res = await login(app, { username: user.username, password: user.password });
  if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`);
  return res.json();
}

/** Enrols TOTP through /qrcode and activates it with a first login; returns the secret and the aal2 tokens. */
export async function enableTotp(t: TestApp, user: TestUser): Promise<{ secret: string; tokens: { access_token: string; refresh_token: string }; backupCodes: string[] }> {
  const qr = await t.app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', headers: { accept: 'application/json' }, payload: { username: user.username, password: user.password } });
  if (qr.statusCode !== 201) throw new Error(`qrcode failed: ${qr.statusCode} ${qr.body}`);
  const secret: string = qr.json().secret;
  const res = await login(t.app, { username: user.username, password: user.password, security_code: totpCodeAt(secret, t.clock()) });
  if (res.statusCode !== 200) throw new Error(`activation login failed: ${res.statusCode} ${res.body}`);
  // The activating login hands out the first backup codes (issue 7, item 13).
  return { secret, tokens: res.json(), backupCodes: res.json().backup_codes ?? [] };
}

/**
 * Turns TOTP on from the aal1 session `aal1` (enrol, confirm), which stays live: turning on the first
 * factor ends every other session. Returns the secret, the backup codes and aal2 tokens of a new login.
 */
export async function enableTotpFromSession(t: TestApp, user: TestUser, aal1: string): Promise<{ secret: string; tokens: { access_token: string; refresh_token: string }; backupCodes: string[] }> {
  const enroll = await t.app.inject({ method: 'POST', url: '/api/v1/auth-totp/enroll', headers: { ...bearer(aal1), accept: 'application/json' } });
  if (enroll.statusCode !== 201) throw new Error(`enroll failed: ${enroll.statusCode} ${enroll.body}`);
  const secret: string = enroll.json().secret;
  const confirm = await t.app.inject({ method: 'POST', url: '/api/v1/auth-totp/confirm', headers: bearer(aal1), payload: { security_code: totpCodeAt(secret, t.clock()) } });
  if (confirm.statusCode !== 200) throw new Error(`confirm failed: ${confirm.statusCode} ${confirm.body}`);
  nextTotpStep(t.clock);
  const res = await login(t.app, { username: user.username, password: user.password, security_code: totpCodeAt(secret, t.clock()) });
  if (res.statusCode !== 200) throw new Error(`TOTP login failed: ${res.statusCode} ${res.body}`);
  return { secret, tokens: res.json(), backupCodes: confirm.json().backup_codes };
}

/** Moves the clock to the next TOTP step, so a fresh code is not a replay of the last one. */
export function nextTotpStep(clock: TestClock): void {
  clock.advance(TOTP_PERIOD_SECONDS);
}

/** Authorization header for a bearer token. */
export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}
