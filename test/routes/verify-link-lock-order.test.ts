/**
 * Two verification links of one user submitted at once (the sign-up's mail and a resent one, opened
 * on two devices): on PostgreSQL each request held its own link and then waited for the other's,
 * which voiding the user's other links locks — a deadlock, answered 500. The user's row now comes
 * first. The user row is held on a second connection so both requests are in flight together.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createUser } from '../helpers/app.ts';
import { appWithSecondConnection, untilWaitingForLocks } from '../helpers/holds.ts';
import { linkOf, mailsTo, settleAndDeliver } from '../helpers/mail-links.ts';

if (process.env.DATABASE_URL) {
  test('two links of one user verified at once: one verifies, the other is void, no 500 [postgres]', async (t) => {
    const { ta, td, other, monitor } = await appWithSecondConnection(t);
    const user = await createUser(ta.app);
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify/resend', payload: { email: user.email } })).statusCode, 202);
    await settleAndDeliver(ta);
    const tokens = mailsTo(ta, user.email, 'verify_email').map((m) => linkOf(m).token);
    assert.equal(tokens.length, 2);
    await other.query('BEGIN');
    await other.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [user.uuid]);
    const answers = tokens.map((token) => ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify', payload: { token } }));
    await untilWaitingForLocks(monitor, 2, 'both verifications');
    await other.query('COMMIT');
    const codes = (await Promise.all(answers)).map((r) => r.statusCode).sort();
    // As one after the other: the first verifies and voids the user's other links.
    assert.deepEqual(codes, [200, 400]);
    assert.equal((await td.db.query<{ v: boolean }>('SELECT email_verified AS v FROM users WHERE id = $1', [user.uuid])).rows[0]!.v, true);
  });
}
