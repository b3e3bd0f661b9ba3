/**
 * A webhook endpoint deleted while a change queues its event: the change waits for the DELETE and,
 * once it commits, queues no delivery for that endpoint instead of failing the deliveries' foreign
 * key check (which rolled back the change: a sign-up answered 500). Two connections are needed, so
 * this needs a PostgreSQL server (DATABASE_URL); without it this file registers no test (PGlite has one connection).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { buildTestApp, createTestClock, PASSWORD, uniqueName } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';
import { createTestDatabase } from '../helpers/pg-database.ts';

if (process.env.DATABASE_URL) {
  test('an endpoint deleted (uncommitted) while a sign-up queues its event: the sign-up waits, succeeds, and skips it', async (t) => {
    const td = await createTestDatabase('postgres');
    const other = new pg.Client({ connectionString: td.url });
    await other.connect();
    // The second connection ends before the database is dropped (after hooks run in order).
    t.after(() => other.end());
    t.after(() => td.cleanup());
    const ta = await buildTestApp(t, td.db, { env: ADMIN_ENV, clock: createTestClock(new Date()) });
    const deleted = (await adminCall(ta, 'POST', '/api/v1/admin/webhooks', { url: 'https://hooks.example.com/deleted', events: ['*'] })).json<{ id: string }>();
    const kept = (await adminCall(ta, 'POST', '/api/v1/admin/webhooks', { url: 'https://hooks.example.com/kept', events: ['user.created'] })).json<{ id: string }>();

    await other.query('BEGIN');
    await other.query('DELETE FROM webhook_endpoints WHERE id = $1', [deleted.id]);

    const username = uniqueName();
    const signup = ta.app.inject({ method: 'POST', url: '/api/v1/user', payload: { username, email: `${username}@example.com`, password1: PASSWORD, password2: PASSWORD } });
    // The sign-up's transaction is now waiting for the DELETE's row lock (no sleep: its backend says so).
    for (let i = 0; ; i++) {
      const waiting = await other.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
      if (waiting.rowCount) break;
      assert.ok(i < 500, 'the sign-up never waited for the uncommitted DELETE');
      await new Promise((r) => setTimeout(r, 20));
    }
    await other.query('COMMIT');

    const res = await signup;
    assert.equal(res.statusCode, 201, res.body);
    const deliveries = await td.db.query<{ type: string; endpoint_id: string }>(
      `SELECT e.type, d.endpoint_id FROM event_deliveries d JOIN events e ON e.id = d.event_id WHERE e.data->>'user_id' = $1`,
      [res.json<{ uuid: string }>().uuid],
    );
    assert.deepEqual(deliveries.rows, [{ type: 'user.created', endpoint_id: kept.id }], 'one delivery, for the endpoint that still exists');
  });
}
