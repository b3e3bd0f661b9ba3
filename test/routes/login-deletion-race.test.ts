/**
 * A login in flight across an admin's deletion of the account: refused with 401 invalid_credentials
 * and no session, never a 500. On PostgreSQL the session's INSERT read the user row from before the
 * deletion, then its foreign-key check found the row gone once the deletion committed (23503): the
 * login answered 500 internal_error, as did other writes naming the user. The deterministic tests hold the deletion open on a second
 * connection (it needs DATABASE_URL: PGlite has one connection); the concurrent one runs on both.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import pg from 'pg';
import { buildTestApp, createTestClock, createUser, describeWithApp, login, loginTokens, type TestApp } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/pg-database.ts';

/** A test app on a PostgreSQL database of its own, and a second connection for the held deletion. */
async function setUp(t: TestContext): Promise<{ ta: TestApp; td: TestDatabase; other: pg.Client }> {
  const td = await createTestDatabase('postgres');
  const other = new pg.Client({ connectionString: td.url });
  await other.connect();
  t.after(() => other.end());
  t.after(() => td.cleanup());
  return { ta: await buildTestApp(t, td.db, { clock: createTestClock(new Date()) }), td, other };
}

/**
 * Deletes `userId` on `other` without committing (the row is gone for it and locked for everyone
 * else), starts `request`, waits until the request's backend waits for that lock (no sleep: the
 * server says so), commits, and returns the request's answer.
 */
async function acrossDeletion<T>(other: pg.Client, userId: string, request: () => Promise<T>): Promise<T> {
  await other.query('BEGIN');
  await other.query('DELETE FROM users WHERE id = $1', [userId]);
  const pending = request();
  for (let i = 0; ; i++) {
    const waiting = await other.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
    if (waiting.rowCount) break;
    assert.ok(i < 500, 'the request never waited for the uncommitted DELETE');
    await new Promise((r) => setTimeout(r, 20));
  }
  await other.query('COMMIT');
  return pending;
}

if (process.env.DATABASE_URL) {
  test('a password login whose session insert meets an uncommitted deletion: it waits, then 401 invalid_credentials and no session [postgres]', async (t) => {
    const { ta, td, other } = await setUp(t);
    const user = await createUser(ta.app);
    const answer = await acrossDeletion(other, user.uuid, () => login(ta.app, { username: user.username, password: user.password }));
    assert.equal(answer.statusCode, 401, answer.body);
    assert.equal(answer.json().code, 'invalid_credentials');
    assert.equal((await td.db.query('SELECT 1 FROM sessions WHERE user_id = $1', [user.uuid])).rowCount, 0);
  });

  test('requests authenticated before the deletion that write for the user while it is uncommitted: 401 invalid_token, never 500 [postgres]', async (t) => {
    const { ta, other } = await setUp(t);
    // Each inserts a row naming the user (a pending TOTP secret, a WebAuthn challenge) without locking the user first.
    for (const url of ['/api/v1/auth-totp/enroll', '/api/v1/passkeys/registration/options']) {
      const user = await createUser(ta.app);
      const { access_token } = await loginTokens(ta.app, user);
      const res = await acrossDeletion(other, user.uuid, () => ta.app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${access_token}`, accept: 'application/json' }, payload: {} }));
      assert.equal(res.statusCode, 401, `${url}: ${res.body}`);
      assert.deepEqual([res.json().code, res.json().detail], ['invalid_token', 'The account no longer exists.'], url);
    }
  });
}

describeWithApp('logins at the same moment as the account deletion', (suite) => {
  test('each user deleted while a dozen of their logins run: every answer is 200, 401 or 429 (the limiter), no session survives', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const users = await Promise.all(Array.from({ length: suite.kind === 'postgres' ? 6 : 2 }, () => createUser(ta.app)));
    const outcomes = await Promise.all(users.map(async (user) => {
      const logins = Array.from({ length: 12 }, () => login(ta.app, { username: user.username, password: user.password }));
      const deletion = adminCall(ta, 'DELETE', `/api/v1/admin/users/${user.uuid}`);
      return { deletion: await deletion, logins: await Promise.all(logins) };
    }));
    for (const { deletion, logins } of outcomes) {
      assert.equal(deletion.statusCode, 204, deletion.body);
      for (const res of logins) {
        // After the deletion the name is unknown: those failures count, and the limiter may answer first.
        const refused = (res.statusCode === 401 && res.json().code === 'invalid_credentials') || (res.statusCode === 429 && res.json().code === 'too_many_requests');
        assert.ok(res.statusCode === 200 || refused, `${res.statusCode} ${res.body}`);
      }
    }
    const left = await ta.deps.db.query('SELECT 1 FROM sessions WHERE user_id = ANY($1::uuid[])', [users.map((u) => u.uuid)]);
    assert.equal(left.rowCount, 0, 'a session opened after the deletion');
  });
});
