/**
 * Brute-force defence through the login route (in-process limiter): the account lock after
 * LOCKOUT_MAX_FAILURES, the per-IP limit across accounts (password spraying), and second-factor
 * guesses after a proven password, which count against every name of the account.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { PASSWORD, createUser, describeWithApp, enableTotp, login, loginTokens, nextTotpStep, uniqueName } from '../helpers/app.ts';
import { enableEmailOtp, mailsOf, mfaChallenge, requestLoginCode, verifyEmail } from '../helpers/factors.ts';

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

describeWithApp('second-factor guesses once the password is proven: one budget for the whole account', (suite) => {
  test('one-step logins with wrong codes count against the username and the e-mail address together', async (t) => {
    const ta = await suite.build(t, { env: { LOCKOUT_MAX_FAILURES: '3' } });
    const user = await createUser(ta.app);
    const { secret } = await enableTotp(ta, user);
    nextTotpStep(ta.clock);
    // The password is right, the codes are guesses: by username until refused, then by e-mail address.
    const seen: string[] = [];
    for (const [which, name] of [['username', user.username], ['email', user.email]] as const) {
      for (let i = 0; i < 4; i++) seen.push(`${which}:${(await login(ta.app, { username: name, password: user.password, security_code: '000000' })).statusCode}`);
    }
    assert.deepEqual(seen, ['username:401', 'username:401', 'username:401', 'username:429', 'email:429', 'email:429', 'email:429', 'email:429']);
    assert.equal((await login(ta.app, { username: user.email, password: user.password, backup_code: 'AAAA-BBBB-CCCC' })).statusCode, 429, 'a backup code by the other name');
    const right = await login(ta.app, { username: user.email, password: user.password, security_code: totpCodeAt(secret, ta.clock()) });
    assert.equal(right.statusCode, 429, 'even the right code waits out the lock');
  });

  test('two dozen one-step logins with wrong codes at once, by both names: at most the limit of codes is checked', async (t) => {
    const ta = await suite.build(t, { env: { LOCKOUT_MAX_FAILURES: '3' } });
    const user = await createUser(ta.app);
    const { secret } = await enableTotp(ta, user);
    nextTotpStep(ta.clock);
    const names = Array.from({ length: 24 }, (_, i) => (i % 2 ? user.email : user.username));
    const answers = await Promise.all(names.map((name, i) => login(ta.app, { username: name, password: user.password, ...(i % 3 ? { security_code: '000000' } : { backup_code: 'AAAA-BBBB-CCCC' }) })));
    const codes = answers.map((r) => r.statusCode);
    assert.ok(codes.every((c) => c === 401 || c === 429), codes.join());
    assert.ok(codes.filter((c) => c === 401).length <= 3, `${codes.filter((c) => c === 401).length} codes were checked: ${codes.join()}`);
    assert.equal((await login(ta.app, { username: user.username, password: user.password, security_code: totpCodeAt(secret, ta.clock()) })).statusCode, 429);
  });

  test('an account locked by its names gets no e-mailed login code (429, no mail)', async (t) => {
    const ta = await suite.build(t, { env: { LOCKOUT_MAX_FAILURES: '3' } });
    const user = await createUser(ta.app);
    await verifyEmail(ta, user);
    await enableEmailOtp(ta, user, (await loginTokens(ta.app, user)).access_token);
    const { mfa_token } = await mfaChallenge(ta, user);
    // Wrong passwords lock both login names (each has its own count at the password step).
    for (const name of [user.username, user.email]) {
      for (let i = 0; i < 3; i++) assert.equal((await login(ta.app, { username: name, password: 'not the password at all' })).statusCode, 401);
    }
    await ta.deliverMail();
    const before = (await mailsOf(ta, 'email_otp_login', user.email)).length;
    const res = await requestLoginCode(ta, mfa_token);
    assert.equal(res.statusCode, 429, res.body);
    await ta.deliverMail();
    assert.equal((await mailsOf(ta, 'email_otp_login', user.email)).length, before, 'no code mailed');
  });
});
