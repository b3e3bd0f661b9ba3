/**
 * The account's first factor is bound only from a session whose login is recent. Binding it ends
 * every other session and a password reset keeps it, so a stolen session (a copied refresh cookie, a
 * computer left signed in) that bound its own TOTP locked the owner out for good, even after a reset.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { isEmailOtpEnabled } from '../../src/db/repositories/email-otps.ts';
import { FACTOR_BINDING_LOGIN_MAX_AGE_SECONDS } from '../../src/services/factor-changes.ts';
import { createTestClock, createUser, describeWithApp, enableTotp, login, loginTokens, nextTotpStep, type TestApp } from '../helpers/app.ts';
import { lastCode, post, verifyEmail } from '../helpers/factors.ts';

/** A new access token of the same session (its login time unchanged), as a refresh cookie gives. */
async function refreshed(ta: TestApp, refreshToken: string): Promise<string> {
  const res = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: refreshToken } });
  assert.equal(res.statusCode, 200, res.body);
  return res.json().access_token;
}

async function factorRows(ta: TestApp, userId: string): Promise<number> {
  const r = await ta.deps.db.query<{ n: number }>(
    `SELECT ((SELECT count(*) FROM totp_factors WHERE user_id = $1 AND active_secret IS NOT NULL)
           + (SELECT count(*) FROM passkeys WHERE user_id = $1)
           + (SELECT count(*) FROM backup_codes WHERE user_id = $1))::int AS n`,
    [userId],
  );
  return r.rows[0]!.n;
}

describeWithApp('binding a factor needs a recent login', (suite) => {
  test('a session logged in longer ago cannot bind TOTP, e-mailed codes or a passkey as the first factor; a fresh login can', async (t) => {
    const ta = await suite.build(t, { clock: createTestClock(new Date()) });
    const user = await createUser(ta.app);
    await verifyEmail(ta, user);
    const stolen = await loginTokens(ta.app, user);
    ta.clock.advance(FACTOR_BINDING_LOGIN_MAX_AGE_SECONDS + 60);
    const access = await refreshed(ta, stolen.refresh_token);
    for (const res of [
      await post(ta, '/api/v1/auth-totp/enroll', access, undefined, { accept: 'application/json' }),
      await post(ta, '/api/v1/auth-email-otp/enable', access),
      await post(ta, '/api/v1/passkeys/registration/options', access, {}),
    ]) {
      assert.equal(res.statusCode, 403, res.body);
      assert.equal(res.json().code, 'step_up_required');
    }
    assert.equal(await factorRows(ta, user.uuid), 0);
    assert.equal(await isEmailOtpEnabled(ta.deps.db, user.uuid), false);
    // The owner, logging in now, turns TOTP on; the old session then ends with every other one.
    const fresh = (await loginTokens(ta.app, user)).access_token;
    const enrol = await post(ta, '/api/v1/auth-totp/enroll', fresh, undefined, { accept: 'application/json' });
    assert.equal(enrol.statusCode, 201);
    assert.equal((await post(ta, '/api/v1/auth-totp/confirm', fresh, { security_code: totpCodeAt(enrol.json().secret, ta.clock()) })).statusCode, 200);
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: stolen.refresh_token } })).statusCode, 401);
  });

  test('an enrolment started in time but confirmed after the window is refused, and binds nothing (TOTP and e-mailed codes)', async (t) => {
    const ta = await suite.build(t, { clock: createTestClock(new Date()) });
    const user = await createUser(ta.app);
    await verifyEmail(ta, user);
    const tokens = await loginTokens(ta.app, user);
    const enrol = await post(ta, '/api/v1/auth-totp/enroll', tokens.access_token, undefined, { accept: 'application/json' });
    assert.equal(enrol.statusCode, 201);
    assert.equal((await post(ta, '/api/v1/auth-email-otp/enable', tokens.access_token)).statusCode, 202);
    const mailed = await lastCode(ta, 'email_otp_enable', user.email);
    ta.clock.advance(FACTOR_BINDING_LOGIN_MAX_AGE_SECONDS + 1);
    const access = await refreshed(ta, tokens.refresh_token);
    for (const res of [
      await post(ta, '/api/v1/auth-totp/confirm', access, { security_code: totpCodeAt(enrol.json().secret, ta.clock()) }),
      await post(ta, '/api/v1/auth-email-otp/confirm', access, { code: mailed }),
    ]) {
      assert.equal(res.statusCode, 403, res.body);
      assert.equal(res.json().code, 'step_up_required');
    }
    assert.equal(await factorRows(ta, user.uuid), 0);
    assert.equal(await isEmailOtpEnabled(ta.deps.db, user.uuid), false);
  });

  test('adding or replacing a factor at aal2 needs a recent login too: an old aal2 session (a copied cookie) binds nothing that would outlive a reset', async (t) => {
    const ta = await suite.build(t, { clock: createTestClock(new Date()) });
    const user = await createUser(ta.app);
    await verifyEmail(ta, user);
    const { secret, tokens } = await enableTotp(ta, user);
    ta.clock.advance(FACTOR_BINDING_LOGIN_MAX_AGE_SECONDS + 60);
    const copied = await refreshed(ta, tokens.refresh_token);
    for (const res of [
      await post(ta, '/api/v1/auth-totp/enroll', copied, undefined, { accept: 'application/json' }),
      await post(ta, '/api/v1/auth-email-otp/enable', copied),
      await post(ta, '/api/v1/passkeys/registration/options', copied, {}),
    ]) {
      assert.equal(res.statusCode, 403, res.body);
      assert.equal(res.json().code, 'step_up_required');
    }
    assert.equal(await isEmailOtpEnabled(ta.deps.db, user.uuid), false);
    // The owner logs in again with the code and replaces the authenticator app: aal2, and recent.
    nextTotpStep(ta.clock);
    const fresh = await login(ta.app, { username: user.username, password: user.password, security_code: totpCodeAt(secret, ta.clock()) });
    assert.equal(fresh.statusCode, 200, fresh.body);
    const access = fresh.json().access_token as string;
    const enrol = await post(ta, '/api/v1/auth-totp/enroll', access, undefined, { accept: 'application/json' });
    assert.equal(enrol.statusCode, 201, enrol.body);
    nextTotpStep(ta.clock);
    const confirm = await post(ta, '/api/v1/auth-totp/confirm', access, { security_code: totpCodeAt(enrol.json().secret, ta.clock()) });
    assert.equal(confirm.statusCode, 200, confirm.body);
    assert.equal(confirm.json().backup_codes.length, 10, 'a new set with the replaced secret');
  });
});
