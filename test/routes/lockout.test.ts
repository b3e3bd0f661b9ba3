/**
 * Brute-force defence through the login route (in-process limiter): the account lock after
 * LOCKOUT_MAX_FAILURES, and the per-IP limit across accounts (password spraying).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { PASSWORD, createUser, describeWithApp, uniqueName } from '../helpers/app.ts';

function loginFrom(app: FastifyInstance, ip: string, username: string, password: string) {
  return app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: { username, password }, remoteAddress: ip });
}

describeWithApp('login lockout', (suite) => {
  test('after LOCKOUT_MAX_FAILURES wrong passwords the right one gets 429 with Retry-After', async (t) => {
    const ta = await suite.build(t, { env: { LOCKOUT_MAX_FAILURES: '3', LOCKOUT_DURATION: '900' } });
    const user = await createUser(ta.app);
    const other = await createUser(ta.app);
    for (let i = 0; i < 3; i++) {
      const res = await loginFrom(ta.app, `198.51.100.${i + 1}`, user.username, `wrong password ${i}`);
      assert.equal(res.statusCode, 401, 'the failure that reaches the limit still gets its ordinary answer');
      assert.equal(res.json().code, 'invalid_credentials');
    }
    const locked = await loginFrom(ta.app, '198.51.100.9', user.username, PASSWORD);
    assert.equal(locked.statusCode, 429);
    assert.equal(locked.json().code, 'too_many_requests');
    assert.equal(locked.headers['content-type'], 'application/problem+json; charset=utf-8');
    const retryAfter = Number(locked.headers['retry-after']);
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 900, String(locked.headers['retry-after']));
    assert.equal(locked.json().access_token, undefined);
    // The e-mail address has a count of its own, as any other name does: a lock on the username must
    // not tell which address belongs to it (issue 7, item 6; tested in enumeration.security.test.ts).
    assert.equal((await loginFrom(ta.app, '198.51.100.10', user.email, PASSWORD)).statusCode, 200);
    // Other accounts are unaffected.
    assert.equal((await loginFrom(ta.app, '198.51.100.9', other.username, PASSWORD)).statusCode, 200);
  });

  test('a lock on an unknown name looks the same as on a real account', async (t) => {
    const ta = await suite.build(t, { env: { LOCKOUT_MAX_FAILURES: '2' } });
    const ghost = uniqueName('ghost');
    for (let i = 0; i < 2; i++) assert.equal((await loginFrom(ta.app, '192.0.2.1', ghost, 'whatever it is')).statusCode, 401);
    const res = await loginFrom(ta.app, '192.0.2.2', ghost, 'whatever it is');
    assert.equal(res.statusCode, 429);
    assert.ok(Number(res.headers['retry-after']) >= 1);
  });

  test('a successful login before the limit clears the count', async (t) => {
    const ta = await suite.build(t, { env: { LOCKOUT_MAX_FAILURES: '3' } });
    const user = await createUser(ta.app);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 2; i++) assert.equal((await loginFrom(ta.app, '192.0.2.5', user.username, 'nope nope nope')).statusCode, 401);
      assert.equal((await loginFrom(ta.app, '192.0.2.5', user.username, PASSWORD)).statusCode, 200);
    }
  });

  test('per-IP limit across accounts: failures on many accounts from one address block that address only', async (t) => {
    const ta = await suite.build(t, { env: { RATE_LIMIT_IP_MAX_FAILURES: '4', LOCKOUT_MAX_FAILURES: '10' } });
    const victims = await Promise.all([1, 2, 3, 4].map(() => createUser(ta.app)));
    const target = await createUser(ta.app);
    const sprayer = '203.0.113.66';
    for (const v of victims) assert.equal((await loginFrom(ta.app, sprayer, v.username, 'Summer2026!')).statusCode, 401);
    const blocked = await loginFrom(ta.app, sprayer, target.username, PASSWORD);
    assert.equal(blocked.statusCode, 429);
    assert.ok(Number(blocked.headers['retry-after']) >= 1);
    // The accounts themselves are not locked: from elsewhere their owners still log in.
    assert.equal((await loginFrom(ta.app, '203.0.113.67', target.username, PASSWORD)).statusCode, 200);
    assert.equal((await loginFrom(ta.app, '203.0.113.67', victims[0]!.username, PASSWORD)).statusCode, 200);
  });

  test('IPv6 clients are counted per /64', async (t) => {
    const ta = await suite.build(t, { env: { RATE_LIMIT_IP_MAX_FAILURES: '3', LOCKOUT_MAX_FAILURES: '10' } });
    const users = await Promise.all([1, 2, 3].map(() => createUser(ta.app)));
    const target = await createUser(ta.app);
    for (const [i, u] of users.entries()) assert.equal((await loginFrom(ta.app, `2001:db8:1:2::${i + 1}`, u.username, 'wrong again')).statusCode, 401);
    assert.equal((await loginFrom(ta.app, '2001:db8:1:2:ffff::9', target.username, PASSWORD)).statusCode, 429);
    assert.equal((await loginFrom(ta.app, '2001:db8:1:3::1', target.username, PASSWORD)).statusCode, 200);
  });
});
