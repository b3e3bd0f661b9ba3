/**
 * The retention job's second part: sessions, MFA challenges, link tokens and mails whose purpose
 * has passed are deleted (they grew for ever, with IP addresses, user agents and recipients); what
 * is still live or recent stays, and so does a session an OpenID provider session is linked to.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SPENT_ROW_RETENTION, pruneSpentRows } from '../../src/services/audit/retention.ts';
import { buildTestApp, createTestClock, createUser, loginTokens, type TestApp } from '../helpers/app.ts';
import { withDatabases } from '../helpers/pg-database.ts';
import { settleAndDeliver } from '../helpers/mail-links.ts';

const DAY = 86_400_000;

async function count(ta: TestApp, sql: string, params: unknown[]): Promise<number> {
  return (await ta.deps.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM (${sql}) x`, params)).rows[0]!.n;
}

withDatabases('retention of spent rows', ({ open }) => {
  test('ended sessions after 90 days, expired challenges and links after a day, sent mails after 30 days; the rest stays', async (t) => {
    const d = await open();
    const ta = await buildTestApp(t, d.db, { clock: createTestClock(new Date()) });
    const user = await createUser(ta.app);
    await settleAndDeliver(ta); // the verification mail: sent now
    const sessions = [];
    for (let i = 0; i < 4; i++) sessions.push((await loginTokens(ta.app, user)).access_token);
    const sids = (await ta.deps.db.query<{ id: string }>('SELECT id FROM sessions WHERE user_id = $1 ORDER BY created_at, id', [user.uuid])).rows.map((r) => r.id);
    assert.equal(sids.length, 4);
    const [revokedLongAgo, expiredLongAgo, linkedLongAgo, revokedRecently] = sids as [string, string, string, string];
    const now = ta.clock().getTime();
    const old = new Date(now - (SPENT_ROW_RETENTION.sessionsDays + 1) * DAY);
    await ta.deps.db.query('UPDATE sessions SET revoked_at = $2 WHERE id = ANY ($1::uuid[])', [[revokedLongAgo, linkedLongAgo], old]);
    await ta.deps.db.query('UPDATE sessions SET expires_at = $2 WHERE id = $1', [expiredLongAgo, old]);
    await ta.deps.db.query('UPDATE sessions SET revoked_at = $2 WHERE id = $1', [revokedRecently, new Date(now - DAY)]);
    await ta.deps.db.query("INSERT INTO oidc_session_links (provider_session_uid, session_id, user_id, created_at) VALUES ('ps-1', $1, $2, $3)", [linkedLongAgo, user.uuid, old]);
    // An MFA challenge and a link token, each expired two days ago, and one of each still live.
    for (const [expires, id] of [[new Date(now - 2 * DAY), '01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e21'], [new Date(now + 60_000), '01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e22']] as const) {
      await ta.deps.db.query('INSERT INTO mfa_challenges (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $3)', [id, user.uuid, expires]);
    }
    const tokensBefore = await count(ta, 'SELECT 1 FROM email_tokens WHERE user_id = $1', [user.uuid]);
    await ta.deps.db.query("INSERT INTO email_tokens (id, user_id, purpose, token_hash, email, created_at, expires_at) VALUES ('01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e23', $1, 'reset_password', 'h-old', $2, $3, $3)", [user.uuid, user.email, new Date(now - 2 * DAY)]);
    // The verification mail was sent now; one sent 31 days ago goes.
    await ta.deps.db.query("INSERT INTO outbox (id, kind, to_address, subject, text_body, html_body, created_at, next_attempt_at, sent_at) VALUES ('01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e24', 'verify_email', $1, 's', '', '', $2, $2, $2)", [user.email, new Date(now - 31 * DAY)]);

    const deleted = await pruneSpentRows(ta.deps);
    assert.deepEqual(deleted, { sessions: 2, mfa_challenges: 1, webauthn_challenges: 0, email_tokens: 1, outbox: 1, signup_ip: 0 });
    const left = (await ta.deps.db.query<{ id: string }>('SELECT id FROM sessions WHERE user_id = $1', [user.uuid])).rows.map((r) => r.id).sort();
    assert.deepEqual(left, [linkedLongAgo, revokedRecently].sort(), 'the linked one and the recent one stay');
    assert.equal(await count(ta, 'SELECT 1 FROM mfa_challenges WHERE user_id = $1', [user.uuid]), 1);
    assert.equal(await count(ta, 'SELECT 1 FROM email_tokens WHERE user_id = $1', [user.uuid]), tokensBefore, 'the live verification link stays');
    assert.equal(await count(ta, 'SELECT 1 FROM outbox WHERE to_address = $1', [user.email]), 1, 'the mail sent now stays');
    assert.deepEqual(await pruneSpentRows(ta.deps), { sessions: 0, mfa_challenges: 0, webauthn_challenges: 0, email_tokens: 0, outbox: 0, signup_ip: 0 });
  });
});
