/** Applies the plain SQL migrations in `migrations/` in order; the same files for PGlite and PostgreSQL. */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Database } from './database.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
/** Arbitrary constant: the advisory lock that keeps two starting instances from migrating at once. */
const MIGRATION_LOCK_ID = 727_274_001;

/** The migration files, in the order they apply. */
export function migrationFiles(): string[] {
  return readdirSync(MIGRATIONS_DIR)
    .filter((f) => f.endsWith('.sql'))
    .sort();
}

/** The migrations not yet applied to `db` (all of them on an empty database); applies nothing. */
export async function pendingMigrations(db: Database): Promise<string[]> {
  const exists = await db.query<{ t: string | null }>("SELECT to_regclass('schema_migrations')::text AS t");
  if (!exists.rows[0]?.t) return migrationFiles();
  const done = new Set((await db.query<{ version: string }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
  return migrationFiles().filter((f) => !done.has(f));
}

/** Applies pending migrations; returns the names applied. Safe to run from several instances at once. */
export async function migrate(db: Database): Promise<string[]> {
  const files = migrationFiles();
  const applied: string[] = [];
  await db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_ID]);
    // Under the lock: instances starting together on a new database each ran this before it, and
    // PostgreSQL fails concurrent CREATE TABLE IF NOT EXISTS of one name (a duplicate pg_type row).
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version text PRIMARY KEY,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const done = new Set((await tx.query<{ version: string }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
    for (const file of files) {
      if (done.has(file)) continue;
      const sql = readFileSync(MIGRATIONS_DIR + file, 'utf8');
      // Statements are split on lines holding only ';' or ending in ';' outside dollar quotes; our
      // migrations keep to that so they run through the extended protocol inside this transaction.
      for (const statement of splitStatements(sql)) await tx.query(statement);
      await tx.query('INSERT INTO schema_migrations (version) VALUES ($1)', [file]);
      applied.push(file);
    }
  });
  return applied;
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
