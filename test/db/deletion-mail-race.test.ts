/**
 * An e-mailed login code re-sent while an admin erases the account (privacy review): the re-send
 * updates its existing email_otps row, which takes no lock the deletion holds, so when the deletion
 * looked at the outbox before deleting the user row, the re-send's mail (with a code) could commit
 * just after that look and be delivered to the erased address. PostgreSQL only: PGlite runs one
 * transaction at a time, so the interleaving cannot happen there. The deletion is held at its cascade
 * by a second connection keeping one of the user's ended session rows locked (FOR SHARE).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';
import { bearer, buildTestApp, createTestClock, createUser, login } from '../helpers/app.ts';
import { codeOf } from '../helpers/factors.ts';
import { latestToken, mailsTo, settleAndDeliver } from '../helpers/mail-links.ts';
import { createTestDatabase } from '../helpers/pg-database.ts';

/** Waits (bounded) until a statement of the database waits for a lock. */
async function waitForLockWait(client: pg.Client): Promise<void> {
  for (let i = 0; ; i++) {
    const w = await client.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
    if (w.rowCount) return;
    assert.ok(i < 500, 'the deletion never waited for the held row');
    await new Promise((r) => setTimeout(r, 20));
  }
}

if (process.env.DATABASE_URL) {
  test('a login code re-sent while the account is erased is erased with it, never delivered [postgres]', async (t) => {
    const database = await createTestDatabase('postgres');
    const other = new pg.Client({ connectionString: database.url });
    await other.connect();
    t.after(async () => {
      await other.end();
      await database.cleanup();
    });
    const ta = await buildTestApp(t, database.db, { clock: createTestClock(new Date()), env: { ...ADMIN_ENV, RATE_LIMIT_DISABLED: 'true', EMAIL_OTP_COOLDOWN: '0' } });
    const user = await createUser(ta.app, { mfa: 'email' });
    const verify = await latestToken(ta, user.email, 'verify_email');
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify', payload: { token: verify } })).statusCode, 200);
    // One session, ended again: a row of the user's that the second connection will hold.
    const first = (await login(ta.app, { username: user.username, password: user.password })).json().mfa_token as string;
    await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/mfa/email-code', payload: { mfa_token: first } });
    await settleAndDeliver(ta);
    const code = codeOf(mailsTo(ta, user.email, 'email_otp_login').at(-1)!);
    const tokens = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/mfa', payload: { mfa_token: first, method: 'email', code } });
    assert.equal(tokens.statusCode, 200, tokens.body);
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: bearer(tokens.json().access_token) })).statusCode, 204);
    // A pending challenge whose code was mailed once (its email_otps row exists).
    const second = (await login(ta.app, { username: user.username, password: user.password })).json().mfa_token as string;
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/mfa/email-code', payload: { mfa_token: second } })).statusCode, 202);
    await settleAndDeliver(ta);
    const sentBefore = mailsTo(ta, user.email).length;

    await other.query('BEGIN');
    await other.query('SELECT 1 FROM sessions WHERE user_id = $1 FOR SHARE', [user.uuid]);
    const deletion = adminCall(ta, 'DELETE', `/api/v1/admin/users/${user.uuid}`);
    await waitForLockWait(other);
    // The deletion waits at the cascade; the re-send runs now and commits its mail.
    const resend = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/mfa/email-code', payload: { mfa_token: second } });
    assert.equal(resend.statusCode, 202, resend.body);
    await other.query('COMMIT');
    assert.equal((await deletion).statusCode, 204);

    const left = await database.db.query('SELECT kind FROM outbox WHERE lower(to_address) = lower($1)', [user.email]);
    assert.deepEqual(left.rows, [], 'no mail to the erased address is left in the outbox');
    await settleAndDeliver(ta);
    assert.deepEqual(mailsTo(ta, user.email).slice(sentBefore).map((m) => m.kind), [], 'nothing delivered to the erased address after the deletion');
  });
}
