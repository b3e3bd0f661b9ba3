/**
 * Minting backup codes and turning a factor off need a recent login, as adding a factor does. Backup
 * codes pass as the second factor at login: an old aal2 session (a copied refresh cookie, a computer
 * left signed in) that could mint a set voided the owner's and, with a phished password, logged in
 * again after the owner's "log out everywhere". Turning e-mailed codes or a passkey off from such a
 * session stripped the account down to its password.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isEmailOtpEnabled } from '../../src/db/repositories/email-otps.ts';
import { FACTOR_BINDING_LOGIN_MAX_AGE_SECONDS } from '../../src/services/factor-changes.ts';
import { createTestClock, createUser, describeWithApp, enableTotp, login, type TestApp } from '../helpers/app.ts';
import { del, enableEmailOtp, post } from '../helpers/factors.ts';
import { addPasskey } from '../helpers/passkeys.ts';

/** A new access token of the same session (its login time unchanged), as a refresh cookie gives. */
async function refreshed(ta: TestApp, refreshToken: string): Promise<string> {
  const res = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: refreshToken } });
  assert.equal(res.statusCode, 200, res.body);
  return res.json().access_token;
}

async function backupCodeHashes(ta: TestApp, userId: string): Promise<string[]> {
  return (await ta.deps.db.query<{ h: string }>('SELECT code_hash AS h FROM backup_codes WHERE user_id = $1 ORDER BY 1', [userId])).rows.map((r) => r.h);
}

describeWithApp('changing factors without a new proof needs a recent login', (suite) => {
  test('an old aal2 session mints no backup codes and turns off neither e-mailed codes nor a passkey; a fresh login does', async (t) => {
    const ta = await suite.build(t, { clock: createTestClock(new Date()) });
    const user = await createUser(ta.app);
    const { tokens, backupCodes } = await enableTotp(ta, user);
    await enableEmailOtp(ta, user, tokens.access_token);
    const { body: passkey } = await addPasskey(ta, tokens.access_token);
    const codesBefore = await backupCodeHashes(ta, user.uuid);
    assert.equal(codesBefore.length, 10);

    ta.clock.advance(FACTOR_BINDING_LOGIN_MAX_AGE_SECONDS + 60);
    const old = await refreshed(ta, tokens.refresh_token);
    for (const res of [
      await post(ta, '/api/v1/backup-codes', old),
      await del(ta, '/api/v1/auth-email-otp', old),
      await del(ta, `/api/v1/passkeys/${passkey.id}`, old),
    ]) {
      assert.equal(res.statusCode, 403, res.body);
      assert.equal(res.json().code, 'step_up_required');
    }
    assert.deepEqual(await backupCodeHashes(ta, user.uuid), codesBefore, 'the owner\'s codes still stand');
    assert.equal(await isEmailOtpEnabled(ta.deps.db, user.uuid), true);
    assert.equal((await ta.deps.db.query('SELECT 1 FROM passkeys WHERE id = $1', [passkey.id])).rows.length, 1);
    const audit = await ta.deps.db.query("SELECT type FROM audit_log WHERE user_id = $1 AND type IN ('backup_codes.regenerated', 'mfa.disabled', 'passkey.removed')", [user.uuid]);
    assert.equal(audit.rows.length, 0, 'nothing recorded as done');

    // The owner logs in again with a backup code (aal2, recent): each change goes through.
    const fresh = await login(ta.app, { username: user.username, password: user.password, backup_code: backupCodes[0]! });
    assert.equal(fresh.statusCode, 200, fresh.body);
    const access = fresh.json().access_token as string;
    const minted = await post(ta, '/api/v1/backup-codes', access);
    assert.equal(minted.statusCode, 201, minted.body);
    assert.equal(minted.json().backup_codes.length, 10);
    assert.equal((await del(ta, '/api/v1/auth-email-otp', access)).statusCode, 204);
    assert.equal((await del(ta, `/api/v1/passkeys/${passkey.id}`, access)).statusCode, 204);
  });
});
