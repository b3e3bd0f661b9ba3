/**
 * "Deactivating revokes every session at once", also for logins in flight: a login whose password or
 * passkey was checked before an admin's deactivation commits must open no session (which would work
 * again on reactivation), whatever the order of the two.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createUser, describeWithApp, login, loginTokens, type TestApp, type TestUser } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';
import { addPasskey, signInWithPasskey } from '../helpers/passkeys.ts';
import { beforeNextTransaction } from '../helpers/holds.ts';

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
