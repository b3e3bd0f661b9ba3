/** SQL for the links between the provider's sessions and Twofold sessions, and the liveness check. */
import type { Queryable } from '../../database.ts';

export interface SessionLinkRow {
  provider_session_uid: string;
  session_id: string;
  user_id: string;
}

/**
 * Links a provider session to the Twofold session that logged it in, replacing an older link;
 * returns the link it replaced (read under the row's lock), if any.
 */
export async function upsertLink(tx: Queryable, providerSessionUid: string, sessionId: string, userId: string, now: Date): Promise<SessionLinkRow | undefined> {
  const previous = (await tx.query<SessionLinkRow>(
    'SELECT provider_session_uid, session_id, user_id FROM oidc_session_links WHERE provider_session_uid = $1 FOR UPDATE',
    [providerSessionUid],
  )).rows[0];
  await tx.query(
    `INSERT INTO oidc_session_links (provider_session_uid, session_id, user_id, created_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (provider_session_uid) DO UPDATE SET session_id = EXCLUDED.session_id, user_id = EXCLUDED.user_id, created_at = EXCLUDED.created_at`,
    [providerSessionUid, sessionId, userId, now],
  );
  return previous;
}

/**
 * The provider sessions linked to Twofold session `sessionId` of `userId`, while that session is live:
 * an ended one's links are the sweep's to end (with back-channel logouts), never to be moved on.
 */
export async function linksOfLiveSession(tx: Queryable, sessionId: string, userId: string, now: Date): Promise<string[]> {
  const r = await tx.query<{ provider_session_uid: string }>(
    `SELECT l.provider_session_uid FROM oidc_session_links l JOIN sessions s ON s.id = l.session_id
     WHERE l.session_id = $1 AND l.user_id = $2 AND s.revoked_at IS NULL AND s.expires_at > $3`,
    [sessionId, userId, now],
  );
  return r.rows.map((row) => row.provider_session_uid);
}

/**
 * The link of `providerSessionUid` with `live` = its Twofold session is unrevoked and unexpired and its
 * user exists and is active (links outlive a deleted user, so that the sweep can end them). Undefined when the provider session was never linked (no login yet).
 */
export async function findLinkState(tx: Queryable, providerSessionUid: string, now: Date): Promise<(SessionLinkRow & { live: boolean }) | undefined> {
  const r = await tx.query<SessionLinkRow & { live: boolean }>(
    `SELECT l.provider_session_uid, l.session_id, l.user_id,
       COALESCE(s.revoked_at IS NULL AND s.expires_at > $2 AND u.is_active, false) AS live
     FROM oidc_session_links l LEFT JOIN users u ON u.id = l.user_id LEFT JOIN sessions s ON s.id = l.session_id
     WHERE l.provider_session_uid = $1`,
    [providerSessionUid, now],
  );
  return r.rows[0];
}

/**
 * Claims up to `limit` links whose Twofold session has ended (revoked, expired, user deactivated or
 * deleted, or the session row gone) and deletes them, returning them: each is handed to exactly one sweeper, on any instance.
 */
export async function takeEndedLinks(tx: Queryable, now: Date, limit: number): Promise<SessionLinkRow[]> {
  const r = await tx.query<SessionLinkRow>(
    `DELETE FROM oidc_session_links WHERE provider_session_uid IN (
       SELECT l.provider_session_uid FROM oidc_session_links l LEFT JOIN users u ON u.id = l.user_id
       LEFT JOIN sessions s ON s.id = l.session_id
       WHERE s.id IS NULL OR s.revoked_at IS NOT NULL OR s.expires_at <= $1 OR u.id IS NULL OR NOT u.is_active
       LIMIT $2 FOR UPDATE OF l SKIP LOCKED)
     RETURNING provider_session_uid, session_id, user_id`,
    [now, limit],
  );
  return r.rows;
}

/** True when any provider session is linked to a Twofold session (some login went through the provider). */
export async function anyLinks(tx: Queryable): Promise<boolean> {
  const r = await tx.query<{ found: boolean }>('SELECT EXISTS (SELECT 1 FROM oidc_session_links) AS found');
  return r.rows[0]?.found === true;
}

/** Removes the link of a provider session (it ended through the provider itself). */
export async function deleteLink(tx: Queryable, providerSessionUid: string): Promise<SessionLinkRow | undefined> {
  const r = await tx.query<SessionLinkRow>(
    'DELETE FROM oidc_session_links WHERE provider_session_uid = $1 RETURNING provider_session_uid, session_id, user_id',
    [providerSessionUid],
  );
  return r.rows[0];
}
