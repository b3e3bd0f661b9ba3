/**
 * SQL for the OpenID provider's stored models (one table, keyed by kind and the digest of the id).
 * Consumption is a guarded single UPDATE, so two concurrent uses of one code or refresh token cannot
 * both see it unconsumed.
 */
import type { Queryable } from '../../database.ts';

/** A stored model as the adapter writes it. */
export interface OidcPayloadRow {
  kind: string;
  id: string;
  payload: Record<string, unknown>;
  grant_id: string | null;
  uid: string | null;
  user_code: string | null;
  session_uid: string | null;
  account_id: string | null;
  client_id: string | null;
  expires_at: Date | null;
  consumed_at: Date | null;
}

/** Inserts or replaces one model. */
export async function upsertPayload(tx: Queryable, row: Omit<OidcPayloadRow, 'consumed_at'>): Promise<void> {
  await tx.query(
    `INSERT INTO oidc_payloads (kind, id, payload, grant_id, uid, user_code, session_uid, account_id, client_id, expires_at)
     VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10)
     ON CONFLICT (kind, id) DO UPDATE SET payload = EXCLUDED.payload, grant_id = EXCLUDED.grant_id, uid = EXCLUDED.uid,
       user_code = EXCLUDED.user_code, session_uid = EXCLUDED.session_uid, account_id = EXCLUDED.account_id,
       client_id = EXCLUDED.client_id, expires_at = EXCLUDED.expires_at`,
    [row.kind, row.id, JSON.stringify(row.payload), row.grant_id, row.uid, row.user_code, row.session_uid, row.account_id, row.client_id, row.expires_at],
  );
}

/** The unexpired model `kind`/`id`, if any. */
export async function findPayload(tx: Queryable, kind: string, id: string, now: Date): Promise<OidcPayloadRow | undefined> {
  const r = await tx.query<OidcPayloadRow>(
    'SELECT * FROM oidc_payloads WHERE kind = $1 AND id = $2 AND (expires_at IS NULL OR expires_at > $3)',
    [kind, id, now],
  );
  return r.rows[0];
}

/** The unexpired model of `kind` found by another column (uid or user_code). */
export async function findPayloadBy(tx: Queryable, kind: string, column: 'uid' | 'user_code', value: string, now: Date): Promise<OidcPayloadRow | undefined> {
  const r = await tx.query<OidcPayloadRow>(
    `SELECT * FROM oidc_payloads WHERE kind = $1 AND ${column} = $2 AND (expires_at IS NULL OR expires_at > $3) LIMIT 1`,
    [kind, value, now],
  );
  return r.rows[0];
}

/** Marks a model consumed; false when it already was (a concurrent use won). */
export async function consumePayload(tx: Queryable, kind: string, id: string, now: Date): Promise<boolean> {
  const r = await tx.query('UPDATE oidc_payloads SET consumed_at = $3 WHERE kind = $1 AND id = $2 AND consumed_at IS NULL', [kind, id, now]);
  return r.rowCount > 0;
}

/**
 * Takes the decision of interaction `id` (consent given, refused or remembered): true for the one
 * caller that takes it, false for every other, concurrent or later. The guarded UPDATE is the claim:
 * PostgreSQL makes concurrent ones wait for the row and re-check `consumed_at IS NULL`. The engine's
 * own saves of the interaction (its result) leave `consumed_at` alone (upsertPayload).
 */
export async function claimInteraction(tx: Queryable, id: string, now: Date): Promise<boolean> {
  const r = await tx.query("UPDATE oidc_payloads SET consumed_at = $2 WHERE kind = 'Interaction' AND id = $1 AND consumed_at IS NULL", [id, now]);
  return r.rowCount > 0;
}

/** Deletes one model; false when there was none (already deleted). */
export async function deletePayload(tx: Queryable, kind: string, id: string): Promise<boolean> {
  return (await tx.query('DELETE FROM oidc_payloads WHERE kind = $1 AND id = $2', [kind, id])).rowCount > 0;
}

/**
 * Deletes every credential of a grant (codes, tokens and the grant itself). Not an interaction that
 * names the grant: it is a sign-in in progress, not a credential, and the engine revokes the grant of
 * the previous account while switching accounts in the middle of one (its resume must still find it).
 */
export async function deleteByGrantId(tx: Queryable, grantId: string): Promise<void> {
  await tx.query("DELETE FROM oidc_payloads WHERE grant_id = $1 AND kind <> 'Interaction'", [grantId]);
}

/**
 * Deletes the grants of `accountId` (a deleted user). The session-end sweep deletes the grants its
 * sessions and tokens name; a grant none of them names (one saved by a consent whose sign-in was then
 * abandoned before its resume) would otherwise keep the deleted user's id until it expires.
 */
export async function deleteGrantsOfAccount(tx: Queryable, accountId: string): Promise<number> {
  return (await tx.query("DELETE FROM oidc_payloads WHERE kind = 'Grant' AND account_id = $1", [accountId])).rowCount;
}

/** The grant ids held by a provider session's tokens and codes. */
export async function grantIdsOfSession(tx: Queryable, sessionUid: string): Promise<string[]> {
  const r = await tx.query<{ grant_id: string }>(
    'SELECT DISTINCT grant_id FROM oidc_payloads WHERE session_uid = $1 AND grant_id IS NOT NULL',
    [sessionUid],
  );
  return r.rows.map((x) => x.grant_id);
}

/** Deletes every model bound to a provider session, and the session itself. */
export async function deleteBySessionUid(tx: Queryable, sessionUid: string): Promise<void> {
  await tx.query("DELETE FROM oidc_payloads WHERE session_uid = $1 OR (kind = 'Session' AND uid = $1)", [sessionUid]);
}

/** Deletes every grant, code and token of `accountId` for `clientId`; returns the grant ids removed. */
export async function deleteForAccountClient(tx: Queryable, accountId: string, clientId: string): Promise<string[]> {
  const r = await tx.query<{ grant_id: string | null }>(
    'DELETE FROM oidc_payloads WHERE account_id = $1 AND client_id = $2 RETURNING grant_id',
    [accountId, clientId],
  );
  const ids = [...new Set(r.rows.map((x) => x.grant_id).filter((x): x is string => x !== null))];
  if (ids.length) await tx.query('DELETE FROM oidc_payloads WHERE grant_id = ANY($1::text[])', [ids]);
  return ids;
}

/**
 * Removes `clientId`'s place from the provider sessions of `accountId` (a disconnected application);
 * returns the sids it held there, which its back-channel logouts name. Left in place, the session's
 * end would announce a logout to an application already signed out, and a new sign-in in the same
 * browser session would get the old sid back.
 */
export async function dropClientFromAccountSessions(tx: Queryable, accountId: string, clientId: string): Promise<string[]> {
  const r = await tx.query<{ sid: string | null }>(
    `WITH s AS (
       SELECT id, kind, payload->'authorizations'->$2->>'sid' AS sid FROM oidc_payloads
        WHERE kind = 'Session' AND account_id = $1 AND payload->'authorizations' ? $2 FOR UPDATE
     )
     UPDATE oidc_payloads p SET payload = p.payload #- ARRAY['authorizations', $2::text]
       FROM s WHERE p.kind = s.kind AND p.id = s.id RETURNING s.sid`,
    [accountId, clientId],
  );
  return [...new Set(r.rows.map((x) => x.sid).filter((x): x is string => !!x))];
}

/**
 * Deletes every model of a client (the client was removed, or a new one takes its id), and its place
 * in provider sessions: `authorizations[clientId]` holds the sid and grant id the engine hands out
 * again to whichever client answers to that id next (the same sid in its ID tokens and back-channel
 * logouts, a grant id to look up).
 */
export async function deleteForClient(tx: Queryable, clientId: string): Promise<void> {
  await tx.query('DELETE FROM oidc_payloads WHERE client_id = $1', [clientId]);
  await tx.query(
    "UPDATE oidc_payloads SET payload = payload #- ARRAY['authorizations', $1::text] WHERE kind = 'Session' AND payload->'authorizations' ? $1",
    [clientId],
  );
}

/** Removes expired rows; returns how many. */
export async function deleteExpiredPayloads(tx: Queryable, now: Date): Promise<number> {
  // A provider session still linked to a Twofold session stays, expired or not: it names the
  // applications the back-channel logouts go to when that session ends (session-end.ts), and the
  // Twofold session may outlive it (its refresh slides; the provider session's expiry does not).
  const r = await tx.query(
    `DELETE FROM oidc_payloads p WHERE p.expires_at <= $1
       AND NOT (p.kind = 'Session' AND EXISTS (SELECT 1 FROM oidc_session_links l WHERE l.provider_session_uid = p.uid))`,
    [now],
  );
  return r.rowCount;
}
