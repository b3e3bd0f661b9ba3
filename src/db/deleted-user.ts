/**
 * A write that names a user whose row was deleted meanwhile: PostgreSQL's foreign-key violation
 * (SQLSTATE 23503) against `users`. A request authenticated just before an admin's deletion commits
 * reads the user and the session from before it, then its insert's foreign-key check waits for the
 * deletion and fails. That is the client's account ending under it, not a fault of the service: the
 * error handler answers it as an ended session (401) instead of a 500. node-postgres and PGlite both
 * report the SQLSTATE as `code` and the server's `detail` line.
 */
export function isDeletedUserReference(error: unknown): boolean {
  const e = error as { code?: unknown; detail?: unknown } | null;
  return e?.code === '23503' && typeof e.detail === 'string' && e.detail.endsWith('is not present in table "users".');
}
