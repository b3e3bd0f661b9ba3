/**
 * The admin user search stays fast at scale: with 100 000 users (a million in the README's plan) each
 * page is an index range scan of users_username_search_idx / users_email_search_idx, with no
 * sequential scan and no sort, and it reads about one page of rows, not the table.
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import type { Database } from '../../src/db/database.ts';
import { searchSqlForExplain, searchUsersPage } from '../../src/db/repositories/admin/users.ts';
import { withDatabases } from '../helpers/pg-database.ts';

const ROWS = 100_000;

/** EXPLAIN (ANALYZE) of the search SQL as one text. */
async function explain(db: Database, phase: 'username' | 'email', params: unknown[]): Promise<string> {
  const r = await db.query<Record<string, string>>(`EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ${searchSqlForExplain(phase)}`, params);
  return r.rows.map((row) => Object.values(row)[0]).join('\n');
}

withDatabases('admin user search plan', ({ open }) => {
  let db: Database;
  before(async () => {
    db = (await open()).db;
    // Usernames u0000000…, e-mails m…@example.com in another order, so the two keys differ.
    await db.query(
      `INSERT INTO users (id, username, email, password_hash, created_at, updated_at)
       SELECT gen_random_uuid(), 'u' || lpad(i::text, 7, '0'), 'm' || lpad(((i * 7919) % $1)::text, 7, '0') || '@example.com', 'x', now(), now()
       FROM generate_series(1, $1) AS i`,
      [ROWS],
    );
    await db.query('ANALYZE users');
  });

  test(`a page at ${ROWS} users is an index range scan (no seq scan, no sort), for each key and for a cursor deep inside`, async () => {
    for (const phase of ['username', 'email'] as const) {
      const prefix = phase === 'username' ? 'u00' : 'm00';
      const plan = await explain(db, phase, [51, prefix, phase === 'username' ? 'u0050000' : 'm0050000@example.com', '00000000-0000-4000-8000-000000000000']);
      assert.match(plan, new RegExp(`Index (Only )?Scan using users_${phase}_search_idx`), plan);
      assert.doesNotMatch(plan, /Seq Scan|Sort/, plan);
      // The scan stops at the page: ~51 rows, not 100 000.
      const rows = /Index (?:Only )?Scan[^\n]*\(actual rows=(\d+)/.exec(plan);
      assert.ok(rows && Number(rows[1]) <= 51, plan);
    }
  });

  test('the repository walks the same order the plan serves', async () => {
    const first = await searchUsersPage(db, 'U000001', { phase: 'username' }, 5);
    assert.deepEqual(first.map((r) => r.username), ['u0000010', 'u0000011', 'u0000012', 'u0000013', 'u0000014']);
    const next = await searchUsersPage(db, 'u000001', { phase: 'username', key: first.at(-1)!.search_key, id: first.at(-1)!.id }, 3);
    assert.deepEqual(next.map((r) => r.username), ['u0000015', 'u0000016', 'u0000017']);
  });
});
