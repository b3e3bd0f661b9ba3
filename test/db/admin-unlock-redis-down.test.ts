/**
 * The admin unlock must clear the locks where every instance reads them. With REDIS_URL the limiter
 * falls back to per-process counters when Redis fails, and so did the unlock's delete: an instance
 * that could not reach Redis cleared only its own stand-ins, answered 204 (`twofold users unlock`
 * said "unlocked") and recorded `admin.action unlock`, while the lock in Redis stayed. Now the unlock
 * answers 503 service_unavailable, records nothing (its transaction rolls back) and the CLI exits 1
 * with one line; logins keep counting on the stand-ins during the outage.
 *
 * Always, on each engine: one instance whose Redis is unreachable (a closed port). With REDIS_URL and
 * DATABASE_URL (CI): two instances on PostgreSQL, one on the real Redis, one whose Redis is
 * unreachable under the same prefix; and the CLI against an unreachable and a read-only Redis.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { Redis } from 'ioredis';
import { loadConfig } from '../../src/config.ts';
import { SecretBox } from '../../src/crypto/secret-box.ts';
import { TokenHasher } from '../../src/crypto/token-hash.ts';
import { isAppError } from '../../src/errors.ts';
import type { Limiter } from '../../src/security/limiter.ts';
import { FlexibleLimiter } from '../../src/security/limiter-flexible.ts';
import { createRedisClient, createRedisLimiter } from '../../src/security/limiter-redis.ts';
import { ADMIN_ENV, adminCall, auditRowsOf } from '../helpers/admin.ts';
import { buildTestApp, createUser, describeWithApp, login, quietLogger, type TestApp, type TestUser } from '../helpers/app.ts';
import { runTwofoldHere } from '../helpers/cli.ts';
import { freePort } from '../helpers/net.ts';
import { createTestDatabase } from '../helpers/pg-database.ts';
import { CLUSTER } from '../helpers/two-instances.ts';

const env = { ...ADMIN_ENV, LOCKOUT_MAX_FAILURES: '3', LOCKOUT_DURATION: '600' };
const config = loadConfig({ NODE_ENV: 'test', ...env });
/** Port 1 refuses connections: every command fails at once (the client has no offline queue). */
const UNREACHABLE = 'redis://127.0.0.1:1';
const UNLOCKS = 20;

/** A Redis limiter under `prefix` on `url`, closed when the test ends. */
function redisLimiter(t: TestContext, url: string, prefix: string): Limiter {
  const l = createRedisLimiter(config, { client: createRedisClient(url), keyPrefix: prefix });
  t.after(() => l.close());
  return l;
}

/** Locks the user under both login names on `ta` (3 failures each, then 429 even with the password). */
async function lockOut(ta: TestApp, user: TestUser): Promise<void> {
  for (const name of [user.username, user.email]) {
    for (let i = 0; i < 3; i++) assert.equal((await login(ta.app, { username: name, password: `wrong guess ${i} here` })).statusCode, 401);
    assert.equal((await login(ta.app, { username: name, password: user.password })).statusCode, 429, `locked by ${name}`);
  }
}

/** The user's recorded unlocks. */
async function unlocksOf(ta: TestApp, user: TestUser): Promise<number> {
  return (await auditRowsOf(ta, user.uuid)).filter((r) => r.type === 'admin.action' && (r.data as { action?: string }).action === 'unlock').length;
}

/** Asserts a 503 service_unavailable problem document. */
function assertUnavailable(r: LightMyRequestResponse): void {
  assert.equal(r.statusCode, 503, r.body);
  assert.equal(r.headers['content-type'], 'application/problem+json; charset=utf-8');
  const body = r.json() as { code: string; status: number; detail: string };
  assert.equal(body.code, 'service_unavailable');
  assert.equal(body.status, 503);
  assert.match(body.detail, /could not be cleared/);
}

/** `UNLOCKS` admin unlocks of the user on `ta` at once. */
function unlockAtOnce(ta: TestApp, user: TestUser): Promise<LightMyRequestResponse[]> {
  return Promise.all(Array.from({ length: UNLOCKS }, () => adminCall(ta, 'POST', `/api/v1/admin/users/${user.uuid}/unlock`)));
}

describe('the limiter: the unlock\'s clear does not fall back', () => {
  test('with Redis unreachable, clearAccounts({ fallback: false }) rejects with service_unavailable; a login\'s clear still falls back', async (t) => {
    const l = redisLimiter(t, UNREACHABLE, `twofold-test:${randomUUID()}`);
    const subject = { account: 'alice', ip: '192.0.2.1' };
    for (let i = 0; i < 3; i++) await l.recordFailure(subject);
    await assert.rejects(l.assertAllowed(subject), (e) => isAppError(e, 'too_many_requests'), 'the stand-in counters lock');
    await assert.rejects(l.clearAccounts(['alice'], { fallback: false }), (e) => isAppError(e, 'service_unavailable') && e.cause !== undefined);
    await assert.rejects(l.assertAllowed(subject), (e) => isAppError(e, 'too_many_requests'), 'nothing was cleared');
    await l.clearAccounts(['alice']);
    await l.assertAllowed(subject);
  });

  if (process.env.REDIS_URL) {
    test('with Redis up, clearAccounts({ fallback: false }) clears the lock every instance reads', async (t) => {
      const prefix = `twofold-test:${randomUUID()}`;
      const [a, b] = [redisLimiter(t, process.env.REDIS_URL!, prefix), redisLimiter(t, process.env.REDIS_URL!, prefix)];
      for (const l of [a, b]) await (l as FlexibleLimiter).ready();
      for (let i = 0; i < 3; i++) await a.recordFailure({ account: 'bob', ip: '192.0.2.1' });
      assert.ok((await a.accountLockMs(['bob'])) > 0);
      await b.clearAccounts(['bob'], { fallback: false });
      assert.equal(await a.accountLockMs(['bob']), 0);
    });
  }
});

describeWithApp('admin unlock while Redis is unreachable', (suite) => {
  test(`answers 503 service_unavailable to ${UNLOCKS} unlocks at once and records none; logins keep counting on the stand-ins`, async (t) => {
    const limiter = redisLimiter(t, UNREACHABLE, `twofold-test:${randomUUID()}`);
    // 503s are logged at error: they are the point here.
    const ta = await suite.build(t, { env, limiter, logger: quietLogger() });
    const [user, other] = [await createUser(ta.app), await createUser(ta.app)];
    await lockOut(ta, user);
    for (const r of await unlockAtOnce(ta, user)) assertUnavailable(r);
    assert.equal(await unlocksOf(ta, user), 0, 'no unlock recorded');
    assert.equal((await login(ta.app, { username: user.username, password: user.password })).statusCode, 429, 'still locked');
    assert.equal((await login(ta.app, { username: other.username, password: other.password })).statusCode, 200, 'logins still work without Redis');
  });
});

if (CLUSTER) {
  void describe('admin unlock from an instance that cannot reach the shared Redis [PostgreSQL, Redis]', () => {
    test(`${UNLOCKS} unlocks at once answer 503 and record nothing, the lock in Redis stays; the other instance unlocks`, async (t) => {
      const prefix = `twofold-test:${randomUUID()}`;
      const up = redisLimiter(t, process.env.REDIS_URL!, prefix);
      await (up as FlexibleLimiter).ready();
      const database = await createTestDatabase('postgres');
      t.after(() => database.cleanup());
      // Two pools, as two instances; b's 503s are logged at error, and are the point here.
      const a = await buildTestApp(t, database.db, { env, limiter: up });
      const b = await buildTestApp(t, await database.connectAgain(), { env, limiter: redisLimiter(t, UNREACHABLE, prefix), logger: quietLogger() });
      const user = await createUser(a.app);
      await lockOut(a, user);
      for (const r of await unlockAtOnce(b, user)) assertUnavailable(r);
      assert.equal(await unlocksOf(a, user), 0, 'no unlock recorded');
      assert.notEqual((await adminCall(a, 'GET', `/api/v1/admin/users/${user.uuid}`)).json().locked_until, null, 'the shared lock stays');
      assert.equal((await login(a.app, { username: user.email, password: user.password })).statusCode, 429);
      // The instance that reaches Redis unlocks, once.
      assert.equal((await adminCall(a, 'POST', `/api/v1/admin/users/${user.uuid}/unlock`)).statusCode, 204);
      assert.equal(await unlocksOf(a, user), 1);
      assert.equal((await login(b.app, { username: user.email, password: user.password })).statusCode, 200);
      assert.equal((await login(a.app, { username: user.username, password: user.password })).statusCode, 200);
    });

    /** A Redis of the test's own that refuses writes: a replica whose primary (a closed port) never answers. */
    async function readOnlyRedis(t: TestContext): Promise<string> {
      const port = await freePort();
      const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--replicaof', '127.0.0.1', '1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] });
      t.after(() => server.kill('SIGKILL'));
      await new Promise<void>((resolve, reject) => {
        setTimeout(() => reject(new Error('redis-server did not start within 10 s')), 10_000).unref();
        server.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)));
        server.stdout!.on('data', (d: Buffer) => {
          if (d.toString().includes('Ready to accept connections')) resolve();
        });
      });
      return `redis://127.0.0.1:${port}`;
    }

    test('`twofold users unlock` exits 1 with one line and records nothing when Redis is unreachable or refuses the delete', async (t) => {
      // A prefix REDIS_KEY_PREFIX accepts, so that the command counts where the server does.
      const prefix = `twofold-test-${randomBytes(8).toString('hex')}`;
      const up = redisLimiter(t, process.env.REDIS_URL!, prefix);
      await (up as FlexibleLimiter).ready();
      const database = await createTestDatabase('postgres');
      t.after(() => database.cleanup());
      // The app seals the signing key with the command's TOTP_ENCRYPTION_KEY, which opens it.
      const boxKey = randomBytes(32);
      // And digests login names (the limiter's account names) under the command's TOKEN_HASH_KEY.
      const hashKey = randomBytes(32);
      const a = await buildTestApp(t, database.db, { env, limiter: up, secretBox: new SecretBox([{ kid: 'test', key: boxKey }]), tokenHasher: new TokenHasher(hashKey) });
      const user = await createUser(a.app);
      await lockOut(a, user);
      const cliEnv = { DATABASE_URL: database.url!, REDIS_KEY_PREFIX: prefix, TOTP_ENCRYPTION_KEY: `test:${boxKey.toString('base64')}`, TOKEN_HASH_KEY: hashKey.toString('base64') };
      // Read-only (REDIS_URL left on a replica after a failover): connected, and the delete itself
      // fails, where it used to fall back and say "unlocked". Unreachable: refused before the transaction.
      for (const [url, reason] of [[await readOnlyRedis(t), /could not be cleared.*\[service_unavailable\]/], [UNREACHABLE, /Redis \(REDIS_URL\) cannot be reached, so \S+ was not unlocked: .*ECONNREFUSED/]] as const) {
        const r = await runTwofoldHere(['users', 'unlock', user.username], { ...cliEnv, REDIS_URL: url });
        assert.equal(r.code, 1, `${url}: ${r.stdout}${r.stderr}`);
        assert.equal(r.stdout, '');
        assert.match(r.stderr, /^twofold: [^\n]+\n$/, 'one line');
        assert.match(r.stderr, reason);
      }
      assert.equal(await unlocksOf(a, user), 0, 'no unlock recorded');
      assert.equal((await login(a.app, { username: user.username, password: user.password })).statusCode, 429, 'still locked');
      const ok = await runTwofoldHere(['users', 'unlock', user.username], { ...cliEnv, REDIS_URL: process.env.REDIS_URL! });
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(await unlocksOf(a, user), 1);
      assert.equal((await login(a.app, { username: user.username, password: user.password })).statusCode, 200);
    });
  });
}

if (process.env.REDIS_URL) {
  test('an unlock that Redis refuses for one of its keys clears none of them (one deletion, all or nothing)', async (t) => {
    const prefix = `twofold-test:${randomUUID()}`;
    const owner = redisLimiter(t, process.env.REDIS_URL!, prefix);
    await (owner as FlexibleLimiter).ready();
    // A Redis user that may touch the short-window counters only: the consecutive counter's key is
    // refused, as a store lost halfway through an unlock would refuse the rest.
    const admin = new Redis(process.env.REDIS_URL!);
    const user = `twofold-test-${randomBytes(6).toString('hex')}`;
    const password = randomBytes(12).toString('hex');
    await admin.call('ACL', 'SETUSER', user, 'on', `>${password}`, `~${prefix}:rl:account:*`, '+@all');
    t.after(async () => {
      await admin.call('ACL', 'DELUSER', user);
      const keys = await admin.keys(`${prefix}*`);
      if (keys.length) await admin.del(...keys);
      admin.disconnect();
    });
    const url = new URL(process.env.REDIS_URL!);
    url.username = user;
    url.password = password;
    const restricted = redisLimiter(t, url.toString(), prefix);
    await (restricted as FlexibleLimiter).ready();

    const subject = { account: 'mallory', ip: '192.0.2.44' };
    for (let i = 0; i < 3; i++) await (await owner.beginAttempt(subject)).failed();
    const before = (await admin.keys(`${prefix}:rl:account*`)).sort();
    assert.equal(before.length, 2, `the short-window and consecutive counters: ${before.join(', ')}`);
    await assert.rejects(restricted.clearAccounts(['mallory'], { fallback: false }), (e) => isAppError(e, 'service_unavailable'));
    assert.deepEqual((await admin.keys(`${prefix}:rl:account*`)).sort(), before, 'nothing was cleared');
    await assert.rejects(owner.assertAllowed(subject), (e) => isAppError(e, 'too_many_requests'), 'still locked');
  });
}
