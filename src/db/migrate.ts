/**
 * Applies the plain SQL migrations in `migrations/` in order; the same files for PGlite and PostgreSQL.
 *
 * A file applies in one transaction with the transactional files before and after it, up to the next
 * file whose first line is exactly `-- twofold:no-transaction`. Such a file is for what PostgreSQL
 * refuses in a transaction block, CREATE/DROP INDEX CONCURRENTLY: an index on a large live table
 * (sessions, events) built in a transaction either holds its SHARE lock across the build, stopping
 * every write, or deadlocks when that lock is upgraded beside a request reading then writing the
 * table. Its statements run one by one, each committing on its own, and the file is recorded as
 * applied only after the last one; a crash in between runs the whole file again, so each of its
 * statements must be re-runnable: `CREATE INDEX CONCURRENTLY IF NOT EXISTS` (enforced), and the
 * runner drops an INVALID index of that name first, as an interrupted build leaves one (IF NOT
 * EXISTS would keep it: never used by reads, yet updated by every write); `DROP … IF EXISTS`.
 *
 * PGlite runs CREATE INDEX CONCURRENTLY too (single-user PostgreSQL: no other session to wait for),
 * so both engines run the same statements; nothing writes there meanwhile anyway (the server migrates
 * before it serves, and the CLI refuses a data directory a server holds). On PostgreSQL an instance
 * starting during a long build waits for it, as for any migration; the instances already serving go on.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Database, Queryable } from './database.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
/** Arbitrary constant: the advisory lock that keeps two starting instances from migrating at once. */
const MIGRATION_LOCK_ID = 727_274_001;
/** Between two tries for the lock while another instance migrates (see takeMigrationLock). */
const LOCK_RETRY_MS = 100;
/** The first line that marks a file as run outside a transaction. */
const NO_TRANSACTION = '-- twofold:no-transaction';
const CONCURRENT_INDEX = /^CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\b/i;
const RERUNNABLE_INDEX = /^CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+("[^"]+"|[\w$]+)\s+ON\s/i;

/** The migration files, in the order they apply (tests pass a directory of their own). */
export function migrationFiles(dir: string = MIGRATIONS_DIR): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.sql'))
    .sort();
}

/** The migrations not yet applied to `db` (all of them on an empty database); applies nothing. */
export async function pendingMigrations(db: Database, dir: string = MIGRATIONS_DIR): Promise<string[]> {
  const exists = await db.query<{ t: string | null }>("SELECT to_regclass('schema_migrations')::text AS t");
  if (!exists.rows[0]?.t) return migrationFiles(dir);
  const done = new Set((await db.query<{ version: string }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
  return migrationFiles(dir).filter((f) => !done.has(f));
}

/** Applies pending migrations; returns the names applied. Safe to run from several instances at once. */
export async function migrate(db: Database, dir: string = MIGRATIONS_DIR): Promise<string[]> {
  const files = migrationFiles(dir);
  return onOneConnection(db, async (conn) => {
    await takeMigrationLock(conn);
    const unlock = () => conn.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_ID]);
    try {
      // Under the lock: instances starting together on a new database each ran this before it, and
      // PostgreSQL fails concurrent CREATE TABLE IF NOT EXISTS of one name (a duplicate pg_type row).
      await conn.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version text PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
      const done = new Set((await conn.query<{ version: string }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
      const applied: string[] = [];
      let batch: Array<{ file: string; sql: string }> = [];
      for (const file of files.filter((f) => !done.has(f))) {
        const sql = readFileSync(join(dir, file), 'utf8');
        if (sql.split('\n', 1)[0]!.trim() !== NO_TRANSACTION) {
          batch.push({ file, sql });
          continue;
        }
        // The transactional files before it commit first: files apply in name order.
        applied.push(...(await applyInTransaction(conn, batch)));
        batch = [];
        await applyWithoutTransaction(conn, file, sql);
        applied.push(file);
      }
      applied.push(...(await applyInTransaction(conn, batch)));
      await unlock();
      return applied;
    } catch (e) {
      // A lock left behind ends with the session anyway; the migration's own error is the one to see.
      await unlock().catch(() => {});
      throw e;
    }
  });
}

/**
 * Takes the migration lock for this session, waiting while another instance holds it. The wait is
 * tries, not pg_advisory_lock: a session blocked in a statement keeps its snapshot, and CREATE INDEX
 * CONCURRENTLY waits for every older snapshot to end, so the holder's build would wait for the
 * waiter and the waiter for the holder (PostgreSQL then aborts one: "deadlock detected").
 */
async function takeMigrationLock(conn: Queryable): Promise<void> {
  for (;;) {
    const r = await conn.query<{ taken: boolean }>('SELECT pg_try_advisory_lock($1) AS taken', [MIGRATION_LOCK_ID]);
    if (r.rows[0]?.taken) return;
    await new Promise((resolve) => setTimeout(resolve, LOCK_RETRY_MS));
  }
}

/** Applies `batch` in one transaction on `conn`, each file recorded in it; returns the names. */
async function applyInTransaction(conn: Queryable, batch: ReadonlyArray<{ file: string; sql: string }>): Promise<string[]> {
  if (batch.length === 0) return [];
  await conn.query('BEGIN');
  try {
    for (const { file, sql } of batch) {
      // Statements are split on lines holding only ';' or ending in ';' outside dollar quotes; our
      // migrations keep to that so they run through the extended protocol inside this transaction.
      for (const statement of splitStatements(sql)) await conn.query(statement);
      await conn.query('INSERT INTO schema_migrations (version) VALUES ($1)', [file]);
    }
    await conn.query('COMMIT');
  } catch (e) {
    await conn.query('ROLLBACK').catch(() => {});
    throw e;
  }
  return batch.map((b) => b.file);
}

/** Runs a no-transaction file statement by statement (each its own transaction), then records it. */
async function applyWithoutTransaction(conn: Queryable, file: string, sql: string): Promise<void> {
  for (const statement of splitStatements(sql)) {
    if (CONCURRENT_INDEX.test(statement)) {
      const name = RERUNNABLE_INDEX.exec(statement)?.[1];
      if (!name) throw new Error(`${file}: CREATE INDEX CONCURRENTLY needs IF NOT EXISTS and a name (the file runs again after a crash)`);
      const left = await conn.query<{ valid: boolean }>('SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass($1)', [name]);
      if (left.rows[0] && !left.rows[0].valid) await conn.query(`DROP INDEX CONCURRENTLY IF EXISTS ${name}`);
    }
    await conn.query(statement);
  }
  await conn.query('INSERT INTO schema_migrations (version) VALUES ($1)', [file]);
}

/**
 * Runs `fn` on one connection of `db`, outside any transaction: the session-level lock and the
 * statements that refuse a transaction block need one session throughout. The Database interface
 * lends a connection only through transaction(), so this ends that transaction at once and opens an
 * empty one again before handing the connection back for the driver's COMMIT (or ROLLBACK). On PGlite
 * the instance is held exclusively meanwhile, as by any transaction, so two runners on one instance
 * (one session: its advisory locks do not exclude each other) take turns.
 */
async function onOneConnection<T>(db: Database, fn: (conn: Queryable) => Promise<T>): Promise<T> {
  return db.transaction(async (conn) => {
    await conn.query('COMMIT');
    let out: T;
    try {
      out = await fn(conn);
    } catch (e) {
      await conn.query('BEGIN').catch(() => {});
      throw e;
    }
    await conn.query('BEGIN');
    return out;
  });
}

/** Splits a migration script into statements (no dollar-quoted bodies in our migrations). */
export function splitStatements(sql: string): string[] {
  return sql
    .split('\n')
    .filter((line) => !line.trim().startsWith('--'))
    .join('\n')
    .split(/;\s*(?:\n|$)/)
    .map((s) => s.trim())
    .filter(Boolean);
}
