import assert from 'node:assert/strict';
import { test } from 'node:test';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { findTotpFactor } from '../../src/db/repositories/totp-factors.ts';
import { bearer, createUser, describeWithApp, enableTotp, login, loginTokens, nextTotpStep, type TestApp, type TestUser } from '../helpers/app.ts';
import { del, enableEmailOtp, get, mailsOf, post } from '../helpers/factors.ts';

const ENROLL = '/api/v1/auth-totp/enroll';
const CONFIRM = '/api/v1/auth-totp/confirm';
const TOTP = '/api/v1/auth-totp';
const BACKUP_CODE_FORMAT = /^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$/;

/** Enrols through /enroll (JSON form) and returns the pending secret. */
async function enroll(t: TestApp, token: string): Promise<string> {
  const res = await post(t, ENROLL, token, undefined, { accept: 'application/json' });
  assert.equal(res.statusCode, 201, res.body);
  return res.json().secret;
}

/** A user with TOTP confirmed through /enroll + /confirm by an aal1 session; returns its secret, codes and an aal2 login. */
async function userWithConfirmedTotp(t: TestApp): Promise<{ user: TestUser; secret: string; backupCodes: string[]; aal1: string; aal2: string }> {
  const user = await createUser(t.app);
  const aal1 = (await loginTokens(t.app, user)).access_token;
  const secret = await enroll(t, aal1);
  const res = await post(t, CONFIRM, aal1, { security_code: totpCodeAt(secret, t.clock()) });
  assert.equal(res.statusCode, 200, res.body);
  nextTotpStep(t.clock);
  const loggedIn = await login(t.app, { username: user.username, password: user.password, security_code: totpCodeAt(secret, t.clock()) });
  assert.equal(loggedIn.statusCode, 200, loggedIn.body);
  return { user, secret, backupCodes: res.json().backup_codes, aal1, aal2: loggedIn.json().access_token };
}

describeWithApp('TOTP management', (suite) => {
  test('enroll answers PNG by default, SVG and JSON on request, never cacheable; no pending secret is active', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { access_token } = await loginTokens(app.app, user);

    const png = await post(app, ENROLL, access_token);
    assert.equal(png.statusCode, 201);
    assert.equal(png.headers['content-type'], 'image/png');
    assert.equal(png.headers['cache-control'], 'no-store');
    assert.deepEqual([...png.rawPayload.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);

    const svg = await post(app, ENROLL, access_token, undefined, { accept: 'image/svg+xml' });
    assert.equal(svg.statusCode, 201);
    assert.match(String(svg.headers['content-type']), /^image\/svg\+xml/);
    assert.match(svg.body, /<svg/);

    const json = await post(app, ENROLL, access_token, undefined, { accept: 'application/json' });
    assert.equal(json.statusCode, 201);
    const body = json.json();
    assert.match(body.secret, /^[A-Z2-7]{32}$/);
    assert.equal(body.otpauth_uri, `otpauth://totp/Twofold:${user.username}?secret=${body.secret}&issuer=Twofold&algorithm=SHA1&digits=6&period=30`);
    assert.ok(body.qr_code_png_base64.length > 100);

    const row = await findTotpFactor(app.deps.db, user.uuid);
    assert.equal(row?.active_secret, null, 'enrolling activates nothing');
    assert.ok(row?.pending_secret && !row.pending_secret.includes(body.secret), 'the pending secret is stored sealed');
    const me = await get(app, '/api/v1/auth-jwt/user-info', access_token);
    assert.equal(me.json().mfa.totp, false);
    const plain = await login(app.app, { username: user.username, password: user.password });
    assert.equal(plain.statusCode, 200, 'a pending secret does not demand a second factor');
  });

  test('enroll and confirm need authentication; an unacceptable Accept is 406', async (t) => {
    const app = await suite.build(t);
    const anonymous = await post(app, ENROLL, undefined);
    assert.equal(anonymous.statusCode, 401);
    assert.equal(anonymous.json().code, 'authentication_required');
    const confirm = await post(app, CONFIRM, undefined, { security_code: '123456' });
    assert.equal(confirm.statusCode, 401);
    const remove = await app.app.inject({ method: 'DELETE', url: TOTP, payload: { password: 'x' } });
    assert.equal(remove.statusCode, 401);
    const bogus = await post(app, ENROLL, 'not-a-token');
    assert.equal(bogus.statusCode, 401);
    assert.equal(bogus.json().code, 'invalid_token');

    const user = await createUser(app.app);
    const { access_token } = await loginTokens(app.app, user);
    const res = await post(app, ENROLL, access_token, undefined, { accept: 'text/html' });
    assert.equal(res.statusCode, 406);
    assert.equal(res.json().code, 'not_acceptable');
    assert.equal((await findTotpFactor(app.deps.db, user.uuid)), undefined, 'nothing stored for a refused request');
  });

  test('a cookie-authenticated enroll from a foreign origin is refused (CSRF)', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { access_token } = await loginTokens(app.app, user);
    const res = await app.app.inject({ method: 'POST', url: ENROLL, cookies: { access_token }, headers: { origin: 'https://evil.example', accept: 'application/json' } });
    assert.equal(res.statusCode, 403);
    assert.equal(res.json().code, 'csrf_rejected');
    assert.equal(await findTotpFactor(app.deps.db, user.uuid), undefined);
    const same = await app.app.inject({ method: 'POST', url: ENROLL, cookies: { access_token }, headers: { origin: 'http://127.0.0.1:8000', accept: 'application/json' } });
    assert.equal(same.statusCode, 201);
  });

  test('confirm activates TOTP, returns 10 distinct backup codes the first time, and mails a notice', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { access_token } = await loginTokens(app.app, user);
    const secret = await enroll(app, access_token);

    const res = await post(app, CONFIRM, access_token, { security_code: totpCodeAt(secret, app.clock()) });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.headers['cache-control'], 'no-store');
    const codes: string[] = res.json().backup_codes;
    assert.equal(codes.length, 10);
    assert.equal(new Set(codes).size, 10, 'all different');
    for (const c of codes) assert.match(c, BACKUP_CODE_FORMAT);

    const me = (await get(app, '/api/v1/auth-jwt/user-info', access_token)).json();
    assert.deepEqual(me.mfa, { totp: true, email: false, passkeys: 0, backup_codes_remaining: 10 });
    const added = await mailsOf(app, 'factor_added', user.email);
    assert.equal(added.length, 1);
    assert.match(added[0]!.text, /authenticator app/);
    for (const c of codes) assert.ok(!added[0]!.text.includes(c), 'backup codes are never mailed');

    // Now a login needs the second factor, and the confirming code cannot be replayed there.
    const plain = await login(app.app, { username: user.username, password: user.password });
    assert.equal(plain.statusCode, 403);
    assert.equal(plain.json().code, 'mfa_required');
    const replay = await login(app.app, { username: user.username, password: user.password, security_code: totpCodeAt(secret, app.clock()) });
    assert.equal(replay.statusCode, 401);
    assert.equal(replay.json().code, 'invalid_security_code');
    nextTotpStep(app.clock);
    const ok = await login(app.app, { username: user.username, password: user.password, security_code: totpCodeAt(secret, app.clock()) });
    assert.equal(ok.statusCode, 200);
  });

  test('confirm with a wrong code is 401 and activates nothing; without a pending secret it is 409', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { access_token } = await loginTokens(app.app, user);

    const none = await post(app, CONFIRM, access_token, { security_code: '123456' });
    assert.equal(none.statusCode, 409);
    assert.equal(none.json().code, 'totp_not_pending');

    const secret = await enroll(app, access_token);
    const good = totpCodeAt(secret, app.clock());
    for (const bad of ['000000', 'abcdef', String((Number(good) + 1) % 1_000_000).padStart(6, '0')]) {
      const res = await post(app, CONFIRM, access_token, { security_code: bad });
      assert.equal(res.statusCode, 401, bad);
      assert.equal(res.json().code, 'invalid_security_code');
      assert.equal(res.json().backup_codes, undefined);
    }
    const row = await findTotpFactor(app.deps.db, user.uuid);
    assert.equal(row?.active_secret, null);
    assert.ok(row?.pending_secret);
    assert.equal((await get(app, '/api/v1/backup-codes', access_token)).json().remaining, 0);
    assert.equal((await mailsOf(app, 'factor_added', user.email)).length, 0);

    const empty = await post(app, CONFIRM, access_token, {});
    assert.equal(empty.statusCode, 422);
    assert.equal(empty.json().code, 'validation_failed');
  });

  test('re-enrolling needs aal2; the old secret works until the new one is confirmed; confirming brings a new set of codes', async (t) => {
    const app = await suite.build(t);
    const { user, secret: oldSecret, backupCodes, aal1, aal2 } = await userWithConfirmedTotp(app);
    assert.equal(backupCodes.length, 10);

    const refused = await post(app, ENROLL, aal1, undefined, { accept: 'application/json' });
    assert.equal(refused.statusCode, 403);
    assert.equal(refused.json().code, 'step_up_required');
    assert.equal((await findTotpFactor(app.deps.db, user.uuid))?.pending_secret, null, 'a refused enrolment stores nothing');

    const newSecret = await enroll(app, aal2);
    nextTotpStep(app.clock);
    const oldStill = await login(app.app, { username: user.username, password: user.password, security_code: totpCodeAt(oldSecret, app.clock()) });
    assert.equal(oldStill.statusCode, 200, 'the old secret is in force until the new one is confirmed');
    nextTotpStep(app.clock);
    const newNotYet = await login(app.app, { username: user.username, password: user.password, security_code: totpCodeAt(newSecret, app.clock()) });
    assert.equal(newNotYet.statusCode, 401, 'a pending secret is no second factor while another one is active');

    const confirm = await post(app, CONFIRM, aal2, { security_code: totpCodeAt(newSecret, app.clock()) });
    assert.equal(confirm.statusCode, 200, confirm.body);
    // The contract's confirm answers 10 codes: a new set, shown this once; the earlier set is void.
    const fresh: string[] = confirm.json().backup_codes;
    assert.equal(fresh.length, 10);
    assert.equal(new Set([...fresh, ...backupCodes]).size, 20, 'a new set');
    assert.equal((await get(app, '/api/v1/backup-codes', aal2)).json().remaining, 10);
    const oldCode = await login(app.app, { username: user.username, password: user.password, backup_code: backupCodes[0] });
    assert.equal(oldCode.statusCode, 401, 'the earlier set no longer works');
    assert.equal((await login(app.app, { username: user.username, password: user.password, backup_code: fresh[0] })).statusCode, 200);

    nextTotpStep(app.clock);
    const oldNow = await login(app.app, { username: user.username, password: user.password, security_code: totpCodeAt(oldSecret, app.clock()) });
    assert.equal(oldNow.statusCode, 401);
    assert.equal(oldNow.json().code, 'invalid_security_code');
    const newNow = await login(app.app, { username: user.username, password: user.password, security_code: totpCodeAt(newSecret, app.clock()) });
    assert.equal(newNow.statusCode, 200);
    assert.equal((await mailsOf(app, 'factor_added', user.email)).length, 2, 'one notice per confirmed secret');
  });

  test('the password-only /qrcode gives no pending secret to an account with another factor; aal1 cannot enrol', async (t) => {
    const app = await suite.build(t, { env: { EMAIL_OTP_COOLDOWN: '0' } });
    const user = await createUser(app.app);
    const aal1 = (await loginTokens(app.app, user)).access_token;
    await enableEmailOtp(app, user, aal1);

    const qr = await app.app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', headers: { accept: 'application/json' }, payload: { username: user.username, password: user.password } });
    assert.equal(qr.statusCode, 409);
    assert.equal(qr.json().code, 'totp_already_enabled');
    assert.equal(qr.json().secret, undefined);
    assert.equal(await findTotpFactor(app.deps.db, user.uuid), undefined);
    const enrollRefused = await post(app, ENROLL, aal1);
    assert.equal(enrollRefused.statusCode, 403);
    assert.equal(enrollRefused.json().code, 'step_up_required');
  });

  test('DELETE needs TOTP on (409), then aal2 (403), then a proof (422), and refuses wrong proofs (401)', async (t) => {
    const app = await suite.build(t);
    const plainUser = await createUser(app.app);
    const plainToken = (await loginTokens(app.app, plainUser)).access_token;
    const notOn = await del(app, TOTP, plainToken, { password: plainUser.password });
    assert.equal(notOn.statusCode, 409);
    assert.equal(notOn.json().code, 'totp_not_enabled');

    const { user, secret, aal1, aal2 } = await userWithConfirmedTotp(app);
    const stepUp = await del(app, TOTP, aal1, { password: user.password });
    assert.equal(stepUp.statusCode, 403);
    assert.equal(stepUp.json().code, 'step_up_required');

    for (const body of [undefined, {}, { security_code: '' }]) {
      const res = await del(app, TOTP, aal2, body);
      assert.equal(res.statusCode, 422, JSON.stringify(body));
      assert.equal(res.json().code, 'validation_failed');
    }
    const wrongPassword = await del(app, TOTP, aal2, { password: 'not the password' });
    assert.equal(wrongPassword.statusCode, 401);
    assert.equal(wrongPassword.json().code, 'invalid_credentials');
    const wrongCode = await del(app, TOTP, aal2, { security_code: '000000' });
    assert.equal(wrongCode.statusCode, 401);
    assert.equal(wrongCode.json().code, 'invalid_security_code');
    // The code that logged the aal2 session in has been used: it cannot be replayed to remove the factor.
    const replay = await del(app, TOTP, aal2, { security_code: totpCodeAt(secret, app.clock()) });
    assert.equal(replay.statusCode, 401);
    assert.equal(replay.json().code, 'invalid_security_code');
    const both = await del(app, TOTP, aal2, { security_code: '000000', password: user.password });
    assert.equal(both.statusCode, 401, 'every proof given must hold');

    assert.ok((await findTotpFactor(app.deps.db, user.uuid))?.active_secret, 'still on');
    assert.equal((await mailsOf(app, 'factor_removed', user.email)).length, 0);
  });

  test('DELETE with the password removes TOTP and, as the last factor, the backup codes; a notice is mailed', async (t) => {
    const app = await suite.build(t);
    const { user, backupCodes, aal2 } = await userWithConfirmedTotp(app);
    const res = await del(app, TOTP, aal2, { password: user.password });
    assert.equal(res.statusCode, 204);
    assert.equal(res.body, '');

    assert.equal(await findTotpFactor(app.deps.db, user.uuid), undefined);
    const me = (await get(app, '/api/v1/auth-jwt/user-info', aal2)).json();
    assert.deepEqual(me.mfa, { totp: false, email: false, passkeys: 0, backup_codes_remaining: 0 });
    const removed = await mailsOf(app, 'factor_removed', user.email);
    assert.equal(removed.length, 1);
    assert.match(removed[0]!.text, /authenticator app/);

    const plain = await login(app.app, { username: user.username, password: user.password });
    assert.equal(plain.statusCode, 200, 'no second factor any more');
    const oldCode = await login(app.app, { username: user.username, password: user.password, backup_code: backupCodes[0] });
    assert.equal(oldCode.statusCode, 401, 'the old backup codes are gone');
    const again = await del(app, TOTP, aal2, { password: user.password });
    assert.equal(again.statusCode, 409);
    assert.equal(again.json().code, 'totp_not_enabled');
  });

  test('DELETE with a fresh code works; with e-mailed codes still on, the backup codes stay', async (t) => {
    const app = await suite.build(t, { env: { EMAIL_OTP_COOLDOWN: '0' } });
    const { user, secret, aal2 } = await userWithConfirmedTotp(app);
    const emailCodes = await enableEmailOtp(app, user, aal2);
    assert.deepEqual(emailCodes, [], 'the user already holds backup codes');

    nextTotpStep(app.clock);
    const res = await del(app, TOTP, aal2, { security_code: totpCodeAt(secret, app.clock()) });
    assert.equal(res.statusCode, 204, res.body);
    const me = (await get(app, '/api/v1/auth-jwt/user-info', aal2)).json();
    assert.deepEqual(me.mfa, { totp: false, email: true, passkeys: 0, backup_codes_remaining: 10 });
    const challenge = await login(app.app, { username: user.username, password: user.password });
    assert.equal(challenge.statusCode, 403);
    assert.deepEqual(challenge.json().mfa_methods, ['email', 'backup_code']);
  });

  test('with MFA_METHODS=email, TOTP enrolment is refused with method_not_enabled', async (t) => {
    const app = await suite.build(t, { env: { MFA_METHODS: 'email' } });
    const user = await createUser(app.app);
    const { access_token } = await loginTokens(app.app, user);
    const res = await app.app.inject({ method: 'POST', url: ENROLL, headers: { ...bearer(access_token), accept: 'application/json' } });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().code, 'method_not_enabled');
    const confirm = await post(app, CONFIRM, access_token, { security_code: '123456' });
    assert.equal(confirm.statusCode, 400);
    assert.equal(confirm.json().code, 'method_not_enabled');
    assert.equal(await findTotpFactor(app.deps.db, user.uuid), undefined);
  });

  test('TOTP activated through /qrcode and a first login has nothing pending: confirm is 409', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { tokens } = await enableTotp(app, user);
    const res = await post(app, CONFIRM, tokens.access_token, { security_code: '123456' });
    assert.equal(res.statusCode, 409);
    assert.equal(res.json().code, 'totp_not_pending');
  });
});
