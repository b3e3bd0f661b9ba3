/** A PostgreSQL server through a node-postgres pool: the production driver. */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { committedTransaction, openedTransaction } from './after-commit.ts';
import type { Database, Queryable, QueryResult } from './database.ts';

const statementNames = new Map<string, string>();
/**
 * A named query config: node-postgres prepares a named statement once per connection and then only
 * binds and executes it, sparing the server a parse and plan per request. Our statements are a fixed
 * set of constant strings, so the map of names stays small.
 */
function prepared(sql: string, params: readonly unknown[]): pg.QueryConfig {
  let name = statementNames.get(sql);
  if (name === undefined) {
    name = `s_${createHash('sha1').update(sql).digest('hex').slice(0, 16)}`;
    statementNames.set(sql, name);
  }
  return { name, text: sql, values: params as unknown[] };
}

/**
 * Runs a statement prepared; when a migration by another instance changed a table under a prepared
 * `SELECT *` (SQLSTATE 0A000, "cached plan must not change result type"), runs it once unprepared.
 */
async function run(client: pg.Pool | pg.PoolClient, sql: string, params: readonly unknown[]): Promise<pg.QueryResult> {
  try {
    return await client.query(prepared(sql, params));
  } catch (e) {
    if ((e as { code?: string }).code === '0A000') return client.query(sql, params as unknown[]);
    throw e;
  }
}

/** Opens a pool on `url`; fails fast when the server cannot be reached. */
export async function openPostgres(url: string, poolSize = 10): Promise<Database> {
  const pool = new pg.Pool({ connectionString: url, max: poolSize, connectionTimeoutMillis: 5000, idleTimeoutMillis: 30000 });
  // An idle client losing its connection (server restart) must not crash the process.
  pool.on('error', () => {});
  // Nor one checked out for a transaction: the pool listens for errors of idle clients only, and a
  // connection ended between two statements of a transaction (pg_terminate_backend, a restart or a
  // failover) emitted 'error' with no listener, which Node throws: the whole instance went down with
  // every request in flight. The transaction's next statement fails instead, and is rolled back.
  pool.on('connect', (client) => {
    client.on('error', () => {});
  });
  const client = await pool.connect();
  client.release();

  const query = async <T>(sql: string, params: readonly unknown[] = []): Promise<QueryResult<T>> => {
    const r = await run(pool, sql, params);
    return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
  };
  return {
    kind: 'postgres',
    query,
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      const c = await pool.connect();
      let broken = false;
      try {
        await c.query('BEGIN');
        const tx: Queryable = openedTransaction({
          async query<R>(sql: string, params: readonly unknown[] = []) {
            const r = await run(c, sql, params);
            return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
          },
        });
        const out = await fn(tx);
        await c.query('COMMIT');
        committedTransaction(tx);
        return out;
      } catch (e) {
        // A connection that cannot roll back is broken: destroyed, not handed to the next caller.
        await c.query('ROLLBACK').catch(() => {
          broken = true;
        });
        throw e;
      } finally {
        c.release(broken);
      }
    },
    async exec(sql: string) {
      await pool.query(sql);
    },
    async ping() {
      try {
        await pool.query('SELECT 1');
        return true;
      } catch {
        return false;
      }
    },
    async close() {
      await pool.end();
    },
  };
}
