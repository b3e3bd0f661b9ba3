/**
 * The session check of authenticated requests, batched. Every request with an access token reads its
 * session (no cache: a revoked session is refused at once, on every instance), and under load dozens
 * of those reads arrive in the same turn of the event loop. A lookup here joins a batch that goes to
 * the database as one statement (`WHERE s.id = ANY($1)`) once the current I/O phase is over
 * (setImmediate), so simultaneous requests share one round trip instead of one each.
 *
 * Nothing is answered from an earlier read: a batch's statement starts after every request in it has
 * arrived, so a session revoked before a request arrived is seen revoked by that request. Each caller
 * checks expiry against its own clock. Only the database itself is batched (the type says so), never
 * an open transaction (those use findLiveSessionUser in sessions.ts).
 *
 * DataLoader (graphql/dataloader) does the batching, with its cache off.
 */
import DataLoader from 'dataloader';
import type { Database } from '../database.ts';
import type { UserWithFactors } from './users.ts';

/** The most sessions one statement asks for; more simultaneous lookups make several batches. */
const MAX_BATCH = 100;
/** Node's own setImmediate, taken at load: a test that mocks timers must not stall every authenticated request. */
const flushLater = setImmediate;
/** Session ids are UUIDs we issued; anything else cannot match and must not fail a batch's cast. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

interface SessionFields {
  session_id: string;
  session_expires_at: Date;
}

/** A live session's user, as an access token's check needs it. */
export interface LiveSessionUser {
  user_id: string;
  is_active: boolean;
  roles: string[];
}

const LIVE_SQL = `SELECT s.id AS session_id, s.expires_at AS session_expires_at, s.user_id, u.is_active, u.roles
  FROM sessions s JOIN users u ON u.id = s.user_id
  WHERE s.id = ANY($1::uuid[]) AND s.revoked_at IS NULL`;

const INFO_SQL = `SELECT u.*, s.id AS session_id, s.expires_at AS session_expires_at, s.user_id,
    COALESCE((SELECT t.active_secret IS NOT NULL FROM totp_factors t WHERE t.user_id = u.id), false) AS totp_active,
    COALESCE((SELECT e.enabled_at IS NOT NULL FROM email_otp_factors e WHERE e.user_id = u.id), false) AS email_otp_enabled,
    (SELECT count(*)::int FROM passkeys p WHERE p.user_id = u.id) AS passkeys,
    (SELECT count(*)::int FROM backup_codes b WHERE b.user_id = u.id) AS backup_codes_remaining
  FROM sessions s JOIN users u ON u.id = s.user_id
  WHERE s.id = ANY($1::uuid[]) AND s.revoked_at IS NULL`;

type Loader<Row> = DataLoader<string, (Row & SessionFields) | undefined>;

const loaders = new WeakMap<Database, { live: Loader<LiveSessionUser>; info: Loader<UserWithFactors> }>();

function loader<Row>(db: Database, sql: string): Loader<Row> {
  return new DataLoader<string, (Row & SessionFields) | undefined>(async (ids) => {
    const wanted = [...new Set(ids.filter((id) => UUID.test(id)).map((id) => id.toLowerCase()))];
    const found = new Map<string, Row & SessionFields>();
    if (wanted.length > 0) {
      for (const row of (await db.query<Row & SessionFields>(sql, [wanted])).rows) found.set(row.session_id, row);
    }
    return ids.map((id) => found.get(id.toLowerCase()));
  }, { cache: false, maxBatchSize: MAX_BATCH, batchScheduleFn: (flush) => flushLater(flush) });
}

function loadersOf(db: Database) {
  let l = loaders.get(db);
  if (!l) {
    l = { live: loader<LiveSessionUser>(db, LIVE_SQL), info: loader<UserWithFactors>(db, INFO_SQL) };
    loaders.set(db, l);
  }
  return l;
}

function liveAt<Row>(row: (Row & SessionFields) | undefined, now: Date): (Row & SessionFields) | undefined {
  return row && row.session_expires_at.getTime() > now.getTime() ? row : undefined;
}

/** The user of a live session (not revoked, not expired at `now`); undefined when it has ended. */
export async function readLiveSessionUser(db: Database, sessionId: string, now: Date): Promise<LiveSessionUser | undefined> {
  return liveAt(await loadersOf(db).live.load(sessionId), now);
}

/**
 * The profile and factor state of the user of a live session: user-info's one read, which is also its
 * session check. Undefined when the session has ended.
 */
export async function readUserInfoForSession(db: Database, sessionId: string, now: Date): Promise<UserWithFactors | undefined> {
  return liveAt(await loadersOf(db).info.load(sessionId), now);
}
