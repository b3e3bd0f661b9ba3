import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PASSWORD, bearer, createUser, describeWithApp, login, loginTokens, uniqueName } from '../helpers/app.ts';
import { latestToken, linkOf, mailsTo, settleAndDeliver } from '../helpers/mail-links.ts';

const VERIFY = '/api/v1/user/email/verify';
const RESEND = '/api/v1/user/email/verify/resend';
const HTML = { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' };

describeWithApp('e-mail verification', (suite) => {
  test('sign-up mails a single-use link PUBLIC_URL/api/v1/user/email/verify?token=…; POST verifies', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    await ta.deliverMail();
    const mails = mailsTo(ta, user.email, 'verify_email');
    assert.equal(mails.length, 1);
    const { url, token } = linkOf(mails[0]!);
    assert.ok(url.startsWith('http://127.0.0.1:8000/api/v1/user/email/verify?token='), url);
    assert.match(token, /^[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url');
    assert.match(mails[0]!.text, /expires in 24 hours/);

    const res = await ta.app.inject({ method: 'POST', url: VERIFY, payload: { token } });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { email_verified: true });
    assert.equal(res.headers['cache-control'], 'no-store');

    const { access_token } = await loginTokens(ta.app, user);
    const info = await ta.app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(access_token) });
    assert.equal(info.json().email_verified, true);
    assert.equal(info.json().is_active, true);

    const again = await ta.app.inject({ method: 'POST', url: VERIFY, payload: { token } });
    assert.equal(again.statusCode, 400);
    assert.equal(again.json().code, 'invalid_or_expired_token');
    assert.equal(again.headers['content-type'], 'application/problem+json; charset=utf-8');
  });

  test('the token is stored only as a keyed digest', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const token = await latestToken(ta, user.email, 'verify_email');
    const rows = await ta.deps.db.query<Record<string, unknown>>('SELECT * FROM email_tokens WHERE user_id = $1', [user.uuid]);
    assert.equal(rows.rows.length, 1);
    assert.equal(rows.rows[0]!.purpose, 'verify_email');
    assert.ok(!JSON.stringify(rows.rows).includes(token));
    assert.equal(rows.rows[0]!.token_hash, ta.deps.tokenHasher.hash('verify_email', token));
  });

  test('a GET of the link (mail scanner, link preview, browser) never spends the token; the POST of the page verifies', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const token = await latestToken(ta, user.email, 'verify_email');
    // What scanners do: GET with and without Accept: text/html, several times, and HEAD.
    for (const headers of [HTML, { accept: 'application/json' }, {}, HTML]) {
      const link = await ta.app.inject({ method: 'GET', url: `${VERIFY}?token=${token}`, headers });
      assert.equal(link.statusCode, 303);
      assert.equal(link.headers.location, `/verify-email?token=${encodeURIComponent(token)}`);
      assert.equal(link.headers['cache-control'], 'no-store');
      assert.equal(link.headers['referrer-policy'], 'no-referrer');
      const page = await ta.app.inject({ method: 'GET', url: String(link.headers.location), headers });
      assert.equal(page.statusCode, 200);
      assert.match(page.body, /<form method="post" id="verify-form"/);
    }
    assert.notEqual((await ta.app.inject({ method: 'HEAD', url: `${VERIFY}?token=${token}` })).statusCode, 500);
    const before = await loginTokens(ta.app, user);
    const info = await ta.app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(before.access_token) });
    assert.equal(info.json().email_verified, false, 'no GET verified the address');
    // The person's click: the page's button POSTs the token, which still works.
    const ok = await ta.app.inject({ method: 'POST', url: VERIFY, payload: { token } });
    assert.equal(ok.statusCode, 200);
    assert.deepEqual(ok.json(), { email_verified: true });
    const again = await ta.app.inject({ method: 'POST', url: VERIFY, payload: { token } });
    assert.equal(again.statusCode, 400);
    assert.equal(again.json().code, 'invalid_or_expired_token');
  });

  test('the link\'s 303 carries no body and no JSON media type (the document declares none)', async (t) => {
    const ta = await suite.build(t);
    for (const url of [`${VERIFY}?token=some-token`, VERIFY]) {
      const link = await ta.app.inject({ method: 'GET', url });
      assert.equal(link.statusCode, 303, url);
      assert.equal(link.body, '', url);
      assert.equal(link.headers['content-type'], undefined, url);
      assert.match(String(link.headers.location), /^\/verify-email\?/, url);
    }
  });

  test('HEAD of the link (a mail scanner) does not consume the token', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const token = await latestToken(ta, user.email, 'verify_email');
    const head = await ta.app.inject({ method: 'HEAD', url: `${VERIFY}?token=${token}`, headers: HTML });
    // HEAD answers like the GET (a redirect to the confirmation page); neither spends the token.
    assert.equal(head.statusCode, 303);
    const res = await ta.app.inject({ method: 'POST', url: VERIFY, payload: { token } });
    assert.equal(res.statusCode, 200);
  });

  test('unknown, malformed and missing tokens: 400 / 422', async (t) => {
    const ta = await suite.build(t);
    for (const token of ['nope', 'A'.repeat(43), "' OR 1=1 --"]) {
      const res = await ta.app.inject({ method: 'POST', url: VERIFY, payload: { token } });
      assert.equal(res.statusCode, 400, token);
      assert.equal(res.json().code, 'invalid_or_expired_token');
    }
    const missing = await ta.app.inject({ method: 'POST', url: VERIFY, payload: {} });
    assert.equal(missing.statusCode, 422);
    assert.equal(missing.json().code, 'validation_failed');
  });

  test('the link expires after 24 hours', async (t) => {
    const ta = await suite.build(t);
    const early = await createUser(ta.app);
    const late = await createUser(ta.app);
    const earlyToken = await latestToken(ta, early.email, 'verify_email');
    const lateToken = await latestToken(ta, late.email, 'verify_email');
    ta.clock.advance(24 * 3600 - 1);
    assert.equal((await ta.app.inject({ method: 'POST', url: VERIFY, payload: { token: earlyToken } })).statusCode, 200);
    ta.clock.advance(2);
    const res = await ta.app.inject({ method: 'POST', url: VERIFY, payload: { token: lateToken } });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().code, 'invalid_or_expired_token');
  });

  test('10 concurrent uses of one token: exactly one succeeds', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const token = await latestToken(ta, user.email, 'verify_email');
    const results = await Promise.all(Array.from({ length: 10 }, () => ta.app.inject({ method: 'POST', url: VERIFY, payload: { token } })));
    assert.deepEqual(results.map((r) => r.statusCode).sort(), [200, 400, 400, 400, 400, 400, 400, 400, 400, 400]);
  });

  test('resend: 202 with one body for unknown, unverified and verified addresses; mail only for the unverified one', async (t) => {
    const ta = await suite.build(t);
    const unverified = await createUser(ta.app);
    const verified = await createUser(ta.app);
    await ta.app.inject({ method: 'POST', url: VERIFY, payload: { token: await latestToken(ta, verified.email, 'verify_email') } });
    const before = ta.mail.sent.length;

    const answers = [];
    for (const email of [`${uniqueName('ghost')}@example.com`, unverified.email.toUpperCase(), verified.email]) {
      answers.push(await ta.app.inject({ method: 'POST', url: RESEND, payload: { email } }));
    }
    for (const res of answers) {
      assert.equal(res.statusCode, 202);
      assert.equal(res.body, answers[0]!.body);
    }
    await settleAndDeliver(ta);
    const added = ta.mail.sent.slice(before);
    assert.equal(added.length, 1);
    assert.equal(added[0]!.to.toLowerCase(), unverified.email.toLowerCase());
    assert.equal(added[0]!.kind, 'verify_email');
  });

  test('resend: both links work until the address is verified; then the other is void', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const first = await latestToken(ta, user.email, 'verify_email');
    await ta.app.inject({ method: 'POST', url: RESEND, payload: { email: user.email } });
    const second = await latestToken(ta, user.email, 'verify_email');
    assert.notEqual(first, second);
    assert.equal((await ta.app.inject({ method: 'POST', url: VERIFY, payload: { token: second } })).statusCode, 200);
    const old = await ta.app.inject({ method: 'POST', url: VERIFY, payload: { token: first } });
    assert.equal(old.statusCode, 400);
    assert.equal(old.json().code, 'invalid_or_expired_token');
  });

  test('resend: per-requester-and-address and per-IP quotas answer 429 with Retry-After', async (t) => {
    const ta = await suite.build(t, { env: { RATE_LIMIT_EMAIL_MAX_PER_HOUR: '2', RATE_LIMIT_IP_MAX_REQUESTS_PER_MINUTE: '4' } });
    const user = await createUser(ta.app);
    const send = (email: string, ip = '198.51.100.1') => ta.app.inject({ method: 'POST', url: RESEND, payload: { email }, remoteAddress: ip });
    assert.equal((await send(user.email)).statusCode, 202);
    assert.equal((await send(user.email)).statusCode, 202);
    assert.equal((await send(user.email, '198.51.100.2')).statusCode, 202, 'another requester has its own count');
    const over = await send(user.email.toUpperCase());
    assert.equal(over.statusCode, 429);
    assert.equal(over.json().code, 'too_many_requests');
    assert.match(String(over.headers['retry-after']), /^\d+$/);

    const ip = '203.0.113.9';
    for (let i = 0; i < 4; i++) assert.equal((await send(`${uniqueName('x')}@example.com`, ip)).statusCode, 202);
    const ipOver = await send(`${uniqueName('x')}@example.com`, ip);
    assert.equal(ipOver.statusCode, 429);
    assert.ok(Number(ipOver.headers['retry-after']) >= 1);
  });

  test('resend: a malformed address is 422', async (t) => {
    const ta = await suite.build(t);
    const res = await ta.app.inject({ method: 'POST', url: RESEND, payload: { email: 'not-an-address' } });
    assert.equal(res.statusCode, 422);
    assert.equal(res.json().code, 'validation_failed');
  });

  test('without REQUIRE_EMAIL_VERIFICATION an unverified user logs in', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const res = await login(ta.app, { username: user.username, password: user.password });
    assert.equal(res.statusCode, 200);
  });

  test('mfa "email" at sign-up: e-mailed codes become the second factor once the address is verified', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app, { mfa: 'email' });
    const token = await latestToken(ta, user.email, 'verify_email');
    assert.equal((await login(ta.app, { username: user.username, password: PASSWORD })).statusCode, 200, 'not yet a factor');
    assert.equal((await ta.app.inject({ method: 'POST', url: VERIFY, payload: { token } })).statusCode, 200);
    const res = await login(ta.app, { username: user.username, password: PASSWORD });
    assert.equal(res.statusCode, 403);
    assert.equal(res.json().code, 'mfa_required');
    assert.ok(res.json().mfa_methods.includes('email'));
  });
});

describeWithApp('REQUIRE_EMAIL_VERIFICATION=true (accounts activated by the link, as in the original service)', (suite) => {
  const env = { REQUIRE_EMAIL_VERIFICATION: 'true' };

  test('sign-up creates an inactive account; login is 403 email_not_verified until the link is followed', async (t) => {
    const ta = await suite.build(t, { env });
    const username = uniqueName('pending');
    const signup = await ta.app.inject({ method: 'POST', url: '/api/v1/user', payload: { username, email: `${username}@example.com`, password1: PASSWORD, password2: PASSWORD } });
    assert.equal(signup.statusCode, 201);
    assert.equal(signup.json().is_active, false);
    assert.equal(signup.json().email_verified, false);
    assert.equal(signup.json().created_at, signup.json().updated_at);
    const email = `${username}@example.com`;

    const wrong = await login(ta.app, { username, password: 'not the password at all' });
    assert.equal(wrong.statusCode, 401, 'nothing is revealed before the password is proven');
    assert.equal(wrong.json().code, 'invalid_credentials');
    const blocked = await login(ta.app, { username, password: PASSWORD });
    assert.equal(blocked.statusCode, 403);
    assert.equal(blocked.json().code, 'email_not_verified');
    assert.equal(blocked.json().access_token, undefined);
    const byMail = await login(ta.app, { username: email, password: PASSWORD });
    assert.equal(byMail.json().code, 'email_not_verified');
    assert.equal((await ta.app.inject({ method: 'GET', url: `/api/v1/user/${username}` })).json().is_active, false);

    const token = await latestToken(ta, email, 'verify_email');
    const verified = await ta.app.inject({ method: 'POST', url: VERIFY, payload: { token } });
    assert.equal(verified.statusCode, 200);

    const ok = await login(ta.app, { username, password: PASSWORD });
    assert.equal(ok.statusCode, 200);
    const info = await ta.app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(ok.json().access_token) });
    assert.equal(info.json().is_active, true);
    assert.equal(info.json().email_verified, true);
  });

  test('a failed sign-up queues no mail (the mail is part of the sign-up transaction)', async (t) => {
    const ta = await suite.build(t, { env });
    const user = await createUser(ta.app);
    await ta.deliverMail();
    const before = ta.mail.sent.length;
    const dup = await ta.app.inject({ method: 'POST', url: '/api/v1/user', payload: { username: uniqueName(), email: user.email, password1: PASSWORD, password2: PASSWORD } });
    assert.equal(dup.statusCode, 409);
    await ta.deliverMail();
    assert.equal(ta.mail.sent.length, before);
  });

  test('resend to a pending account mails a working link', async (t) => {
    const ta = await suite.build(t, { env });
    const user = await createUser(ta.app);
    await ta.deliverMail();
    assert.equal((await ta.app.inject({ method: 'POST', url: RESEND, payload: { email: user.email } })).statusCode, 202);
    const token = await latestToken(ta, user.email, 'verify_email');
    assert.equal(mailsTo(ta, user.email, 'verify_email').length, 2);
    assert.equal((await ta.app.inject({ method: 'POST', url: VERIFY, payload: { token } })).statusCode, 200);
    assert.equal((await login(ta.app, { username: user.username, password: PASSWORD })).statusCode, 200);
  });
});
