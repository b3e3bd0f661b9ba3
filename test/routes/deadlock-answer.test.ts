/**
 * A deadlock PostgreSQL breaks by aborting a request's transaction is answered 503 with Retry-After
 * (nothing was committed; the same request again succeeds), never 500. The cycle is made by the test:
 * a second connection holds a session row, the request (logout-all) takes the user row and waits for
 * that session, then the second connection asks for the user row. The request waited first, so its
 * backend finds the deadlock and is the one aborted.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bearer, createUser, loginTokens } from '../helpers/app.ts';
import { appWithSecondConnection, untilWaitingForLocks } from '../helpers/holds.ts';

if (process.env.DATABASE_URL) {
  test('a request aborted by PostgreSQL\'s deadlock detection gets 503 service_unavailable with Retry-After; sent again it succeeds [postgres]', async (t) => {
    const { ta, td, other, monitor } = await appWithSecondConnection(t);
    const user = await createUser(ta.app);
    const { access_token: access } = await loginTokens(ta.app, user);
    // The test's side checks for deadlocks only after 30 s: the request's backend (1 s, the default)
    // always finds the cycle first, however busy the machine.
    await other.query("SET deadlock_timeout = '30s'");
    await other.query('BEGIN');
    await other.query('SELECT 1 FROM sessions WHERE user_id = $1 FOR UPDATE', [user.uuid]);
    const first = ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout-all', headers: bearer(access) });
    await untilWaitingForLocks(monitor, 1, 'logout-all');
    const cycle = other.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [user.uuid]);
    const res = await first;
    await cycle;
    await other.query('ROLLBACK');
    assert.equal(res.statusCode, 503, res.body);
    assert.equal(res.json().code, 'service_unavailable');
    assert.equal(res.headers['retry-after'], '1');
    assert.equal((await td.db.query('SELECT 1 FROM sessions WHERE user_id = $1 AND revoked_at IS NOT NULL', [user.uuid])).rows.length, 0, 'nothing committed');
    const again = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout-all', headers: bearer(access) });
    assert.equal(again.statusCode, 204, again.body);
  });
}
