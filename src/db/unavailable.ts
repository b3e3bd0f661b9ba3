/**
 * Whether an error means the database could not be reached or lost the connection, rather than a
 * fault of the request or of our code: the error handler answers it 503 with Retry-After instead of
 * 500, an outage to wait out rather than a bug. Only node-postgres reports these; PGlite runs in the
 * process and has no connection to lose.
 */

/** Retry-After of an answer the database could not serve: the pool gives up connecting after 5 s. */
export const DATABASE_RETRY_AFTER_SECONDS = '5';

/**
 * SQLSTATEs of a server that ends or refuses the session (as FATAL errors): admin shutdown, crash
 * shutdown, cannot connect now (starting up, shutting down, in recovery), too many connections, and
 * 55000, which `ALTER DATABASE … ALLOW_CONNECTIONS false` sends to new sessions. Class 08 (connection
 * exceptions) is matched by its prefix.
 */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '55000']);

/**
 * node-postgres's and pg-pool's own errors when a connection ends or cannot be made in time
 * (node_modules/pg/lib/client.js, pg-pool/index.js). "Connection terminated" also starts pg-pool's
 * "Connection terminated due to connection timeout" (connectionTimeoutMillis spent connecting).
 */
const DRIVER_MESSAGES = [/^Connection terminated\b/, /^Client has encountered a connection error and is not queryable$/, /^timeout exceeded when trying to connect$/];

/** Socket errors of the database connection, as Node reports them (`code` of a system error). */
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN']);

interface ErrorFields {
  code?: unknown;
  severity?: unknown;
  syscall?: unknown;
}

/** True when `err` says the database is unreachable or dropped the connection (see the module comment). */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  // Node's connect to a host of several addresses fails with all of its attempts' errors.
  if (err instanceof AggregateError) return err.errors.length > 0 && err.errors.every(isDatabaseUnavailable);
  const e = err as Error & ErrorFields;
  const code = typeof e.code === 'string' ? e.code : undefined;
  // A server error (node-postgres's DatabaseError carries the SQLSTATE and a severity).
  if (code !== undefined && typeof e.severity === 'string') {
    // Only a FATAL error ends or refuses the session. The same SQLSTATEs at ERROR severity are the
    // request's or our code's: 08P01 "bind message supplies 1 parameters, but prepared statement
    // requires 2" is a protocol violation of a wrong query, on a connection that works on, and a 500.
    if (e.severity !== 'FATAL') return false;
    return code.startsWith('08') || UNAVAILABLE_SQLSTATES.has(code);
  }
  // A socket error has its system call (connect, read, getaddrinfo…); other errors that merely carry
  // one of these codes (an HTTP client's, say) are not the database's.
  if (code !== undefined && SOCKET_CODES.has(code) && typeof e.syscall === 'string') return true;
  return DRIVER_MESSAGES.some((m) => m.test(e.message));
}
