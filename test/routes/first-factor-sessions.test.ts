/**
 * Turning on the account's first second factor ends every other session: they were opened with the
 * password alone, and whoever holds one (a thief with the password, from before the owner reacted)
 * must not stay signed in past the new factor to revoke the owner's sessions or change the password.
 * The session that made the change stays; a later factor next to the first ends nothing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeJwt } from 'jose';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { createUser, describeWithApp, login, loginTokens, nextTotpStep, type TestApp, type TestUser } from '../helpers/app.ts';
import { auditRowsOf } from '../helpers/admin.ts';
import { get, lastCode, post, verifyEmail } from '../helpers/factors.ts';
import { addPasskey } from '../helpers/passkeys.ts';
import { beforeNextTransaction } from '../helpers/holds.ts';
import { latestToken } from '../helpers/mail-links.ts';

type Tokens = { access_token: string; refresh_token: string };

async function alive(ta: TestApp, tokens: Tokens): Promise<boolean> {
  const res = await get(ta, '/api/v1/auth-jwt/user-info', tokens.access_token);
  assert.ok(res.statusCode === 200 || res.statusCode === 401, res.body);
  return res.statusCode === 200;
}

async function refreshes(ta: TestApp, tokens: Tokens): Promise<boolean> {
  const res = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: tokens.refresh_token } });
  return res.statusCode === 200;
}

/** A thief's session (from the password) and the owner's, both aal1, before any factor. */
async function twoSessions(ta: TestApp): Promise<{ user: TestUser; thief: Tokens; owner: Tokens }> {
  const user = await createUser(ta.app);
  return { user, thief: await loginTokens(ta.app, user), owner: await loginTokens(ta.app, user) };
}

async function assertThiefOut(ta: TestApp, user: TestUser, thief: Tokens): Promise<void> {
  assert.equal(await alive(ta, thief), false, 'the other session ended');
  assert.equal(await refreshes(ta, thief), false, 'and cannot be refreshed');
  const revoked = (await auditRowsOf(ta, user.uuid)).filter((r) => r.type === 'session.revoked');
  assert.ok(revoked.some((r) => (r.data as { reason?: string }).reason === 'mfa_enabled'), 'recorded with its reason');
}

describeWithApp('the first second factor ends the sessions of the password alone', (suite) => {
  test('confirming TOTP: the other session ends, the confirming one stays; a second factor later ends nothing', async (t) => {
    const ta = await suite.build(t);
    const { user, thief, owner } = await twoSessions(ta);
    const enroll = await post(ta, '/api/v1/auth-totp/enroll', owner.access_token, undefined, { accept: 'application/json' });
    const confirm = await post(ta, '/api/v1/auth-totp/confirm', owner.access_token, { security_code: totpCodeAt(enroll.json().secret, ta.clock()) });
    assert.equal(confirm.statusCode, 200, confirm.body);
    await assertThiefOut(ta, user, thief);
    assert.equal(await alive(ta, owner), true, 'the confirming session stays');

    // A passkey next to TOTP (aal2 session): not a first factor, the other sessions stay.
    nextTotpStep(ta.clock);
    const aal2 = (await login(ta.app, { username: user.username, password: user.password, security_code: totpCodeAt(enroll.json().secret, ta.clock()) })).json() as Tokens;
    const other = (await login(ta.app, { username: user.username, password: user.password, backup_code: confirm.json().backup_codes[0] })).json() as Tokens;
    await addPasskey(ta, aal2.access_token);
    assert.equal(await alive(ta, other), true);
  });

  test('confirming e-mailed codes: the other session ends', async (t) => {
    const ta = await suite.build(t);
    const { user, thief, owner } = await twoSessions(ta);
    await verifyEmail(ta, user);
    assert.equal((await post(ta, '/api/v1/auth-email-otp/enable', owner.access_token)).statusCode, 202);
    const confirm = await post(ta, '/api/v1/auth-email-otp/confirm', owner.access_token, { code: await lastCode(ta, 'email_otp_enable', user.email) });
    assert.equal(confirm.statusCode, 200, confirm.body);
    await assertThiefOut(ta, user, thief);
    assert.equal(await alive(ta, owner), true);
  });

  test('e-mailed codes chosen at sign-up, turned on by the verification link: every password-only session ends', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app, { mfa: 'email' });
    const [thief, owner] = [await loginTokens(ta.app, user), await loginTokens(ta.app, user)];
    const token = await latestToken(ta, user.email, 'verify_email');
    const verified = await ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify', payload: { token } });
    assert.equal(verified.statusCode, 200, verified.body);
    assert.equal((await get(ta, '/api/v1/auth-jwt/user-info', owner.access_token)).statusCode, 401, 'no session made the change: none stays');
    await assertThiefOut(ta, user, thief);
    const again = await login(ta.app, { username: user.username, password: user.password });
    assert.equal(again.statusCode, 403);
    assert.deepEqual(again.json().mfa_methods, ['email']);
  });

  test('registering a first passkey: the other session ends', async (t) => {
    const ta = await suite.build(t);
    const { user, thief, owner } = await twoSessions(ta);
    await addPasskey(ta, owner.access_token);
    await assertThiefOut(ta, user, thief);
    assert.equal(await alive(ta, owner), true);
  });

  test('a login activating a /qrcode secret: every session but the new one ends', async (t) => {
    const ta = await suite.build(t);
    const { user, thief, owner } = await twoSessions(ta);
    const qr = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', headers: { accept: 'application/json' }, payload: { username: user.username, password: user.password } });
    const res = await login(ta.app, { username: user.username, password: user.password, security_code: totpCodeAt(qr.json().secret, ta.clock()) });
    assert.equal(res.statusCode, 200, res.body);
    await assertThiefOut(ta, user, thief);
    assert.equal(await alive(ta, owner), false);
    assert.equal(await alive(ta, res.json()), true, 'the activating login\'s own session works');
  });

  test('a password-only login in flight when the first factor commits opens no session: it is asked for the factor', async (t) => {
    for (const add of ['totp', 'passkey'] as const) {
      const ta = await suite.build(t);
      const user = await createUser(ta.app);
      const owner = await loginTokens(ta.app, user);
      let secret = '';
      if (add === 'totp') {
        const enrol = await post(ta, '/api/v1/auth-totp/enroll', owner.access_token, undefined, { accept: 'application/json' });
        secret = enrol.json().secret;
      }
      // The thief's login has read "no factor"; the owner's first factor commits before its transaction.
      const hold = beforeNextTransaction(ta, async () => {
        if (add === 'passkey') await addPasskey(ta, owner.access_token);
        else assert.equal((await post(ta, '/api/v1/auth-totp/confirm', owner.access_token, { security_code: totpCodeAt(secret, ta.clock()) })).statusCode, 200);
      });
      const thief = await login(ta.app, { username: user.username, password: user.password });
      assert.ok(hold.fired());
      assert.equal(thief.statusCode, 403, `${add}: ${thief.body}`);
      assert.equal(thief.json().code, 'mfa_required');
      assert.equal(thief.json().access_token, undefined);
      const sessions = await ta.deps.db.query('SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL', [user.uuid]);
      assert.equal(sessions.rows.length, 1, `${add}: only the owner's session is live`);
      assert.equal(await alive(ta, owner), true);
    }
  });

  test('two dozen password-only logins racing the first factor: none of their sessions outlives it', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const owner = await loginTokens(ta.app, user);
    const enrol = await post(ta, '/api/v1/auth-totp/enroll', owner.access_token, undefined, { accept: 'application/json' });
    const confirm = post(ta, '/api/v1/auth-totp/confirm', owner.access_token, { security_code: totpCodeAt(enrol.json().secret, ta.clock()) });
    const logins = await Promise.all([confirm, ...Array.from({ length: 24 }, () => login(ta.app, { username: user.username, password: user.password }))]);
    assert.equal(logins[0]!.statusCode, 200);
    // 429: more logins in flight than the account's attempt budget (each is counted until it succeeds).
    for (const res of logins.slice(1)) assert.ok([200, 429].includes(res.statusCode) || (res.statusCode === 403 && res.json().code === 'mfa_required'), res.body);
    const live = await ta.deps.db.query<{ id: string }>('SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL', [user.uuid]);
    assert.deepEqual(live.rows.map((r) => r.id), [decodeJwt(owner.access_token).sid], "only the owner's session is live");
    for (const res of logins.slice(1).filter((r) => r.statusCode === 200)) assert.equal(await alive(ta, res.json()), false);
  });
});
