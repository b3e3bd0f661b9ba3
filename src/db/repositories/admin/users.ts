/** SQL of the admin user API: keyset search, the admin view of a user, role and state changes, erasure. */
import type { Queryable } from '../../database.ts';
import { clearSignupMfa, type UserRow } from '../users.ts';

/** A user row with its second-factor summary, as admins see it. */
export interface AdminUserRow extends UserRow {
  totp_active: boolean;
  email_otp_enabled: boolean;
  backup_codes_remaining: number;
  passkeys: number;
}

/** Which key a search page walks: usernames first, then e-mail addresses whose username did not match. */
export type SearchPhase = 'username' | 'email';

/** Where a search page starts: after (key, id) in `phase`'s order; no key = from the start of the phase. */
export interface SearchPosition {
  phase: SearchPhase;
  key?: string;
  id?: string;
}

const FACTORS = `
  EXISTS (SELECT 1 FROM totp_factors t WHERE t.user_id = u.id AND t.active_secret IS NOT NULL) AS totp_active,
  EXISTS (SELECT 1 FROM email_otp_factors e WHERE e.user_id = u.id AND e.enabled_at IS NOT NULL) AS email_otp_enabled,
  (SELECT count(*)::int FROM backup_codes b WHERE b.user_id = u.id) AS backup_codes_remaining,
  (SELECT count(*)::int FROM passkeys p WHERE p.user_id = u.id) AS passkeys`;

/**
 * One page of users whose lower-cased username (phase 'username') or e-mail (phase 'email') starts
 * with `prefix`, in (lower(key) COLLATE "C", id) order after `pos`. Each phase is one range scan of
 * users_username_search_idx / users_email_search_idx (0002): `>= prefix AND < prefix || U+10FFFF`
 * bounds the prefix, the row comparison skips to the cursor, LIMIT stops the scan — the cost is the
 * page, not the table. The e-mail phase leaves out users the username phase already listed.
 * Returns rows with `search_key`, the key the next cursor continues from.
 */
export async function searchUsersPage(tx: Queryable, prefix: string, pos: SearchPosition, limit: number): Promise<Array<AdminUserRow & { search_key: string }>> {
  const key = pos.phase === 'username' ? 'lower(u.username) COLLATE "C"' : 'lower(u.email) COLLATE "C"';
  const params: unknown[] = [limit];
  const where: string[] = [];
  if (prefix !== '') {
    params.push(prefix);
    const p = `$${params.length}`;
    where.push(`${key} >= lower(${p}) AND ${key} < lower(${p}) || chr(1114111)`);
    if (pos.phase === 'email') {
      where.push(`NOT (lower(u.username) COLLATE "C" >= lower(${p}) AND lower(u.username) COLLATE "C" < lower(${p}) || chr(1114111))`);
    }
  }
  if (pos.key !== undefined && pos.id !== undefined) {
    params.push(pos.key, pos.id);
    where.push(`(${key}, u.id) > ($${params.length - 1} COLLATE "C", $${params.length}::uuid)`);
  }
  const r = await tx.query<AdminUserRow & { search_key: string }>(
    `SELECT u.*, ${key} AS search_key, ${FACTORS}
     FROM users u ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
     ORDER BY ${key}, u.id LIMIT $1`,
    params,
  );
  return r.rows;
}

/** The SQL a search page runs, for EXPLAIN in tests and the README (same text as searchUsersPage builds). */
export function searchSqlForExplain(phase: SearchPhase): string {
  const key = phase === 'username' ? 'lower(u.username) COLLATE "C"' : 'lower(u.email) COLLATE "C"';
  const notByUsername = phase === 'email' ? `AND NOT (lower(u.username) COLLATE "C" >= lower($2) AND lower(u.username) COLLATE "C" < lower($2) || chr(1114111))` : '';
  return `SELECT u.id FROM users u WHERE ${key} >= lower($2) AND ${key} < lower($2) || chr(1114111) ${notByUsername}
          AND (${key}, u.id) > ($3 COLLATE "C", $4::uuid) ORDER BY ${key}, u.id LIMIT $1`;
}

/** One user with the factor summary. */
export async function findAdminUser(tx: Queryable, id: string): Promise<AdminUserRow | undefined> {
  return (await tx.query<AdminUserRow>(`SELECT u.*, ${FACTORS} FROM users u WHERE u.id = $1`, [id])).rows[0];
}

/** Locks the user row for a change and returns it (FOR UPDATE: two admin changes at once take turns). */
export async function lockUser(tx: Queryable, id: string): Promise<UserRow | undefined> {
  return (await tx.query<UserRow>('SELECT * FROM users WHERE id = $1 FOR UPDATE', [id])).rows[0];
}

/** Advisory lock id that serialises the changes admins (people) make (see {@link lockActiveAdminForChange}). */
const ADMIN_CHANGES_LOCK_ID = 727_274_006;

/**
 * For a change an admin person makes, as its transaction's first statement: takes the admin-changes
 * lock (admins acting on each other take turns instead of deadlocking on each other's rows), then
 * re-reads the admin, locked until commit. False when they are no longer an active admin. A
 * deactivation or demotion committed since the request was authorised is seen; one still to come
 * waits for this change, which then came first.
 */
export async function lockActiveAdminForChange(tx: Queryable, adminId: string): Promise<boolean> {
  await tx.query('SELECT pg_advisory_xact_lock($1)', [ADMIN_CHANGES_LOCK_ID]);
  // FOR UPDATE, as the change takes its target (lockUser): an admin acting on its own account then
  // holds the lock it needs from the start, with no upgrade from a shared one to wait in.
  const r = await tx.query(`SELECT 1 FROM users WHERE id = $1 AND is_active AND 'admin' = ANY (roles) FOR UPDATE`, [adminId]);
  return r.rows.length > 0;
}

/** Advisory lock id that serialises changes taking the admin role or activity away (see {@link countOtherActiveAdmins}). */
const ADMINS_LOCK_ID = 727_274_005;

/**
 * Active users other than `exceptId` holding the `admin` role, counted under a transaction-wide
 * advisory lock: of two admins demoting each other at once, the second counts after the first has
 * committed (READ COMMITTED reads anew per statement) and sees no one left.
 */
export async function countOtherActiveAdmins(tx: Queryable, exceptId: string): Promise<number> {
  await tx.query('SELECT pg_advisory_xact_lock($1)', [ADMINS_LOCK_ID]);
  const r = await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM users WHERE 'admin' = ANY (roles) AND is_active AND id <> $1`, [exceptId]);
  return r.rows[0]!.n;
}

export async function updateUserRoles(tx: Queryable, id: string, roles: readonly string[], now: Date): Promise<void> {
  await tx.query('UPDATE users SET roles = $2::text[], updated_at = $3 WHERE id = $1', [id, [...roles], now]);
}

/** Sets is_active; deactivation by an admin is remembered in deactivated_at (e-mail verification must not undo it). */
export async function updateUserActive(tx: Queryable, id: string, active: boolean, now: Date): Promise<void> {
  await tx.query('UPDATE users SET is_active = $2, deactivated_at = CASE WHEN $2 THEN NULL ELSE $3::timestamptz END, updated_at = $3 WHERE id = $1', [id, active, now]);
}

export async function updateUserVerified(tx: Queryable, id: string, verified: boolean, now: Date): Promise<void> {
  await tx.query('UPDATE users SET email_verified = $2, updated_at = $3 WHERE id = $1', [id, verified, now]);
}

/**
 * Deletes every outbox row for `address`, pending (verification links, reset links, codes: an erased
 * user's secrets must not be delivered or kept), delivered or given up. Returns how many went.
 */
export async function eraseMailTo(tx: Queryable, address: string): Promise<number> {
  const r = await tx.query('DELETE FROM outbox WHERE lower(to_address) = lower($1)', [address]);
  return r.rowCount;
}

/** Deletes the user; sessions, factors, codes, challenges and tokens go with it (ON DELETE CASCADE). */
export async function deleteUserRow(tx: Queryable, id: string): Promise<boolean> {
  return (await tx.query('DELETE FROM users WHERE id = $1', [id])).rowCount > 0;
}

/**
 * Removes every second factor of a user (TOTP active and pending, e-mailed codes and their live
 * codes, backup codes) and the sign-up choice of e-mailed codes (verifying the address later must
 * not switch them back on). Returns which factors were active.
 */
export async function deleteSecondFactors(tx: Queryable, userId: string): Promise<{ totp: boolean; email: boolean; backupCodes: number }> {
  // One statement after the other: a transaction is one connection.
  const totp = await tx.query<{ active: boolean }>('DELETE FROM totp_factors WHERE user_id = $1 RETURNING active_secret IS NOT NULL AS active', [userId]);
  const email = await tx.query<{ enabled: boolean }>('DELETE FROM email_otp_factors WHERE user_id = $1 RETURNING enabled_at IS NOT NULL AS enabled', [userId]);
  await tx.query('DELETE FROM email_otps WHERE user_id = $1', [userId]);
  const codes = await tx.query('DELETE FROM backup_codes WHERE user_id = $1', [userId]);
  await clearSignupMfa(tx, userId);
  return { totp: totp.rows.some((r) => r.active), email: email.rows.some((r) => r.enabled), backupCodes: codes.rowCount };
}
