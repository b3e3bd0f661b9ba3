/** Embedded PostgreSQL (PGlite): the zero-setup default, in a directory or in memory for tests. */
import { PGlite, type PGliteOptions } from '@electric-sql/pglite';
import { ensurePrivateDir } from '../private-dir.ts';
import { committedTransaction, openedTransaction } from './after-commit.ts';
import type { Database, Queryable, QueryResult } from './database.ts';

interface PgliteLike {
  query<T>(sql: string, params?: unknown[]): Promise<{ rows: T[]; affectedRows?: number }>;
}

function wrap(q: PgliteLike): Queryable {
  return {
    async query<T>(sql: string, params: readonly unknown[] = []): Promise<QueryResult<T>> {
      const r = await q.query<T>(sql, params as unknown[]);
      return { rows: r.rows, rowCount: r.affectedRows ?? r.rows.length };
    },
  };
}

/**
 * Opens PGlite at `dataDir` (created if missing), or in memory when `dataDir` is undefined.
 * PGlite is one connection: its transaction() holds the instance exclusively, so statements of
 * concurrent requests are serialised, which is what makes guarded updates atomic here too.
 * `options` are PGlite's own (tests pass precompiled WebAssembly modules and a migrated template).
 */
export async function openPglite(dataDir?: string, options: PGliteOptions = {}): Promise<Database> {
  if (dataDir) ensurePrivateDir(dataDir);
  const pg = new PGlite({ ...options, ...(dataDir ? { dataDir } : {}) });
  await pg.waitReady;
  return pgliteDatabase(pg);
}

/** The Database interface over an open PGlite instance. */
export function pgliteDatabase(pg: PGlite): Database {
  const base = wrap(pg);
  return {
    kind: 'pglite',
    query: base.query,
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      let opened: Queryable | undefined;
      const out = await pg.transaction(async (tx) => fn((opened = openedTransaction(wrap(tx)))));
      if (opened) committedTransaction(opened);
      return out;
    },
    async exec(sql: string) {
      await pg.exec(sql);
    },
    async ping() {
      try {
        await pg.query('SELECT 1');
        return true;
      } catch {
        return false;
      }
    },
    async close() {
      await pg.close();
    },
  };
}
