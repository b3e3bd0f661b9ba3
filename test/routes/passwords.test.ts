import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { bearer, createUser, describeWithApp, enableTotp, login, loginTokens, nextTotpStep, uniqueName, type TestApp, type TestUser } from '../helpers/app.ts';
import { latestToken, linkOf, mailsTo, settleAndDeliver } from '../helpers/mail-links.ts';
import { pendingDeferred } from '../../src/services/deferred.ts';

const FORGOT = '/api/v1/user/password/forgot';
const RESET = '/api/v1/user/password/reset';
const CHANGE = '/api/v1/user/password/change';
const NEW_PASSWORD = 'plum orchard under winter rain';

function forgot(app: FastifyInstance, email: string, ip = '192.0.2.10') {
  return app.inject({ method: 'POST', url: FORGOT, payload: { email }, remoteAddress: ip });
}

function reset(app: FastifyInstance, token: string, password1 = NEW_PASSWORD, password2 = password1) {
  return app.inject({ method: 'POST', url: RESET, payload: { token, password1, password2 } });
}

function change(app: FastifyInstance, accessToken: string, current: string, password1 = NEW_PASSWORD, password2 = password1) {
  return app.inject({ method: 'POST', url: CHANGE, headers: bearer(accessToken), payload: { current_password: current, password1, password2 } });
}

function userInfo(app: FastifyInstance, accessToken: string) {
  return app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(accessToken) });
}

/** Asks for a reset link for `user` and returns its token. */
async function resetToken(ta: TestApp, user: TestUser): Promise<string> {
  assert.equal((await forgot(ta.app, user.email)).statusCode, 202);
  return latestToken(ta, user.email, 'password_reset');
}

describeWithApp('forgot password', (suite) => {
  test('known and unknown addresses get the same status, body and headers; only the known one gets a mail', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    await ta.deliverMail();
    const before = ta.mail.sent.length;

    const known = await forgot(ta.app, user.email);
    const unknown = await forgot(ta.app, `${uniqueName('ghost')}@example.com`);
    assert.equal(known.statusCode, 202);
    assert.equal(unknown.statusCode, known.statusCode);
    assert.equal(unknown.body, known.body);
    const headers = (h: Record<string, unknown>) => {
      const { date: _date, ...rest } = h;
      return rest;
    };
    assert.deepEqual(headers(unknown.headers), headers(known.headers));
    assert.ok(!('set-cookie' in known.headers));

    await settleAndDeliver(ta);
    const added = ta.mail.sent.slice(before);
    assert.equal(added.length, 1);
    assert.equal(added[0]!.kind, 'password_reset');
    assert.equal(added[0]!.to, user.email);
    const { url, token } = linkOf(added[0]!);
    assert.ok(url.startsWith('http://127.0.0.1:8000/reset-password?token='), url);
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.match(added[0]!.text, /30 minutes/);
  });

  test('the answer to a known address does not wait for the lookup or the mail', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    await ta.deliverMail();
    const res = await forgot(ta.app, user.email);
    assert.equal(res.statusCode, 202);
    // Checked at once, not by a query: a query of its own raced the deferred work on PostgreSQL's pool.
    assert.equal(pendingDeferred(ta.deps), 1, 'the lookup and the mail were still to do when the answer came');
    await settleAndDeliver(ta);
    assert.equal(pendingDeferred(ta.deps), 0);
    assert.equal(mailsTo(ta, user.email, 'password_reset').length, 1);
  });

  test('an inactive account gets no link', async (t) => {
    const ta = await suite.build(t, { env: { REQUIRE_EMAIL_VERIFICATION: 'true' } });
    const user = await createUser(ta.app);
    assert.equal((await forgot(ta.app, user.email)).statusCode, 202);
    await settleAndDeliver(ta);
    assert.equal(mailsTo(ta, user.email, 'password_reset').length, 0);
  });

  test('per-requester-and-address and per-IP quotas: 429 with Retry-After, for known and unknown addresses alike', async (t) => {
    const ta = await suite.build(t, { env: { RATE_LIMIT_EMAIL_MAX_PER_HOUR: '2', RATE_LIMIT_IP_MAX_REQUESTS_PER_MINUTE: '3' } });
    const user = await createUser(ta.app);
    const ghost = `${uniqueName('ghost')}@example.com`;
    for (const [i, email] of [user.email, ghost].entries()) {
      const requester = `198.51.100.${i + 1}`;
      assert.equal((await forgot(ta.app, email, requester)).statusCode, 202);
      assert.equal((await forgot(ta.app, email, requester)).statusCode, 202);
      const over = await forgot(ta.app, email, requester);
      assert.equal(over.statusCode, 429, email);
      assert.equal(over.json().code, 'too_many_requests');
      assert.match(String(over.headers['retry-after']), /^[1-9]\d*$/);
    }
    const ip = '203.0.113.50';
    for (let i = 0; i < 3; i++) assert.equal((await forgot(ta.app, `${uniqueName('x')}@example.com`, ip)).statusCode, 202);
    assert.equal((await forgot(ta.app, `${uniqueName('x')}@example.com`, ip)).statusCode, 429);
  });

  test('a malformed address is 422', async (t) => {
    const ta = await suite.build(t);
    const res = await ta.app.inject({ method: 'POST', url: FORGOT, payload: { email: 'nobody' } });
    assert.equal(res.statusCode, 422);
    assert.equal(res.json().code, 'validation_failed');
  });
});

describeWithApp('reset password', (suite) => {
  test('204; the new password works, the old one does not; a password_changed notice is mailed', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const token = await resetToken(ta, user);
    const res = await reset(ta.app, token);
    assert.equal(res.statusCode, 204);
    assert.equal(res.body, '');
    assert.equal((await login(ta.app, { username: user.username, password: user.password })).statusCode, 401);
    assert.equal((await login(ta.app, { username: user.username, password: NEW_PASSWORD })).statusCode, 200);
    await ta.deliverMail();
    assert.equal(mailsTo(ta, user.email, 'password_changed').length, 1);
  });

  test('every session is revoked at once: old access and refresh tokens are refused', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const a = await loginTokens(ta.app, user);
    const b = await loginTokens(ta.app, user);
    assert.equal((await userInfo(ta.app, a.access_token)).statusCode, 200);
    const token = await resetToken(ta, user);
    assert.equal((await reset(ta.app, token)).statusCode, 204);
    for (const pair of [a, b]) {
      const info = await userInfo(ta.app, pair.access_token);
      assert.equal(info.statusCode, 401);
      assert.equal(info.json().code, 'invalid_token');
      const refreshed = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: pair.refresh_token } });
      assert.equal(refreshed.statusCode, 401);
    }
  });

  test('a TOTP user must still pass the second factor after a reset; open challenges are void', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const { secret } = await enableTotp(ta, user);
    nextTotpStep(ta.clock);
    const pending = await login(ta.app, { username: user.username, password: user.password });
    assert.equal(pending.statusCode, 403);
    const oldChallenge: string = pending.json().mfa_token;

    const token = await resetToken(ta, user);
    assert.equal((await reset(ta.app, token)).statusCode, 204);

    const stale = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/mfa', payload: { mfa_token: oldChallenge, method: 'totp', code: totpCodeAt(secret, ta.clock()) } });
    assert.equal(stale.statusCode, 401);
    assert.equal(stale.json().code, 'invalid_token');

    const res = await login(ta.app, { username: user.username, password: NEW_PASSWORD });
    assert.equal(res.statusCode, 403);
    assert.equal(res.json().code, 'mfa_required');
    assert.equal(res.json().access_token, undefined);
    const done = await login(ta.app, { username: user.username, password: NEW_PASSWORD, security_code: totpCodeAt(secret, ta.clock()) });
    assert.equal(done.statusCode, 200);
  });

  test('single use: a second reset with the same token is 400 invalid_or_expired_token', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const token = await resetToken(ta, user);
    assert.equal((await reset(ta.app, token)).statusCode, 204);
    const again = await reset(ta.app, token, 'another fine long passphrase');
    assert.equal(again.statusCode, 400);
    assert.equal(again.json().code, 'invalid_or_expired_token');
    assert.equal((await login(ta.app, { username: user.username, password: NEW_PASSWORD })).statusCode, 200);
  });

  test('10 concurrent resets with one token: exactly one 204', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const token = await resetToken(ta, user);
    const passwords = Array.from({ length: 10 }, (_, i) => `${NEW_PASSWORD} number ${i}`);
    const results = await Promise.all(passwords.map((p) => reset(ta.app, token, p)));
    const codes = results.map((r) => r.statusCode);
    assert.deepEqual([...codes].sort(), [204, 400, 400, 400, 400, 400, 400, 400, 400, 400]);
    for (const r of results.filter((r) => r.statusCode === 400)) assert.equal(r.json().code, 'invalid_or_expired_token');
    const winner = passwords[codes.indexOf(204)]!;
    assert.equal((await login(ta.app, { username: user.username, password: winner })).statusCode, 200);
    await ta.deliverMail();
    assert.equal(mailsTo(ta, user.email, 'password_changed').length, 1);
  });

  test('the link expires after 30 minutes', async (t) => {
    const ta = await suite.build(t);
    const early = await createUser(ta.app);
    const late = await createUser(ta.app);
    const earlyToken = await resetToken(ta, early);
    const lateToken = await resetToken(ta, late);
    ta.clock.advance(30 * 60 - 1);
    assert.equal((await reset(ta.app, earlyToken)).statusCode, 204);
    ta.clock.advance(2);
    const res = await reset(ta.app, lateToken);
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().code, 'invalid_or_expired_token');
  });

  test('a new link voids the earlier one', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const first = await resetToken(ta, user);
    const second = await resetToken(ta, user);
    assert.notEqual(first, second);
    assert.equal((await reset(ta.app, first)).statusCode, 400);
    assert.equal((await reset(ta.app, second)).statusCode, 204);
  });

  test('422 for a mismatched, short, common or username-based password; the link stays usable', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const token = await resetToken(ta, user);
    const cases: Array<[string, string, string]> = [
      [NEW_PASSWORD, 'something else entirely', 'password2'],
      ['short', 'short', 'password1'],
      ['password123', 'password123', 'password1'],
      [user.username, user.username, 'password1'],
      ['x'.repeat(257), 'x'.repeat(257), 'password1'],
    ];
    for (const [p1, p2, field] of cases) {
      const res = await reset(ta.app, token, p1, p2);
      assert.equal(res.statusCode, 422, p1);
      assert.equal(res.json().code, 'validation_failed');
      assert.equal(res.json().errors[0].field, field);
    }
    assert.equal((await reset(ta.app, token)).statusCode, 204);
  });

  test('PASSWORD_MIN_LENGTH is honoured', async (t) => {
    const ta = await suite.build(t, { env: { PASSWORD_MIN_LENGTH: '20' } });
    const user = await createUser(ta.app, { password: 'a much longer passphrase here' });
    const token = await resetToken(ta, user);
    const short = await reset(ta.app, token, 'violet tundra 93');
    assert.equal(short.statusCode, 422);
    assert.match(short.json().errors[0].message, /at least 20/);
    assert.equal((await reset(ta.app, token, 'violet tundra 93 and lanterns')).statusCode, 204);
  });

  test('unknown token is 400 (before any password check); missing fields are 422', async (t) => {
    const ta = await suite.build(t);
    const res = await reset(ta.app, 'Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6', 'x', 'y');
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().code, 'invalid_or_expired_token');
    const missing = await ta.app.inject({ method: 'POST', url: RESET, payload: { token: 'abc' } });
    assert.equal(missing.statusCode, 422);
  });

  test('a reset clears the account lock', async (t) => {
    const ta = await suite.build(t, { env: { LOCKOUT_MAX_FAILURES: '3' } });
    const user = await createUser(ta.app);
    for (let i = 0; i < 3; i++) assert.equal((await login(ta.app, { username: user.username, password: 'wrong wrong wrong' })).statusCode, 401);
    const locked = await login(ta.app, { username: user.username, password: user.password });
    assert.equal(locked.statusCode, 429);
    const token = await resetToken(ta, user);
    assert.equal((await reset(ta.app, token)).statusCode, 204);
    assert.equal((await login(ta.app, { username: user.username, password: NEW_PASSWORD })).statusCode, 200);
  });
});

describeWithApp('change password', (suite) => {
  test('204; this session stays, every other session is revoked; notice mailed', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const mine = await loginTokens(ta.app, user);
    const other = await loginTokens(ta.app, user);
    const res = await change(ta.app, mine.access_token, user.password);
    assert.equal(res.statusCode, 204);

    assert.equal((await userInfo(ta.app, mine.access_token)).statusCode, 200);
    const refreshed = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: mine.refresh_token } });
    assert.equal(refreshed.statusCode, 200);
    assert.equal((await userInfo(ta.app, other.access_token)).statusCode, 401);
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: other.refresh_token } })).statusCode, 401);

    assert.equal((await login(ta.app, { username: user.username, password: user.password })).statusCode, 401);
    assert.equal((await login(ta.app, { username: user.username, password: NEW_PASSWORD })).statusCode, 200);
    await ta.deliverMail();
    assert.equal(mailsTo(ta, user.email, 'password_changed').length, 1);
  });

  test('a wrong current password is 401 invalid_credentials and changes nothing', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const mine = await loginTokens(ta.app, user);
    const other = await loginTokens(ta.app, user);
    const res = await change(ta.app, mine.access_token, 'not my password');
    assert.equal(res.statusCode, 401);
    assert.equal(res.json().code, 'invalid_credentials');
    assert.equal((await userInfo(ta.app, other.access_token)).statusCode, 200);
    assert.equal((await login(ta.app, { username: user.username, password: user.password })).statusCode, 200);
  });

  test('wrong current passwords count as failures: after LOCKOUT_MAX_FAILURES the right one gets 429', async (t) => {
    const ta = await suite.build(t, { env: { LOCKOUT_MAX_FAILURES: '3' } });
    const user = await createUser(ta.app);
    const mine = await loginTokens(ta.app, user);
    for (let i = 0; i < 3; i++) assert.equal((await change(ta.app, mine.access_token, `wrong ${i}`)).statusCode, 401);
    const locked = await change(ta.app, mine.access_token, user.password);
    assert.equal(locked.statusCode, 429);
    assert.ok(Number(locked.headers['retry-after']) >= 1);
    assert.equal((await login(ta.app, { username: user.username, password: user.password })).statusCode, 429, 'the login shares the lock');
  });

  test('422 for mismatched or weak new passwords', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const mine = await loginTokens(ta.app, user);
    const mismatch = await change(ta.app, mine.access_token, user.password, NEW_PASSWORD, `${NEW_PASSWORD}!`);
    assert.equal(mismatch.statusCode, 422);
    assert.equal(mismatch.json().errors[0].field, 'password2');
    const weak = await change(ta.app, mine.access_token, user.password, 'qwerty123');
    assert.equal(weak.statusCode, 422);
    const email = await change(ta.app, mine.access_token, user.password, user.email);
    assert.equal(email.statusCode, 422);
    const missing = await ta.app.inject({ method: 'POST', url: CHANGE, headers: bearer(mine.access_token), payload: { password1: NEW_PASSWORD, password2: NEW_PASSWORD } });
    assert.equal(missing.statusCode, 422);
    assert.equal((await login(ta.app, { username: user.username, password: user.password })).statusCode, 200);
  });

  test('needs authentication: 401 without a token or with a revoked one', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const none = await ta.app.inject({ method: 'POST', url: CHANGE, payload: { current_password: user.password, password1: NEW_PASSWORD, password2: NEW_PASSWORD } });
    assert.equal(none.statusCode, 401);
    const tokens = await loginTokens(ta.app, user);
    await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: bearer(tokens.access_token) });
    const revoked = await change(ta.app, tokens.access_token, user.password);
    assert.equal(revoked.statusCode, 401);
    assert.equal(revoked.json().code, 'invalid_token');
  });
});
