import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { PASSWORD, bearer, createUser, describeWithApp, enableTotp, login, loginTokens, nextTotpStep, type TestApp, type TestUser } from '../helpers/app.ts';
import { latestToken } from '../helpers/mail-links.ts';

const NEW_PASSWORD = 'plum orchard under winter rain';
const ORIGIN = 'http://127.0.0.1:8000';

function changeWithCookie(app: FastifyInstance, accessToken: string, headers: Record<string, string>) {
  return app.inject({
    method: 'POST',
    url: '/api/v1/user/password/change',
    cookies: { access_token: accessToken },
    headers,
    payload: { current_password: PASSWORD, password1: NEW_PASSWORD, password2: NEW_PASSWORD },
  });
}

async function resetToken(ta: TestApp, user: TestUser): Promise<string> {
  await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/forgot', payload: { email: user.email } });
  return latestToken(ta, user.email, 'password_reset');
}

describeWithApp('account lifecycle security', (suite) => {
  test('cookie-authenticated password change is refused cross-site (403 csrf_rejected), allowed same-origin', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const { access_token } = await loginTokens(ta.app, user);
    const refused: Array<Record<string, string>> = [{ 'sec-fetch-site': 'cross-site' }, { origin: 'https://evil.example' }, { origin: 'null' }, { 'sec-fetch-site': 'same-site' }];
    for (const headers of refused) {
      const res = await changeWithCookie(ta.app, access_token, headers);
      assert.equal(res.statusCode, 403, JSON.stringify(headers));
      assert.equal(res.json().code, 'csrf_rejected');
    }
    assert.equal((await login(ta.app, { username: user.username, password: PASSWORD })).statusCode, 200, 'password unchanged');
    const ok = await changeWithCookie(ta.app, access_token, { origin: ORIGIN, 'sec-fetch-site': 'same-origin' });
    assert.equal(ok.statusCode, 204);
  });

  test('cookie-authenticated session revocation is refused cross-site', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const mine = await loginTokens(ta.app, user);
    const other = await loginTokens(ta.app, user);
    const sid = JSON.parse(Buffer.from(other.access_token.split('.')[1]!, 'base64url').toString()).sid;
    const res = await ta.app.inject({ method: 'DELETE', url: `/api/v1/auth-jwt/sessions/${sid}`, cookies: { access_token: mine.access_token }, headers: { 'sec-fetch-site': 'cross-site' } });
    assert.equal(res.statusCode, 403);
    assert.equal(res.json().code, 'csrf_rejected');
    assert.equal((await ta.app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(other.access_token) })).statusCode, 200);
  });

  test('an MFA challenge token or a refresh token is not an access token for password change or sessions', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const pair = await loginTokens(ta.app, user);
    await enableTotp(ta, user);
    nextTotpStep(ta.clock);
    const mfaToken: string = (await login(ta.app, { username: user.username, password: PASSWORD })).json().mfa_token;
    for (const token of [mfaToken, pair.refresh_token]) {
      const change = await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/change', headers: bearer(token), payload: { current_password: PASSWORD, password1: NEW_PASSWORD, password2: NEW_PASSWORD } });
      assert.equal(change.statusCode, 401);
      assert.equal(change.json().code, 'invalid_token');
      assert.equal((await ta.app.inject({ method: 'GET', url: '/api/v1/auth-jwt/sessions', headers: bearer(token) })).statusCode, 401);
    }
  });

  test('link tokens are bound to their purpose: a verification token cannot reset a password, nor the reverse', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const verifyToken = await latestToken(ta, user.email, 'verify_email');
    const reset = await resetToken(ta, user);
    const r1 = await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/reset', payload: { token: verifyToken, password1: NEW_PASSWORD, password2: NEW_PASSWORD } });
    assert.equal(r1.statusCode, 400);
    assert.equal(r1.json().code, 'invalid_or_expired_token');
    const r2 = await ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify', payload: { token: reset } });
    assert.equal(r2.statusCode, 400);
    // Both still work for their own purpose.
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify', payload: { token: verifyToken } })).statusCode, 200);
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/reset', payload: { token: reset, password1: NEW_PASSWORD, password2: NEW_PASSWORD } })).statusCode, 204);
  });

  test('a link vouches only for the address it was sent to: after an address change both links are void', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const verifyToken = await latestToken(ta, user.email, 'verify_email');
    const reset = await resetToken(ta, user);
    await ta.deps.db.query('UPDATE users SET email = $2 WHERE id = $1', [user.uuid, `moved_${user.email}`]);
    const v = await ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify', payload: { token: verifyToken } });
    assert.equal(v.statusCode, 400);
    const r = await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/reset', payload: { token: reset, password1: NEW_PASSWORD, password2: NEW_PASSWORD } });
    assert.equal(r.statusCode, 400);
    const row = await ta.deps.db.query<{ email_verified: boolean }>('SELECT email_verified FROM users WHERE id = $1', [user.uuid]);
    assert.equal(row.rows[0]!.email_verified, false);
  });

  test('reset tokens are stored only as keyed digests; errors echo no token', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const token = await resetToken(ta, user);
    const rows = await ta.deps.db.query('SELECT * FROM email_tokens WHERE user_id = $1', [user.uuid]);
    assert.ok(!JSON.stringify(rows.rows).includes(token));
    const outbox = await ta.deps.db.query<{ text_body: string }>("SELECT text_body FROM outbox WHERE kind = 'password_reset' AND to_address = $1", [user.email]);
    assert.equal(outbox.rows.length, 1, 'the link lives only in the mail');
    const bogus = `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`;
    const res = await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/reset', payload: { token: bogus, password1: NEW_PASSWORD, password2: NEW_PASSWORD } });
    assert.equal(res.statusCode, 400);
    assert.ok(!res.body.includes(bogus));
    assert.ok(!res.body.includes(ta.deps.tokenHasher.hash('reset_password', bogus)));
  });

  test('a reset answers with no tokens and no cookies: it never logs anyone in', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const token = await resetToken(ta, user);
    const res = await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/reset', payload: { token, password1: NEW_PASSWORD, password2: NEW_PASSWORD } });
    assert.equal(res.statusCode, 204);
    assert.equal(res.body, '');
    assert.ok(!('set-cookie' in res.headers));
  });

  test('the verification link redirects only to its own page (no open redirect) and does not spend the token', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const token = await latestToken(ta, user.email, 'verify_email');
    const res = await ta.app.inject({ method: 'GET', url: `/api/v1/user/email/verify?token=${token}&next=https://evil.example`, headers: { accept: 'text/html' } });
    assert.equal(res.statusCode, 303);
    assert.equal(res.headers.location, `/verify-email?token=${encodeURIComponent(token)}`);
    assert.ok(!String(res.headers.location).includes('evil.example'));
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify', payload: { token } })).statusCode, 200);
  });

  test('without REQUIRE_EMAIL_VERIFICATION, verifying never re-activates a deactivated account', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const token = await latestToken(ta, user.email, 'verify_email');
    await ta.deps.db.query('UPDATE users SET is_active = false WHERE id = $1', [user.uuid]);
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify', payload: { token } })).statusCode, 200);
    const res = await login(ta.app, { username: user.username, password: PASSWORD });
    assert.equal(res.statusCode, 403);
    assert.equal(res.json().code, 'account_inactive');
  });

  test('the introspection secret is accepted only as the Bearer header, never from a cookie or the query', async (t) => {
    const secret = 'introspection-secret-for-tests-0123456789';
    const ta = await suite.build(t, { env: { INTROSPECTION_SECRET: secret } });
    const user = await createUser(ta.app);
    const { access_token } = await loginTokens(ta.app, user);
    const viaQuery = await ta.app.inject({ method: 'POST', url: `/api/v1/auth-jwt/introspect?secret=${secret}&access_token=${secret}`, payload: { token: access_token } });
    assert.equal(viaQuery.statusCode, 401);
    const viaCookie = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/introspect', cookies: { access_token: secret }, payload: { token: access_token } });
    assert.equal(viaCookie.statusCode, 401);
    // A user's own access token is no client credential either.
    const asUser = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/introspect', headers: bearer(access_token), payload: { token: access_token } });
    assert.equal(asUser.statusCode, 401);
    assert.equal(asUser.json().code, 'invalid_client');
  });
});
