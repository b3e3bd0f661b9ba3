/** The database interface shared by the PGlite and node-postgres drivers. Only repositories use it. */

/** Result of one statement. */
export interface QueryResult<T> {
  rows: T[];
  /** Rows inserted, updated or deleted (0 for SELECT on some drivers; use rows for those). */
  rowCount: number;
}

/** Anything that runs SQL: the database itself or an open transaction. */
export interface Queryable {
  query<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<T>>;
}

/** A database: runs statements, opens transactions, runs multi-statement scripts. */
export interface Database extends Queryable {
  readonly kind: 'pglite' | 'postgres';
  /** Runs `fn` in one transaction; commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Runs a script of several statements (migrations). */
  exec(sql: string): Promise<void>;
  /** True when the database answers a trivial query. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}
