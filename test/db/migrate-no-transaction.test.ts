/**
 * Migrations marked `-- twofold:no-transaction` (see src/db/migrate.ts): 0014 builds its indexes with
 * CREATE INDEX CONCURRENTLY, outside the transaction the runner used to put every file in (where
 * PostgreSQL refuses it). On both engines: the file applies and is recorded, the transactional files
 * around it keep their batches, an INVALID leftover index is rebuilt, two migrators apply it once. On
 * PostgreSQL: writes to sessions go on while its index builds (a plain CREATE INDEX in a transaction
 * stops them), a build interrupted halfway is rebuilt, and a second migrator arriving during a build
 * waits for it instead of deadlocking with it.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import type { Queryable } from '../../src/db/database.ts';
import { migrate, pendingMigrations } from '../../src/db/migrate.ts';
import { withDatabases, type TestDatabase } from '../helpers/pg-database.ts';

const FILE = '0014_session_and_event_indexes.sql';
const BUILT = ['events_occurred_at_idx', 'sessions_user_created_idx'];
/** Every wait below is a bounded poll of what the server reports; this bounds each test as a whole. */
const BOUND = { timeout: 120_000 };

/** Puts a migrated database back as it was before 0014: its indexes gone, the old one back, the file pending. */
async function unapply(db: Queryable): Promise<void> {
  for (const name of BUILT) await db.query(`DROP INDEX IF EXISTS ${name}`);
  await db.query('CREATE INDEX IF NOT EXISTS sessions_user_id_idx ON sessions (user_id)');
  await db.query('DELETE FROM schema_migrations WHERE version = $1', [FILE]);
}

/**
 * The secondary indexes of sessions and events that 0014 is about: name → validity and oid (a rebuilt
 * index has a new oid). Later migrations' indexes on those tables (0017's live-sessions index) are not.
 */
async function indexes(db: Queryable): Promise<Map<string, { valid: boolean; oid: number }>> {
  const r = await db.query<{ name: string; valid: boolean; oid: number }>(
    `SELECT c.relname AS name, i.indisvalid AS valid, c.oid::int AS oid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE i.indrelid IN ('sessions'::regclass, 'events'::regclass) AND NOT i.indisprimary AND NOT i.indisunique
        AND c.relname <> 'sessions_live_user_created_idx'`,
  );
  return new Map(r.rows.map((row) => [row.name, { valid: row.valid, oid: row.oid }]));
}

async function assertBuilt(db: Queryable): Promise<void> {
  const now = await indexes(db);
  assert.deepEqual([...now.keys()].sort(), BUILT, 'the two indexes, and sessions_user_id_idx (a prefix of the new one) gone');
  for (const name of BUILT) assert.equal(now.get(name)?.valid, true, `${name} is valid`);
  const recorded = await db.query('SELECT 1 FROM schema_migrations WHERE version = $1', [FILE]);
  assert.equal(recorded.rows.length, 1, 'recorded once');
}

/** A user with `n` sessions; returns the user's id. */
async function userWithSessions(db: Queryable, n: number): Promise<string> {
  const id = randomUUID();
  await db.query(
    `INSERT INTO users (id, username, email, password_hash, created_at, updated_at) VALUES ($1, $2, $3, 'x', now(), now())`,
    [id, `u${id.slice(0, 8)}`, `${id.slice(0, 8)}@example.com`],
  );
  await db.query(
    `INSERT INTO sessions (id, user_id, current_jti, amr, aal, created_at, last_used_at, expires_at)
     SELECT gen_random_uuid(), $1, gen_random_uuid(), '{pwd}', 'aal1', now() - i * interval '1 minute', now(), now() + interval '1 day'
       FROM generate_series(1, $2) AS i`,
    [id, n],
  );
  return id;
}

const INSERT_SESSION = `INSERT INTO sessions (id, user_id, current_jti, amr, aal, created_at, last_used_at, expires_at)
  VALUES (gen_random_uuid(), $1, gen_random_uuid(), '{pwd}', 'aal1', now(), now(), now() + interval '1 day')`;

withDatabases('migrations outside a transaction', ({ kind, open }) => {
  test('the indexes file applies statement by statement, is recorded, and is not applied again', BOUND, async () => {
    const { db } = await open();
    await unapply(db);
    assert.deepEqual(await pendingMigrations(db), [FILE]);
    assert.deepEqual(await migrate(db), [FILE]);
    await assertBuilt(db);
    assert.deepEqual(await migrate(db), []);
    assert.deepEqual(await pendingMigrations(db), []);
  });

  test('files apply in name order, a no-transaction file ending the batch before it; a failed batch is rolled back alone', BOUND, async (t) => {
    const d = await open();
    const dir = mkdtempSync(join(tmpdir(), 'twofold-migrations-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, '9001_a.sql'), 'CREATE TABLE fixture_a (x int);\nINSERT INTO fixture_a SELECT generate_series(1, 100);\n');
    // Needs fixture_a committed: a concurrent build sees only committed tables.
    writeFileSync(join(dir, '9002_b.sql'), '-- twofold:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS fixture_a_x_idx ON fixture_a (x);\n');
    writeFileSync(join(dir, '9003_c.sql'), 'CREATE TABLE fixture_c (y int);\n');
    writeFileSync(join(dir, '9004_d.sql'), 'CREATE TABLE fixture_d (z int);\nSELECT 1 / 0;\n');
    await assert.rejects(migrate(d.db, dir), /division by zero/);
    const versions = async () => (await d.db.query<{ version: string }>("SELECT version FROM schema_migrations WHERE version LIKE '90%' ORDER BY version")).rows.map((r) => r.version);
    assert.deepEqual(await versions(), ['9001_a.sql', '9002_b.sql'], 'the batch before the no-transaction file committed, the one after it did not');
    const exists = async (name: string) => (await d.db.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [name])).rows[0]?.t !== null;
    assert.equal(await exists('fixture_a_x_idx'), true);
    assert.equal(await exists('fixture_c'), false, '9003 went with 9004, its batch');

    writeFileSync(join(dir, '9004_d.sql'), 'CREATE TABLE fixture_d (z int);\n');
    // Through another pool where there is one: a lock the failure left held would stop this one.
    const again = await d.connectAgain();
    assert.deepEqual(await migrate(again, dir), ['9003_c.sql', '9004_d.sql']);
    assert.deepEqual(await versions(), ['9001_a.sql', '9002_b.sql', '9003_c.sql', '9004_d.sql']);
  });

  test('a concurrent build without IF NOT EXISTS is refused: after a crash it would fail on its own index', BOUND, async (t) => {
    const { db } = await open();
    const dir = mkdtempSync(join(tmpdir(), 'twofold-migrations-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, '9101_bad.sql'), '-- twofold:no-transaction\nCREATE INDEX CONCURRENTLY fixture_bad_idx ON events (type);\n');
    await assert.rejects(migrate(db, dir), /9101_bad\.sql: CREATE INDEX CONCURRENTLY needs IF NOT EXISTS/);
    assert.deepEqual(await pendingMigrations(db, dir), ['9101_bad.sql']);
  });

  test('an INVALID index left by an interrupted build is rebuilt by the next migrate, a valid one kept', BOUND, async () => {
    const { db } = await open();
    const before = await indexes(db);
    await db.query('DELETE FROM schema_migrations WHERE version = $1', [FILE]);
    // What a crash during the build leaves: the index in the catalog, never valid (as superuser).
    await db.query("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'sessions_user_created_idx'::regclass");
    assert.equal((await indexes(db)).get('sessions_user_created_idx')?.valid, false);

    assert.deepEqual(await migrate(db), [FILE]);
    await assertBuilt(db);
    const after = await indexes(db);
    assert.notEqual(after.get('sessions_user_created_idx')?.oid, before.get('sessions_user_created_idx')?.oid, 'rebuilt, not skipped for its name');
    assert.equal(after.get('events_occurred_at_idx')?.oid, before.get('events_occurred_at_idx')?.oid, 'the valid one kept');
  });

  test('two migrators at once: the file is applied once and both finish', BOUND, async () => {
    const d = await open();
    await unapply(d.db);
    const other = await d.connectAgain(2);
    const results = await Promise.all([migrate(d.db), migrate(other)]);
    assert.deepEqual(results.flat(), [FILE]);
    await assertBuilt(d.db);
  });

  if (kind === 'postgres') {
    /** Clients on the test database: one holds a writer's transaction, one writes, one watches. */
    async function clients(d: TestDatabase, t: { after: (fn: () => Promise<unknown>) => void }, n: number): Promise<pg.Client[]> {
      const list = Array.from({ length: n }, () => new pg.Client({ connectionString: d.url }));
      await Promise.all(list.map((c) => c.connect()));
      t.after(() => Promise.all(list.map((c) => c.end())));
      return list;
    }
    const pidOf = async (c: pg.Client) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;

    /** Polls until a backend whose query matches `like` waits for a lock; returns its pid. */
    async function untilWaiting(monitor: pg.Client, like: string, what: string): Promise<number> {
      for (let i = 0; ; i++) {
        const r = await monitor.query<{ pid: number }>(
          "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1",
          [like],
        );
        if (r.rows[0]) return r.rows[0].pid;
        if (i >= 500) throw new Error(`${what} never waited`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }

    /**
     * Runs `sql` on `writer` and reports whether it finished or waited for a lock (seen by `monitor`),
     * whichever comes first; a blocked write is still running (its promise is in `pending`).
     */
    async function writeOrBlocked(writer: pg.Client, writerPid: number, monitor: pg.Client, sql: string, params: unknown[]) {
      let finished = false;
      const pending = writer.query(sql, params).then(() => {
        finished = true;
      });
      for (let i = 0; ; i++) {
        if (finished) return { outcome: 'written' as const, pending };
        const r = await monitor.query<{ w: string | null }>('SELECT wait_event_type AS w FROM pg_stat_activity WHERE pid = $1', [writerPid]);
        if (r.rows[0]?.w === 'Lock') return { outcome: 'blocked' as const, pending };
        if (i >= 500) throw new Error('the write neither finished nor waited');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }

    test('writes to sessions go on while its index builds; a plain CREATE INDEX in a transaction stops them [postgres]', BOUND, async (t) => {
      const d = await open();
      await unapply(d.db);
      const userId = await userWithSessions(d.db, 500);
      const [holder, writer, monitor, plain] = await clients(d, t, 4);
      const writerPid = await pidOf(writer!);

      // A request's transaction that has written to sessions and is still open: every index build
      // waits for it. Meanwhile other requests write.
      await holder!.query('BEGIN');
      await holder!.query(INSERT_SESSION, [userId]);

      // The old way, for comparison: the build's SHARE lock is queued behind the open writer, and
      // every later write queues behind the build.
      await plain!.query('BEGIN');
      const plainBuild = plain!.query('CREATE INDEX sessions_plain_idx ON sessions (user_id, created_at)');
      await untilWaiting(monitor!, 'CREATE INDEX sessions_plain_idx%', 'the plain build');
      const stopped = await writeOrBlocked(writer!, writerPid, monitor!, INSERT_SESSION, [userId]);
      assert.equal(stopped.outcome, 'blocked', 'a plain CREATE INDEX stops the writes');
      await holder!.query('COMMIT');
      await plainBuild;
      await plain!.query('ROLLBACK');
      await stopped.pending;

      await holder!.query('BEGIN');
      await holder!.query(INSERT_SESSION, [userId]);
      let migrated = false;
      const run = migrate(d.db).finally(() => {
        migrated = true;
      });
      // Either form of the build (a plain one in the migration's transaction would queue the writes).
      await untilWaiting(monitor!, 'CREATE INDEX %sessions_user_created_idx%', 'the build');
      const written = await writeOrBlocked(writer!, writerPid, monitor!, INSERT_SESSION, [userId]);
      assert.equal(written.outcome, 'written', 'an insert goes on during the build');
      const updated = await writeOrBlocked(writer!, writerPid, monitor!, "UPDATE sessions SET last_used_at = now() WHERE user_id = $1 AND created_at < now() - interval '1 hour'", [userId]);
      assert.equal(updated.outcome, 'written', 'so do updates');
      await holder!.query(INSERT_SESSION, [userId]);
      const progress = await monitor!.query("SELECT command FROM pg_stat_progress_create_index WHERE relid = 'sessions'::regclass");
      assert.deepEqual(progress.rows, [{ command: 'CREATE INDEX CONCURRENTLY' }], 'all of it while the build was under way');
      assert.equal(migrated, false);

      await holder!.query('COMMIT');
      assert.deepEqual(await run, [FILE]);
      await assertBuilt(d.db);
      const count = await d.db.query<{ n: number }>('SELECT count(*)::int AS n FROM sessions WHERE user_id = $1', [userId]);
      assert.equal(count.rows[0]!.n, 500 + 5, 'every write kept');
    });

    test('a build interrupted halfway leaves an INVALID index, not recorded; the next migrate rebuilds it [postgres]', BOUND, async (t) => {
      const d = await open();
      await unapply(d.db);
      const userId = await userWithSessions(d.db, 10);
      const [holder, monitor] = await clients(d, t, 2);
      await holder!.query('BEGIN');
      await holder!.query(INSERT_SESSION, [userId]);
      const run = migrate(d.db);
      const builder = await untilWaiting(monitor!, 'CREATE INDEX CONCURRENTLY IF NOT EXISTS sessions_user_created_idx%', 'the concurrent build');
      await monitor!.query('SELECT pg_cancel_backend($1)', [builder]);
      await assert.rejects(run, /canceling statement/);
      await holder!.query('COMMIT');
      assert.equal((await indexes(d.db)).get('sessions_user_created_idx')?.valid, false, 'the interrupted build left its index behind');
      assert.deepEqual(await pendingMigrations(d.db), [FILE]);

      assert.deepEqual(await migrate(d.db), [FILE]);
      await assertBuilt(d.db);
    });

    test('a migrator arriving while another builds waits for it, without a deadlock, and both finish [postgres]', BOUND, async (t) => {
      const d = await open();
      await unapply(d.db);
      const userId = await userWithSessions(d.db, 10);
      const [holder, monitor] = await clients(d, t, 2);
      await holder!.query('BEGIN');
      await holder!.query(INSERT_SESSION, [userId]);
      const first = migrate(d.db);
      const builder = await untilWaiting(monitor!, 'CREATE INDEX CONCURRENTLY IF NOT EXISTS sessions_user_created_idx%', 'the concurrent build');
      const second = migrate(await d.connectAgain(2));
      // Until the second has asked for the migration lock (and been told to wait) while the build runs:
      // had it blocked in pg_advisory_lock, its snapshot would hold up the build, and the build it.
      for (let i = 0; ; i++) {
        const asked = await monitor!.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND pid NOT IN ($1, pg_backend_pid()) AND query LIKE '%advisory_lock%'", [builder]);
        if (asked.rows.length > 0) break;
        if (i >= 500) throw new Error('the second migrator never asked for the lock');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await holder!.query('COMMIT');
      const results = await Promise.allSettled([first, second]);
      assert.deepEqual(results.map((r) => (r.status === 'fulfilled' ? r.value : String(r.reason))), [[FILE], []]);
      await assertBuilt(d.db);
    });
  }
});
