/**
 * The account lock holds across instances: two apps on one database, failures spread over both, lock
 * the account on both. With REDIS_URL and DATABASE_URL set (and in CI) the instances are what a real
 * cluster is: separate PostgreSQL pools and separate limiters sharing one Redis. Always, the same
 * scenario also runs on two apps sharing one in-process limiter and one PGlite, which checks the
 * scenario itself (and what the routes do with a shared limiter) without any server.
 */
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { loadConfig } from '../../src/config.ts';
import { PASSWORD, createUser, type TestApp } from '../helpers/app.ts';
import { describeOnTwoInstances, type TwoInstanceScenario } from '../helpers/two-instances.ts';

const MAX_FAILURES = 4;
const env = { LOCKOUT_MAX_FAILURES: String(MAX_FAILURES), LOCKOUT_DURATION: '600', RATE_LIMIT_IP_MAX_FAILURES: '6' };
const limiterConfig = loadConfig({ NODE_ENV: 'test', ...env });

function loginFrom(app: FastifyInstance, ip: string, username: string, password: string) {
  return app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: { username, password }, remoteAddress: ip });
}

async function failuresSpreadOverBothLockBoth(a: TestApp, b: TestApp): Promise<void> {
  const user = await createUser(a.app);
  // Each instance sees only half the failures: below the limit on its own.
  for (let i = 0; i < MAX_FAILURES; i++) {
    const app = i % 2 === 0 ? a.app : b.app;
    const res = await loginFrom(app, `198.51.100.${i + 1}`, user.username, `wrong guess ${i}`);
    assert.equal(res.statusCode, 401);
    assert.equal(res.json().code, 'invalid_credentials');
  }
  for (const [name, app] of [['first', a.app], ['second', b.app]] as const) {
    const res = await loginFrom(app, '198.51.100.200', user.username, PASSWORD);
    assert.equal(res.statusCode, 429, `locked on the ${name} instance, even with the right password`);
    assert.equal(res.json().code, 'too_many_requests');
    const retryAfter = Number(res.headers['retry-after']);
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 600, String(res.headers['retry-after']));
  }
}

async function successOnOneClearsTheCountForBoth(a: TestApp, b: TestApp): Promise<void> {
  const user = await createUser(b.app);
  for (let i = 0; i < MAX_FAILURES - 1; i++) assert.equal((await loginFrom(i % 2 ? a.app : b.app, '192.0.2.30', user.username, 'nope nope nope')).statusCode, 401);
  assert.equal((await loginFrom(b.app, '192.0.2.31', user.username, PASSWORD)).statusCode, 200);
  for (let i = 0; i < MAX_FAILURES - 1; i++) assert.equal((await loginFrom(i % 2 ? b.app : a.app, '192.0.2.32', user.username, 'nope nope nope')).statusCode, 401);
  assert.equal((await loginFrom(a.app, '192.0.2.31', user.username, PASSWORD)).statusCode, 200);
}

async function ipFailuresSpreadOverBothBlockTheIpOnBoth(a: TestApp, b: TestApp): Promise<void> {
  const users = [];
  for (let i = 0; i < 6; i++) users.push(await createUser(a.app));
  const target = await createUser(b.app);
  const sprayer = '203.0.113.99';
  for (const [i, u] of users.entries()) assert.equal((await loginFrom(i % 2 ? b.app : a.app, sprayer, u.username, 'Spring2026!')).statusCode, 401);
  assert.equal((await loginFrom(a.app, sprayer, target.username, PASSWORD)).statusCode, 429);
  assert.equal((await loginFrom(b.app, sprayer, target.username, PASSWORD)).statusCode, 429);
  assert.equal((await loginFrom(b.app, '203.0.113.100', target.username, PASSWORD)).statusCode, 200);
}

/** Issue 7: a burst of simultaneous wrong passwords spread over both instances gets at most MAX_FAILURES checked. */
async function concurrentBurstOverBothChecksAtMostTheLimit(a: TestApp, b: TestApp): Promise<void> {
  const user = await createUser(a.app);
  const burst = await Promise.all(
    Array.from({ length: 100 }, (_, i) => loginFrom(i % 2 ? b.app : a.app, `198.51.100.${(i % 50) + 1}`, user.username, `burst guess ${i}`)),
  );
  const checked = burst.filter((r) => r.statusCode !== 429).length;
  assert.ok(checked <= MAX_FAILURES, `${checked} of 100 simultaneous guesses were checked`);
  assert.ok(burst.every((r) => r.statusCode === 401 || r.statusCode === 429));
  for (const app of [a.app, b.app]) assert.equal((await loginFrom(app, '198.51.100.201', user.username, PASSWORD)).statusCode, 429);
}

const scenarios: TwoInstanceScenario[] = [
  ['failures spread over both instances lock the account on both (429 + Retry-After, even with the right password)', failuresSpreadOverBothLockBoth],
  ['a successful login on one instance clears the count on both', successOnOneClearsTheCountForBoth],
  ['failures from one IP spread over both instances block that IP on both', ipFailuresSpreadOverBothBlockTheIpOnBoth],
  ['100 simultaneous wrong passwords over both instances get at most the limit checked', concurrentBurstOverBothChecksAtMostTheLimit],
];

describeOnTwoInstances('lockout across two app instances', env, limiterConfig, scenarios);
