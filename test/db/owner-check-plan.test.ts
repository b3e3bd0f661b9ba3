/**
 * The mail quota's owner check (a reset mail asked for an IPv6 address) reads a user's newest logins,
 * not all of them: an account logging in every minute has 100,000s of sessions in the 90 days the
 * check remembers, and through the index on user_id alone every one was read and sorted for each
 * reset mail asked for that account. With sessions_user_created_idx it is a backward range scan that
 * stops at the limit: no sort, no sequential scan.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OWNER_MEMORY_DAYS, RECENT_ADDRESSES_SQL, RECENT_NETWORKS } from '../../src/services/mail-quota.ts';
import { withDatabases } from '../helpers/pg-database.ts';

const SESSIONS = 20_000;

withDatabases('mail quota owner check plan', ({ open }) => {
  test(`a user with ${SESSIONS} sessions: the newest ${RECENT_NETWORKS} are read through the index, none sorted`, async () => {
    const { db } = await open();
    const users = await db.query<{ id: string }>(
      `INSERT INTO users (id, username, email, password_hash, created_at, updated_at)
       SELECT gen_random_uuid(), 'owner' || i, 'owner' || i || '@example.com', 'x', now(), now() FROM generate_series(1, 3) AS i RETURNING id`,
    );
    const ids = users.rows.map((r) => r.id);
    // One busy account and two quiet ones, logins spread over the last 80 days.
    await db.query(
      `INSERT INTO sessions (id, user_id, current_jti, amr, aal, ip, created_at, last_used_at, expires_at)
       SELECT gen_random_uuid(), CASE WHEN i % 100 = 0 THEN $2::uuid WHEN i % 100 = 1 THEN $3::uuid ELSE $1::uuid END, gen_random_uuid(),
              ARRAY['pwd'], 'aal1', '2001:db8:' || (i % 50) || '::1', now() - make_interval(mins => i * 5), now(), now() + interval '1 day'
         FROM generate_series(1, $4) AS i`,
      [ids[0], ids[1], ids[2], SESSIONS],
    );
    await db.query('ANALYZE sessions');
    const r = await db.query<Record<string, string>>(`EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ${RECENT_ADDRESSES_SQL}`, [ids[0], new Date(), OWNER_MEMORY_DAYS, RECENT_NETWORKS]);
    const plan = r.rows.map((row) => Object.values(row)[0]).join('\n');
    assert.match(plan, /Index Scan Backward using sessions_user_created_idx on sessions/, plan);
    assert.doesNotMatch(plan, /Seq Scan on sessions|Sort Key: sessions\.created_at/, plan);
    const rows = /Index Scan Backward using sessions_user_created_idx[^\n]*\(actual rows=(\d+)/.exec(plan);
    assert.ok(rows && Number(rows[1]) <= RECENT_NETWORKS, plan);
  });
});
