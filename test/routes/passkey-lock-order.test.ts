/**
 * A passwordless passkey sign-in and a change of the user's passkeys take their locks in one order
 * (the user row, then the passkey row). The sign-in locked the passkey row first (its counter), so a
 * removal holding the user row's lock deadlocked with it on PostgreSQL, and one of them answered 500.
 * The removal is run by hand on a second connection, its two statements around the sign-in (it needs
 * DATABASE_URL: PGlite has one connection and never interleaves them).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createUser, loginTokens } from '../helpers/app.ts';
import { appWithSecondConnection, untilWaitingForLocks } from '../helpers/holds.ts';
import { addPasskey, signInWithPasskey } from '../helpers/passkeys.ts';

if (process.env.DATABASE_URL) {
  test('a passkey removed while a sign-in with it is in flight: the removal commits, the sign-in is 401, never a deadlock [postgres]', async (t) => {
    const { ta, td, other, monitor } = await appWithSecondConnection(t);
    const user = await createUser(ta.app);
    const { body, authenticator } = await addPasskey(ta, (await loginTokens(ta.app, user)).access_token);

    // The removal's first statement (lockFactorChanges): the user row's update lock, held.
    await other.query('BEGIN');
    await other.query('SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE', [user.uuid]);
    const signIn = signInWithPasskey(ta, authenticator);
    await untilWaitingForLocks(monitor, 1, 'the sign-in');
    // Its second statement, then the commit: neither may fail.
    const removed = await other.query('DELETE FROM passkeys WHERE user_id = $1 AND id = $2', [user.uuid, body.id]);
    assert.equal(removed.rowCount, 1);
    await other.query('COMMIT');

    const res = await signIn;
    assert.equal(res.statusCode, 401, res.body);
    assert.equal(res.json().code, 'invalid_passkey');
    assert.equal((await td.db.query('SELECT 1 FROM sessions WHERE user_id = $1 AND amr @> ARRAY[$2]::text[]', [user.uuid, 'user'])).rowCount, 0, 'no passkey session');
  });
}
