/**
 * Every transaction that touches a user's reset links takes the user row first: issuing a link
 * (forgot-password, which locks the row to see the account still active), a reset, a password change,
 * a deactivation. A reset took its token first and the user row after, so against a link being
 * issued (the user row, then the old links) it deadlocked on PostgreSQL: a 500, or a link never sent.
 * The issuing side is run by hand on a second connection, its statements around a real reset (it
 * needs DATABASE_URL: PGlite has one connection and never interleaves them).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createUser } from '../helpers/app.ts';
import { appWithSecondConnection, untilWaitingForLocks } from '../helpers/holds.ts';
import { latestToken } from '../helpers/mail-links.ts';

if (process.env.DATABASE_URL) {
  test('a reset while a new link is being issued: it waits, then finds its link voided (400), never a deadlock [postgres]', async (t) => {
    const { ta, other, monitor } = await appWithSecondConnection(t);
    const user = await createUser(ta.app);
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/forgot', payload: { email: user.email } })).statusCode, 202);
    const token = await latestToken(ta, user.email, 'password_reset');

    // The issuing transaction's first lock (the account still active), held.
    await other.query('BEGIN');
    await other.query('SELECT 1 FROM users WHERE id = $1 AND is_active FOR SHARE', [user.uuid]);
    const chosen = 'a brand new passphrase 42';
    const reset = ta.app.inject({ method: 'POST', url: '/api/v1/user/password/reset', payload: { token, password1: chosen, password2: chosen } });
    await untilWaitingForLocks(monitor, 1, 'the reset');
    // Its next statement voids the user's older links, then it commits: neither may fail.
    await other.query("DELETE FROM email_tokens WHERE user_id = $1 AND purpose = 'reset_password' AND consumed_at IS NULL", [user.uuid]);
    await other.query('COMMIT');

    const res = await reset;
    assert.equal(res.statusCode, 400, res.body);
    assert.equal(res.json().code, 'invalid_or_expired_token');
  });
}
