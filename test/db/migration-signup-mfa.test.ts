/**
 * Migration 0011: the sign-up choice of e-mailed codes is forgotten for every account whose address
 * was ever verified (before this release the first verification left it on the row), and kept for
 * accounts still waiting for their first verification.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { migrate } from '../../src/db/migrate.ts';
import { createUser, describeWithApp } from '../helpers/app.ts';
import { auditRowsOf } from '../helpers/admin.ts';
import { latestToken } from '../helpers/mail-links.ts';

const MIGRATION = '0011_signup_mfa_used_once.sql';

describeWithApp('migration 0011 (sign-up choice used once)', (suite) => {
  test('clears the choice of verified and once-verified accounts, keeps it for the never verified', async (t) => {
    const ta = await suite.build(t);
    const verified = await createUser(ta.app, { mfa: 'email' });
    const token = await latestToken(ta, verified.email, 'verify_email');
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify', payload: { token } })).statusCode, 200);
    const unmarked = await createUser(ta.app, { mfa: 'email' });
    const unmarkedToken = await latestToken(ta, unmarked.email, 'verify_email');
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify', payload: { token: unmarkedToken } })).statusCode, 200);
    assert.ok((await auditRowsOf(ta, unmarked.uuid)).some((r) => r.type === 'email.verified'));
    const waiting = await createUser(ta.app, { mfa: 'email' });

    // The rows as an older release left them: the choice still set after the first verification, and
    // one address unmarked by an admin since.
    const db = ta.deps.db;
    await db.query("UPDATE users SET signup_mfa = 'email' WHERE id = ANY($1::uuid[])", [[verified.uuid, unmarked.uuid, waiting.uuid]]);
    await db.query('UPDATE users SET email_verified = false WHERE id = $1', [unmarked.uuid]);
    await db.query('DELETE FROM schema_migrations WHERE version = $1', [MIGRATION]);

    assert.deepEqual(await migrate(db), [MIGRATION]);
    const choice = async (id: string) => (await db.query<{ signup_mfa: string | null }>('SELECT signup_mfa FROM users WHERE id = $1', [id])).rows[0]?.signup_mfa;
    assert.equal(await choice(verified.uuid), null);
    assert.equal(await choice(unmarked.uuid), null);
    assert.equal(await choice(waiting.uuid), 'email', 'the first verification is still to come');
  });
});
