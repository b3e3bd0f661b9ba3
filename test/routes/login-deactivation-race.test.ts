/**
 * "Deactivating revokes every session at once", also for logins in flight: a login whose password or
 * passkey was checked before an admin's deactivation commits must open no session (which would work
 * again on reactivation), whatever the order of the two. A reset link mailed before it dies with it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createUser, describeWithApp, login, loginTokens, type TestApp, type TestUser } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';
import { addPasskey, passkeyLogin, passkeyLoginOptions, signInWithPasskey } from '../helpers/passkeys.ts';
import { beforeNextTransaction } from '../helpers/holds.ts';
import { latestToken } from '../helpers/mail-links.ts';
import { settleDeferred } from '../../src/services/deferred.ts';

async function deactivate(ta: TestApp, user: TestUser): Promise<void> {
  const res = await adminCall(ta, 'PATCH', `/api/v1/admin/users/${user.uuid}`, { is_active: false });
  assert.equal(res.statusCode, 200, res.body);
}

async function unrevokedSessions(ta: TestApp, user: TestUser): Promise<number> {
  return (await ta.deps.db.query('SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL', [user.uuid])).rows.length;
}

describeWithApp('logins in flight across a deactivation', (suite) => {
  test('a password login checked before the deactivation commits: 403 account_inactive, no session', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const user = await createUser(ta.app);
    // Checks passed (password, usable account); the admin's change commits before the session's transaction.
    beforeNextTransaction(ta, () => deactivate(ta, user));
    const res = await login(ta.app, { username: user.username, password: user.password });
    assert.equal(res.statusCode, 403, res.body);
    assert.equal(res.json().code, 'account_inactive');
    assert.equal(await unrevokedSessions(ta, user), 0);
    // Reactivated, the account has no session left over from before: only a new login opens one.
    assert.equal((await adminCall(ta, 'PATCH', `/api/v1/admin/users/${user.uuid}`, { is_active: true })).statusCode, 200);
    assert.equal(await unrevokedSessions(ta, user), 0);
  });

  test('a passkey sign-in verified before the deactivation commits: 403 account_inactive, no session', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const user = await createUser(ta.app);
    const { authenticator } = await addPasskey(ta, (await loginTokens(ta.app, user)).access_token);
    await ta.deps.db.query('UPDATE sessions SET revoked_at = now() WHERE user_id = $1', [user.uuid]);
    beforeNextTransaction(ta, () => deactivate(ta, user));
    const res = await signInWithPasskey(ta, authenticator);
    assert.equal(res.statusCode, 403, res.body);
    assert.equal(res.json().code, 'account_inactive');
    assert.equal(await unrevokedSessions(ta, user), 0);
  });
});

describeWithApp('a password-reset link mailed before a deactivation', (suite) => {
  test('is dead after it: 400, the password is unchanged, and it does not come back with a reactivation', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const user = await createUser(ta.app);
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/forgot', payload: { email: user.email } })).statusCode, 202);
    const token = await latestToken(ta, user.email, 'password_reset');
    await deactivate(ta, user);
    const chosen = 'a password chosen by whoever holds the mail';
    const reset = () => ta.app.inject({ method: 'POST', url: '/api/v1/user/password/reset', payload: { token, password1: chosen, password2: chosen } });
    const res = await reset();
    assert.equal(res.statusCode, 400, res.body);
    assert.equal(res.json().code, 'invalid_or_expired_token');
    assert.equal((await adminCall(ta, 'PATCH', `/api/v1/admin/users/${user.uuid}`, { is_active: true })).statusCode, 200);
    assert.equal((await reset()).statusCode, 400, 'reactivation does not revive the link');
    assert.equal((await login(ta.app, { username: user.username, password: chosen })).statusCode, 401);
    assert.equal((await login(ta.app, { username: user.username, password: user.password })).statusCode, 200);
  });

  test('a forgot-password request whose account was read as active before the deactivation commits: no link', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const user = await createUser(ta.app);
    // The deferred work has found the account active; the admin's change commits before its transaction.
    const hold = beforeNextTransaction(ta, () => deactivate(ta, user));
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/forgot', payload: { email: user.email } })).statusCode, 202);
    await settleDeferred(ta.deps);
    assert.ok(hold.fired());
    const links = await ta.deps.db.query("SELECT 1 FROM email_tokens WHERE user_id = $1 AND purpose = 'reset_password' AND consumed_at IS NULL", [user.uuid]);
    assert.equal(links.rows.length, 0, 'no live reset link for a deactivated account');
    assert.ok(!(await ta.deliverMail()).some((m) => m.kind === 'password_reset'), 'and no mail');
  });
});

describeWithApp('a passkey sign-in in flight across a password change', (suite) => {
  test('verified before the change commits: signed in (a passkey does not use the password), in a session the change did not have to revoke', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const other = await loginTokens(ta.app, user);
    const { authenticator } = await addPasskey(ta, other.access_token);
    const opts = await passkeyLoginOptions(ta);
    assert.equal(opts.statusCode, 200, opts.body);
    const { challenge_token, options } = opts.json();
    // The assertion is verified; the change commits before the sign-in's transaction.
    const renewed = 'a new passphrase for the change 2026';
    const hold = beforeNextTransaction(ta, async () => {
      const change = await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/change', headers: { authorization: `Bearer ${other.access_token}` }, payload: { current_password: user.password, password1: renewed, password2: renewed } });
      assert.equal(change.statusCode, 204, change.body);
    });
    const res = await passkeyLogin(ta, { challenge_token, credential: authenticator.get(options) });
    assert.ok(hold.fired());
    assert.equal(res.statusCode, 200, res.body);
    const info = await ta.app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: { authorization: `Bearer ${res.json().access_token}` } });
    assert.equal(info.statusCode, 200, 'the new session is live');
  });
});
