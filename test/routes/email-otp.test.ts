import assert from 'node:assert/strict';
import { test } from 'node:test';
import { enableEmailOtpFactor, findEmailOtp, isEmailOtpEnabled } from '../../src/db/repositories/email-otps.ts';
import { findUserById } from '../../src/db/repositories/users.ts';
import { enableEmailOtpAfterVerification } from '../../src/services/email-otp.ts';
import { SYSTEM_CONTEXT } from '../../src/services/audit/record.ts';
import { bearer, createUser, describeWithApp, enableTotp, enableTotpFromSession, login, loginTokens, type TestApp, type TestUser } from '../helpers/app.ts';
import { del, enableEmailOtp, get, lastCode, loginMfa, loginWithEmailCode, mailsOf, mfaChallenge, post, requestLoginCode, verifyEmail, wrongCode } from '../helpers/factors.ts';

const ENABLE = '/api/v1/auth-email-otp/enable';
const CONFIRM = '/api/v1/auth-email-otp/confirm';
const EMAIL_OTP = '/api/v1/auth-email-otp';

/** A user with e-mailed codes on, and the aal1 token that turned them on. */
async function userWithEmailOtp(t: TestApp): Promise<{ user: TestUser; aal1: string; backupCodes: string[] }> {
  const user = await createUser(t.app);
  const aal1 = (await loginTokens(t.app, user)).access_token;
  const backupCodes = await enableEmailOtp(t, user, aal1);
  return { user, aal1, backupCodes };
}

function payload(token: string): { sub: string; aal: string; amr: string[] } {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8'));
}

describeWithApp('E-mailed codes', (suite) => {
  test('enable needs a verified address (422 email_not_verified) and sends nothing before', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { access_token } = await loginTokens(app.app, user);
    const res = await post(app, ENABLE, access_token);
    assert.equal(res.statusCode, 422);
    assert.equal(res.json().code, 'email_not_verified');
    assert.equal((await mailsOf(app, 'email_otp_enable', user.email)).length, 0);
    assert.equal(await findEmailOtp(app.deps.db, user.uuid, 'enable'), undefined);
    const anonymous = await post(app, ENABLE, undefined);
    assert.equal(anonymous.statusCode, 401);
  });

  test('enable mails a 6-digit code stored only as a digest; confirm turns the factor on with 10 backup codes', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { access_token } = await loginTokens(app.app, user);
    await verifyEmail(app, user);

    const res = await post(app, ENABLE, access_token);
    assert.equal(res.statusCode, 202);
    assert.deepEqual(res.json(), { expires_in: 600 });
    const code = await lastCode(app, 'email_otp_enable', user.email);
    assert.match(code, /^\d{6}$/);
    const row = await findEmailOtp(app.deps.db, user.uuid, 'enable');
    assert.ok(row && !row.code_hash.includes(code) && row.code_hash.length === 64, 'stored as an HMAC digest');
    assert.equal(row.expires_at.getTime() - app.clock().getTime(), 600_000, 'lives 10 minutes');
    assert.equal(await isEmailOtpEnabled(app.deps.db, user.uuid), false, 'not on before confirmation');

    const confirm = await post(app, CONFIRM, access_token, { code });
    assert.equal(confirm.statusCode, 200, confirm.body);
    assert.equal(confirm.headers['cache-control'], 'no-store');
    const codes: string[] = confirm.json().backup_codes;
    assert.equal(codes.length, 10);
    assert.equal(new Set(codes).size, 10);
    assert.equal(await findEmailOtp(app.deps.db, user.uuid, 'enable'), undefined, 'the code is used up');

    const me = (await get(app, '/api/v1/auth-jwt/user-info', access_token)).json();
    assert.deepEqual(me.mfa, { totp: false, email: true, passkeys: 0, backup_codes_remaining: 10 });
    const added = await mailsOf(app, 'factor_added', user.email);
    assert.equal(added.length, 1);
    assert.match(added[0]!.text, /sign-in codes by e-mail/i);

    const challenge = await mfaChallenge(app, user);
    assert.deepEqual(challenge.mfa_methods, ['email', 'backup_code']);
    assert.equal(challenge.mfa_expires_in, 300);
  });

  test('already on: enable and confirm are 409 email_otp_already_enabled', async (t) => {
    const app = await suite.build(t);
    const { aal1 } = await userWithEmailOtp(app);
    const enable = await post(app, ENABLE, aal1);
    assert.equal(enable.statusCode, 409);
    assert.equal(enable.json().code, 'email_otp_already_enabled');
    const confirm = await post(app, CONFIRM, aal1, { code: '123456' });
    assert.equal(confirm.statusCode, 409);
    assert.equal(confirm.json().code, 'email_otp_already_enabled');
  });

  test('a wrong code is 401 and its attempt stays counted; a code never sent is 401 too', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { access_token } = await loginTokens(app.app, user);
    await verifyEmail(app, user);

    const never = await post(app, CONFIRM, access_token, { code: '123456' });
    assert.equal(never.statusCode, 401);
    assert.equal(never.json().code, 'invalid_security_code');

    await post(app, ENABLE, access_token);
    const code = await lastCode(app, 'email_otp_enable', user.email);
    const wrong = await post(app, CONFIRM, access_token, { code: wrongCode(code) });
    assert.equal(wrong.statusCode, 401);
    assert.equal(wrong.json().code, 'invalid_security_code');
    assert.equal(wrong.json().backup_codes, undefined);
    const garbage = await post(app, CONFIRM, access_token, { code: 'abc' });
    assert.equal(garbage.statusCode, 401);
    assert.equal((await findEmailOtp(app.deps.db, user.uuid, 'enable'))?.attempts, 2, 'failed requests still counted');
    assert.equal(await isEmailOtpEnabled(app.deps.db, user.uuid), false);
    assert.equal((await mailsOf(app, 'factor_added', user.email)).length, 0);

    const right = await post(app, CONFIRM, access_token, { code });
    assert.equal(right.statusCode, 200, 'fewer than 5 wrong tries leave the code alive');
  });

  test('5 wrong tries kill the code, and a resend does not reset the count; a new code after that does', async (t) => {
    const app = await suite.build(t, { env: { EMAIL_OTP_COOLDOWN: '0' } });
    const user = await createUser(app.app);
    const { access_token } = await loginTokens(app.app, user);
    await verifyEmail(app, user);

    await post(app, ENABLE, access_token);
    let code = await lastCode(app, 'email_otp_enable', user.email);
    for (let i = 0; i < 3; i++) assert.equal((await post(app, CONFIRM, access_token, { code: wrongCode(code) })).statusCode, 401);
    const resend = await post(app, ENABLE, access_token);
    assert.equal(resend.statusCode, 202);
    const resent = await lastCode(app, 'email_otp_enable', user.email);
    assert.equal((await findEmailOtp(app.deps.db, user.uuid, 'enable'))?.attempts, 3, 'the resend kept the count');
    const oldCode = await post(app, CONFIRM, access_token, { code });
    assert.equal(oldCode.statusCode, 401, 'a resend replaces the code');
    code = resent;
    assert.equal((await post(app, CONFIRM, access_token, { code: wrongCode(code) })).statusCode, 401);
    assert.equal((await findEmailOtp(app.deps.db, user.uuid, 'enable'))?.attempts, 5);

    const dead = await post(app, CONFIRM, access_token, { code });
    assert.equal(dead.statusCode, 401, 'the right code after 5 wrong tries is refused');
    assert.equal(dead.json().code, 'invalid_security_code');
    assert.equal(await isEmailOtpEnabled(app.deps.db, user.uuid), false);

    // As the error says, a new code then works: the used-up count starts afresh with it (it stayed
    // dead while new codes were asked for, each moving its expiry on).
    assert.equal((await post(app, ENABLE, access_token)).statusCode, 202);
    assert.equal((await findEmailOtp(app.deps.db, user.uuid, 'enable'))?.attempts, 0);
    const fresh = await lastCode(app, 'email_otp_enable', user.email);
    const confirmed = await post(app, CONFIRM, access_token, { code: fresh });
    assert.equal(confirmed.statusCode, 200, confirmed.body);
    assert.equal(await isEmailOtpEnabled(app.deps.db, user.uuid), true);
  });

  test('a code expires after 10 minutes; a new one after expiry starts afresh', async (t) => {
    const app = await suite.build(t, { env: { EMAIL_OTP_COOLDOWN: '0' } });
    const user = await createUser(app.app);
    const { access_token } = await loginTokens(app.app, user);
    await verifyEmail(app, user);

    await post(app, ENABLE, access_token);
    const code = await lastCode(app, 'email_otp_enable', user.email);
    app.clock.advance(601);
    // A fresh login: the session's own window for a first factor (10 minutes) is not what is tested here.
    const later = (await loginTokens(app.app, user)).access_token;
    const late = await post(app, CONFIRM, later, { code });
    assert.equal(late.statusCode, 401);
    assert.equal(late.json().code, 'invalid_security_code');

    await post(app, ENABLE, later);
    assert.equal((await findEmailOtp(app.deps.db, user.uuid, 'enable'))?.attempts, 0, 'the expired code and its count are gone');
    const fresh = await lastCode(app, 'email_otp_enable', user.email);
    app.clock.advance(599);
    const inTime = await post(app, CONFIRM, later, { code: fresh });
    assert.equal(inTime.statusCode, 200, 'still valid just before 10 minutes');
  });

  test('enable is rate limited: a cooldown and an hourly cap answer 429 with Retry-After', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { access_token } = await loginTokens(app.app, user);
    await verifyEmail(app, user);
    assert.equal((await post(app, ENABLE, access_token)).statusCode, 202);
    const again = await post(app, ENABLE, access_token);
    assert.equal(again.statusCode, 429);
    assert.equal(again.json().code, 'too_many_requests');
    const retry = Number(again.headers['retry-after']);
    assert.ok(retry >= 1 && retry <= 60, `Retry-After ${retry}`);
    assert.equal((await mailsOf(app, 'email_otp_enable', user.email)).length, 1, 'no second mail');

    const capped = await suite.build(t, { env: { EMAIL_OTP_COOLDOWN: '0' } });
    const other = await createUser(capped.app);
    const token = (await loginTokens(capped.app, other)).access_token;
    await verifyEmail(capped, other);
    for (let i = 0; i < 5; i++) assert.equal((await post(capped, ENABLE, token)).statusCode, 202, `send ${i + 1}`);
    const over = await post(capped, ENABLE, token);
    assert.equal(over.statusCode, 429);
    const hourRetry = Number(over.headers['retry-after']);
    assert.ok(hourRetry > 60 && hourRetry <= 3600, `Retry-After ${hourRetry}`);
    assert.equal((await mailsOf(capped, 'email_otp_enable', other.email)).length, 5);
  });

  test('with TOTP on, an aal1 session cannot add e-mailed codes (step-up)', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const aal1 = (await loginTokens(app.app, user)).access_token;
    // The session that turned TOTP on stays live (aal1); a TOTP login gives the aal2 one.
    const { tokens } = await enableTotpFromSession(app, user, aal1);
    await verifyEmail(app, user);
    const refused = await post(app, ENABLE, aal1);
    assert.equal(refused.statusCode, 403);
    assert.equal(refused.json().code, 'step_up_required');
    assert.equal((await mailsOf(app, 'email_otp_enable', user.email)).length, 0);
    const allowed = await post(app, ENABLE, tokens.access_token);
    assert.equal(allowed.statusCode, 202);
    const code = await lastCode(app, 'email_otp_enable', user.email);
    assert.equal((await post(app, CONFIRM, aal1, { code })).statusCode, 403);
    const confirmed = await post(app, CONFIRM, tokens.access_token, { code });
    assert.equal(confirmed.statusCode, 200);
    assert.deepEqual(confirmed.json().backup_codes, [], 'confirming TOTP already issued the set; it is not replaced');
  });

  test('two-step login with an e-mailed code: body or Bearer token, aal2 tokens, code single use', async (t) => {
    const app = await suite.build(t, { env: { EMAIL_OTP_COOLDOWN: '0' } });
    const { user } = await userWithEmailOtp(app);
    const { mfa_token } = await mfaChallenge(app, user);

    const viaBearer = await app.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/mfa/email-code', headers: bearer(mfa_token) });
    assert.equal(viaBearer.statusCode, 202, viaBearer.body);
    assert.deepEqual(viaBearer.json(), { expires_in: 600 });
    const mails = await mailsOf(app, 'email_otp_login', user.email);
    assert.equal(mails.length, 1);
    const sent = await requestLoginCode(app, mfa_token);
    assert.equal(sent.statusCode, 202);
    const code = await lastCode(app, 'email_otp_login', user.email);

    const wrong = await loginMfa(app, mfa_token, 'email', wrongCode(code));
    assert.equal(wrong.statusCode, 401);
    assert.equal(wrong.json().code, 'invalid_security_code');
    assert.equal(wrong.json().access_token, undefined);
    assert.equal(wrong.headers['set-cookie'], undefined);

    const ok = await loginMfa(app, mfa_token, 'email', code);
    assert.equal(ok.statusCode, 200, ok.body);
    const claims = payload(ok.json().access_token);
    assert.equal(claims.sub, user.uuid);
    assert.equal(claims.aal, 'aal2');
    assert.ok(claims.amr.includes('otp') && claims.amr.includes('mfa'));

    const again = await loginMfa(app, mfa_token, 'email', code);
    assert.equal(again.statusCode, 401, 'used once');
    const other = await mfaChallenge(app, user);
    const elsewhere = await loginMfa(app, other.mfa_token, 'email', code);
    assert.equal(elsewhere.statusCode, 401, 'a code belongs to its challenge');
    assert.equal(elsewhere.json().code, 'invalid_security_code');
  });

  test('a login code expires after 10 minutes even on a longer-lived challenge', async (t) => {
    const app = await suite.build(t, { env: { EMAIL_OTP_COOLDOWN: '0', MFA_CHALLENGE_TTL: '1200' } });
    const { user } = await userWithEmailOtp(app);
    const { mfa_token } = await mfaChallenge(app, user);
    await requestLoginCode(app, mfa_token);
    const code = await lastCode(app, 'email_otp_login', user.email);
    app.clock.advance(601);
    const late = await loginMfa(app, mfa_token, 'email', code);
    assert.equal(late.statusCode, 401);
    assert.equal(late.json().code, 'invalid_security_code');
    await requestLoginCode(app, mfa_token);
    const ok = await loginMfa(app, mfa_token, 'email', await lastCode(app, 'email_otp_login', user.email));
    assert.equal(ok.statusCode, 200);
  });

  test('email-code: 400 method_not_enabled without the factor, 401 for bad tokens, 429 within the cooldown', async (t) => {
    const app = await suite.build(t);
    const totpUser = await createUser(app.app);
    await enableTotp(app, totpUser);
    const totpChallenge = await mfaChallenge(app, totpUser);
    const notEnabled = await requestLoginCode(app, totpChallenge.mfa_token);
    assert.equal(notEnabled.statusCode, 400);
    assert.equal(notEnabled.json().code, 'method_not_enabled');
    assert.equal((await mailsOf(app, 'email_otp_login', totpUser.email)).length, 0);

    const missing = await app.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/mfa/email-code', payload: {} });
    assert.equal(missing.statusCode, 401);
    assert.equal(missing.json().code, 'invalid_token');
    const garbage = await requestLoginCode(app, 'nope');
    assert.equal(garbage.statusCode, 401);
    assert.equal(garbage.json().code, 'invalid_token');

    const { user, aal1 } = await userWithEmailOtp(app);
    const asAccess = await requestLoginCode(app, aal1);
    assert.equal(asAccess.statusCode, 401, 'an access token is no MFA token');
    assert.equal(asAccess.json().code, 'invalid_token');

    const { mfa_token } = await mfaChallenge(app, user);
    assert.equal((await requestLoginCode(app, mfa_token)).statusCode, 202);
    const second = await mfaChallenge(app, user);
    const tooSoon = await requestLoginCode(app, second.mfa_token);
    assert.equal(tooSoon.statusCode, 429, 'a new challenge does not get around the cooldown');
    assert.ok(Number(tooSoon.headers['retry-after']) >= 1);
    assert.equal((await mailsOf(app, 'email_otp_login', user.email)).length, 1);

    app.clock.advance(301);
    const expired = await requestLoginCode(app, mfa_token);
    assert.equal(expired.statusCode, 401, 'an expired challenge gets no code');
    assert.equal(expired.json().code, 'invalid_token');
  });

  test('the login code hourly cap is per user and answers 429 with Retry-After', async (t) => {
    const app = await suite.build(t, { env: { EMAIL_OTP_COOLDOWN: '0', EMAIL_OTP_MAX_PER_HOUR: '3' } });
    const { user } = await userWithEmailOtp(app); // the enable code was the first of the hour
    const { mfa_token } = await mfaChallenge(app, user);
    assert.equal((await requestLoginCode(app, mfa_token)).statusCode, 202);
    assert.equal((await requestLoginCode(app, mfa_token)).statusCode, 202);
    const over = await requestLoginCode(app, mfa_token);
    assert.equal(over.statusCode, 429);
    assert.equal(over.json().code, 'too_many_requests');
    assert.ok(Number(over.headers['retry-after']) > 60);
  });

  test('DELETE: 409 when off, 403 for aal1, 204 for aal2; mailed codes and, as the last factor, backup codes go', async (t) => {
    const app = await suite.build(t, { env: { EMAIL_OTP_COOLDOWN: '0' } });
    const plain = await createUser(app.app);
    const plainToken = (await loginTokens(app.app, plain)).access_token;
    const off = await del(app, EMAIL_OTP, plainToken);
    assert.equal(off.statusCode, 409);
    assert.equal(off.json().code, 'email_otp_not_enabled');

    const { user, aal1, backupCodes } = await userWithEmailOtp(app);
    const stepUp = await del(app, EMAIL_OTP, aal1);
    assert.equal(stepUp.statusCode, 403);
    assert.equal(stepUp.json().code, 'step_up_required');
    assert.equal(await isEmailOtpEnabled(app.deps.db, user.uuid), true);

    const aal2 = (await loginWithEmailCode(app, user)).access_token;
    // A challenge with a code already mailed, opened before the factor goes.
    const pending = await mfaChallenge(app, user);
    await requestLoginCode(app, pending.mfa_token);
    const pendingCode = await lastCode(app, 'email_otp_login', user.email);

    const res = await del(app, EMAIL_OTP, aal2);
    assert.equal(res.statusCode, 204);
    assert.equal(await isEmailOtpEnabled(app.deps.db, user.uuid), false);
    const me = (await get(app, '/api/v1/auth-jwt/user-info', aal2)).json();
    assert.deepEqual(me.mfa, { totp: false, email: false, passkeys: 0, backup_codes_remaining: 0 });
    const removed = await mailsOf(app, 'factor_removed', user.email);
    assert.equal(removed.length, 1);
    assert.match(removed[0]!.text, /sign-in codes by e-mail/i);

    const stale = await loginMfa(app, pending.mfa_token, 'email', pendingCode);
    assert.equal(stale.statusCode, 401, 'a code mailed before no longer works');
    const oldBackup = await login(app.app, { username: user.username, password: user.password, backup_code: backupCodes[0] });
    assert.equal(oldBackup.statusCode, 401);
    const plainLogin = await login(app.app, { username: user.username, password: user.password });
    assert.equal(plainLogin.statusCode, 200);
    assert.equal((await del(app, EMAIL_OTP, aal2)).statusCode, 409);
  });

  test('MFA_METHODS=totp: e-mailed codes cannot be enabled, are not offered at login, and send nothing', async (t) => {
    const app = await suite.build(t, { env: { MFA_METHODS: 'totp' } });
    const user = await createUser(app.app);
    const { access_token } = await loginTokens(app.app, user);
    await verifyEmail(app, user);
    const enable = await post(app, ENABLE, access_token);
    assert.equal(enable.statusCode, 400);
    assert.equal(enable.json().code, 'method_not_enabled');
    const confirm = await post(app, CONFIRM, access_token, { code: '123456' });
    assert.equal(confirm.statusCode, 400);

    // A user who turned e-mailed codes on while the operator still offered them.
    await enableTotpFromSession(app, user, access_token);
    await app.deps.db.transaction((tx) => enableEmailOtpFactor(tx, user.uuid, app.clock()));
    const challenge = await mfaChallenge(app, user);
    assert.deepEqual(challenge.mfa_methods, ['totp', 'backup_code']);
    const send = await requestLoginCode(app, challenge.mfa_token);
    assert.equal(send.statusCode, 400);
    assert.equal(send.json().code, 'method_not_enabled');
    const viaEmail = await loginMfa(app, challenge.mfa_token, 'email', '123456');
    assert.equal(viaEmail.statusCode, 401);
    assert.equal((await mailsOf(app, 'email_otp_login', user.email)).length, 0);
    const me = (await get(app, '/api/v1/auth-jwt/user-info', access_token)).json();
    assert.equal(me.mfa.email, false);

    const emailOnly = await createUser(app.app);
    await app.deps.db.transaction((tx) => enableEmailOtpFactor(tx, emailOnly.uuid, app.clock()));
    const noMfa = await login(app.app, { username: emailOnly.username, password: emailOnly.password });
    // Switching a method off never lowers a user's protection (issue 7, item 5): the password alone is not enough.
    assert.equal(noMfa.statusCode, 403, 'a factor the operator switched off still protects the account');
    assert.equal(noMfa.json().code, 'mfa_required');
    assert.equal(noMfa.json().access_token, undefined);
  });

  test('sign-up with mfa "email": verification turns e-mailed codes on (no backup codes yet) and mails a notice', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app, { mfa: 'email' });
    assert.equal(await isEmailOtpEnabled(app.deps.db, user.uuid), false, 'not before the address is verified');
    const row = await findUserById(app.deps.db, user.uuid);
    assert.ok(row);
    assert.equal(await app.deps.db.transaction((tx) => enableEmailOtpAfterVerification(app.deps, tx, row, SYSTEM_CONTEXT)), true);
    assert.equal(await app.deps.db.transaction((tx) => enableEmailOtpAfterVerification(app.deps, tx, row, SYSTEM_CONTEXT)), false, 'once');
    assert.equal(await isEmailOtpEnabled(app.deps.db, user.uuid), true);
    assert.equal((await mailsOf(app, 'factor_added', user.email)).length, 1);
    const challenge = await mfaChallenge(app, user);
    assert.deepEqual(challenge.mfa_methods, ['email'], 'no backup codes were issued');

    const plain = await createUser(app.app);
    const plainRow = await findUserById(app.deps.db, plain.uuid);
    assert.ok(plainRow);
    assert.equal(await app.deps.db.transaction((tx) => enableEmailOtpAfterVerification(app.deps, tx, plainRow, SYSTEM_CONTEXT)), false);
    assert.equal(await isEmailOtpEnabled(app.deps.db, plain.uuid), false);
  });
});
