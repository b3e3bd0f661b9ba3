import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PASSWORD, createUser, describeWithApp, uniqueName } from '../helpers/app.ts';
import { AppError } from '../../src/errors.ts';
import { registerUser } from '../../src/services/register-user.ts';
import { SYSTEM_CONTEXT } from '../../src/services/audit/record.ts';

describeWithApp('POST /api/v1/user and GET /api/v1/user/{username}', (suite) => {
  test('creates a user: 201 with the private profile, never the password hash', async (t) => {
    const { app } = await suite.build(t);
    const username = uniqueName('Alice');
    const res = await app.inject({ method: 'POST', url: '/api/v1/user', payload: { username, email: `${username}@Example.com`, password1: PASSWORD, password2: PASSWORD, full_name: 'Alice L', profile: { locale: 'en' } } });
    assert.equal(res.statusCode, 201);
    const body = res.json();
    assert.deepEqual(Object.keys(body).sort(), ['created_at', 'email', 'email_verified', 'is_active', 'updated_at', 'username', 'uuid']);
    assert.match(body.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(body.username, username);
    assert.equal(body.email_verified, false);
    assert.equal(body.is_active, true);
    assert.match(body.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(!res.body.includes('argon2'));
  });

  test('public profile shows only public fields, case-insensitively', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const res = await app.inject({ method: 'GET', url: `/api/v1/user/${user.username.toUpperCase()}` });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(Object.keys(res.json()).sort(), ['created_at', 'is_active', 'updated_at', 'username']);
    assert.equal(res.json().username, user.username);
  });

  test('unknown user → 404 user_not_found', async (t) => {
    const { app } = await suite.build(t);
    const res = await app.inject({ method: 'GET', url: '/api/v1/user/nobody_here' });
    assert.equal(res.statusCode, 404);
    assert.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8');
    assert.equal(res.json().code, 'user_not_found');
  });

  test('username and e-mail are unique case-insensitively: 409 username_taken / email_taken', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const again = await app.inject({ method: 'POST', url: '/api/v1/user', payload: { username: user.username.toUpperCase(), email: `other_${user.email}`, password1: PASSWORD, password2: PASSWORD } });
    assert.equal(again.statusCode, 409);
    assert.equal(again.json().code, 'username_taken');
    const mail = await app.inject({ method: 'POST', url: '/api/v1/user', payload: { username: uniqueName(), email: user.email.toUpperCase(), password1: PASSWORD, password2: PASSWORD } });
    assert.equal(mail.statusCode, 409);
    assert.equal(mail.json().code, 'email_taken');
  });

  test('concurrent sign-ups with one username: exactly one 201, the rest 409', async (t) => {
    const { app } = await suite.build(t);
    const username = uniqueName('race');
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => app.inject({ method: 'POST', url: '/api/v1/user', payload: { username, email: `${username}${i}@example.com`, password1: PASSWORD, password2: PASSWORD } })),
    );
    assert.deepEqual(results.map((r) => r.statusCode).sort(), [201, 409, 409, 409, 409, 409]);
    for (const r of results.filter((r) => r.statusCode === 409)) assert.equal(r.json().code, 'username_taken');
  });

  for (const [label, patch, field] of [
    ['mismatched passwords', { password2: 'another long passphrase' }, 'password2'],
    ['a common password', { password1: 'password123', password2: 'password123' }, 'password1'],
    ['a password made of the username', { password1: 'USERNAME', password2: 'USERNAME' }, 'password1'],
    ['a too short password', { password1: 'a7#Kp', password2: 'a7#Kp' }, 'password1'],
    ['a bad e-mail', { email: 'not-an-email' }, 'email'],
    ['a bad username', { username: 'no spaces allowed' }, 'username'],
    ['a too short username', { username: 'ab' }, 'username'],
    ['an oversized profile', { profile: { blob: 'x'.repeat(5000) } }, 'profile'],
    ['an unknown mfa method', { mfa: 'sms' }, 'mfa'],
  ] as const) {
    test(`${label} → 422 validation_failed naming ${field}`, async (t) => {
      const { app } = await suite.build(t);
      const username = uniqueName('val');
      const payload: Record<string, unknown> = { username, email: `${username}@example.com`, password1: PASSWORD, password2: PASSWORD };
      Object.assign(payload, patch);
      if (payload.password1 === 'USERNAME') payload.password1 = payload.password2 = `${username}`;
      const res = await app.inject({ method: 'POST', url: '/api/v1/user', payload });
      assert.equal(res.statusCode, 422, res.body);
      assert.equal(res.json().code, 'validation_failed');
      assert.ok(res.json().errors.some((e: { field: string }) => e.field === field), res.body);
      const check = await app.inject({ method: 'GET', url: `/api/v1/user/${username}` });
      assert.equal(check.statusCode, 404, 'nothing was created');
    });
  }

  test('addresses the API refuses are refused for callers without its schema too (the CLI): no second recipient', async (t) => {
    const ta = await suite.build(t);
    for (const email of ['x,attacker@evil.example', 'a;b@example.com', '"quoted"@example.com', 'a b@example.com', 'x@evil.example>, y@example.com']) {
      const api = await ta.app.inject({ method: 'POST', url: '/api/v1/user', payload: { username: uniqueName(), email, password1: PASSWORD, password2: PASSWORD } });
      assert.equal(api.statusCode, 422, email);
      await assert.rejects(
        registerUser(ta.deps, { username: uniqueName(), email, password1: PASSWORD, password2: PASSWORD }, SYSTEM_CONTEXT),
        (e: unknown) => e instanceof AppError && e.code === 'validation_failed' && e.errors?.[0]?.field === 'email',
        email,
      );
    }
    const ok = await registerUser(ta.deps, { username: uniqueName(), email: 'first.last+tag@mail.example.com', password1: PASSWORD, password2: PASSWORD }, SYSTEM_CONTEXT);
    assert.equal(ok.user.email, 'first.last+tag@mail.example.com');
  });

  test('validation messages are written for people, one per field', async (t) => {
    const { app } = await suite.build(t);
    const res = await app.inject({ method: 'POST', url: '/api/v1/user', payload: { username: 'no spaces', email: 'nope', password1: PASSWORD, mfa: 'sms' } });
    assert.equal(res.statusCode, 422);
    const errors = Object.fromEntries(res.json().errors.map((e: { field: string; message: string }) => [e.field, e.message]));
    assert.deepEqual(errors, {
      username: 'may contain only letters, digits, "_", "." and "-" (3–32 characters)',
      email: 'must be a valid e-mail address',
      password2: 'is required',
      mfa: 'must be one of: totp, email',
    });
    assert.doesNotMatch(res.body, /must match pattern|\^\[/);
  });

  test('mfa "totp" at sign-up returns a pending TOTP secret', async (t) => {
    const { app } = await suite.build(t);
    const username = uniqueName('mfa');
    const res = await app.inject({ method: 'POST', url: '/api/v1/user', payload: { username, email: `${username}@example.com`, password1: PASSWORD, password2: PASSWORD, mfa: 'totp' } });
    assert.equal(res.statusCode, 201);
    const { totp } = res.json();
    assert.match(totp.otpauth_uri, new RegExp(`^otpauth://totp/Twofold:${username}\\?secret=[A-Z2-7]{32}&issuer=Twofold&algorithm=SHA1&digits=6&period=30$`));
    assert.match(totp.secret, /^[A-Z2-7]{32}$/);
    assert.ok(Buffer.from(totp.qr_code_png_base64, 'base64').subarray(1, 4).toString() === 'PNG');
  });
});
