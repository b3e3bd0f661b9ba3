/**
 * Runs a database suite on every engine available: PGlite in memory always, and a real PostgreSQL
 * server when DATABASE_URL is set (each database it opens there is a fresh `twofold_test_<random>`,
 * created through DATABASE_URL and dropped when the suite ends).
 */
import { randomBytes } from 'node:crypto';
import { after, describe } from 'node:test';
import pg from 'pg';
import type { Database } from '../../src/db/database.ts';
import { migrate } from '../../src/db/migrate.ts';
import { openPostgres } from '../../src/db/postgres.ts';
import { openTestPglite } from './pglite-template.ts';

/** The engines a suite can run on. */
export type DatabaseKind = 'pglite' | 'postgres';

/** A freshly created, migrated database. */
export interface TestDatabase {
  readonly kind: DatabaseKind;
  readonly db: Database;
  /** The database's connection URL (PostgreSQL only: other processes connect to it). */
  readonly url?: string;
  /**
   * Another connection pool to the same database, as a second instance of the service would have.
   * PGlite has only one connection, so there it returns the same `db`.
   */
  connectAgain(poolSize?: number): Promise<Database>;
  /** Closes every connection and drops the database (idempotent). */
  cleanup(): Promise<void>;
}

/** What a suite body receives from withDatabases. */
export interface DatabaseSuiteContext {
  readonly kind: DatabaseKind;
  /** Opens a fresh migrated database, closed (and dropped) when the suite ends. */
  open(): Promise<TestDatabase>;
}

/** Creates a fresh migrated database of the given kind. Call cleanup() when done. */
export async function createTestDatabase(kind: DatabaseKind): Promise<TestDatabase> {
  if (kind === 'pglite') {
    // From a migrated snapshot: initdb per database would cost seconds (see pglite-template.ts).
    const db = await openTestPglite();
    let closed = false;
    return {
      kind,
      db,
      connectAgain: async () => db,
      async cleanup() {
        if (closed) return;
        closed = true;
        await db.close();
      },
    };
  }

  const adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) throw new Error('createTestDatabase("postgres") needs DATABASE_URL');
  const name = `twofold_test_${randomBytes(6).toString('hex')}`;
  await adminQuery(adminUrl, `CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const pools: Database[] = [];
  let db: Database;
  try {
    db = await openPostgres(url.toString(), 5);
    pools.push(db);
    await migrate(db);
  } catch (e) {
    await Promise.all(pools.map((p) => p.close().catch(() => {})));
    await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
    throw e;
  }
  let cleaned = false;
  return {
    kind,
    db,
    url: url.toString(),
    async connectAgain(poolSize = 5) {
      const again = await openPostgres(url.toString(), poolSize);
      pools.push(again);
      return again;
    },
    async cleanup() {
      if (cleaned) return;
      cleaned = true;
      await Promise.all(pools.map((p) => p.close().catch(() => {})));
      // FORCE: a connection a failed test left open must not keep the database alive.
      await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

/** Runs one statement on its own connection (CREATE/DROP DATABASE cannot run in a pool's transaction). */
export async function adminQuery(adminUrl: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/**
 * Declares `describe(`${name} [pglite]`)` and, when DATABASE_URL is set, `describe(`${name} [postgres]`)`
 * (otherwise only the PGlite suite exists), running `fn` in each with a way to open fresh databases.
 */
export function withDatabases(name: string, fn: (ctx: DatabaseSuiteContext) => void): void {
  // The PostgreSQL suite is declared only when a server is configured: never a skipped placeholder.
  const kinds: DatabaseKind[] = process.env.DATABASE_URL ? ['pglite', 'postgres'] : ['pglite'];
  for (const kind of kinds) {
    void describe(`${name} [${kind}]`, () => {
      const opened: TestDatabase[] = [];
      after(async () => {
        await Promise.all(opened.map((d) => d.cleanup()));
      });
      fn({
        kind,
        async open() {
          const d = await createTestDatabase(kind);
          opened.push(d);
          return d;
        },
      });
    });
  }
}
