/** SQL for users. Lookups by username and e-mail are case-insensitive (unique on lower()). */
import type { Queryable } from '../database.ts';
import { isPlainAscii } from '../../security/login-names.ts';

/** A user row as stored. */
export interface UserRow {
  id: string;
  username: string;
  email: string;
  full_name: string | null;
  profile: Record<string, unknown>;
  password_hash: string;
  email_verified: boolean;
  is_active: boolean;
  roles: string[];
  signup_mfa: string | null;
  created_at: Date;
  updated_at: Date;
  password_changed_at: Date | null;
  /** Where the sign-up request came from (owner detection for mail quotas); null for admin-created users. */
  signup_ip: string | null;
  /** Last successful login (0002); absent on rows read before the migration's columns were selected. */
  last_login_at?: Date | null;
  /** Set while an admin has deactivated the account (0002); verifying the address does not reactivate it then. */
  deactivated_at?: Date | null;
  /** WebAuthn user handle (random, base64url), set with the first passkey registration options. */
  webauthn_user_id?: string | null;
}

export type NewUser = Pick<UserRow, 'id' | 'username' | 'email' | 'full_name' | 'profile' | 'password_hash' | 'signup_mfa' | 'created_at'> & {
  signup_ip?: string | null;
};

/** Inserts a user; unique violations surface as the driver's error (code 23505, constraint name). */
export async function insertUser(tx: Queryable, u: NewUser): Promise<UserRow> {
  const r = await tx.query<UserRow>(
    `INSERT INTO users (id, username, email, full_name, profile, password_hash, signup_mfa, created_at, updated_at, signup_ip)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) RETURNING *`,
    [u.id, u.username, u.email, u.full_name, JSON.stringify(u.profile), u.password_hash, u.signup_mfa, u.created_at, u.signup_ip ?? null],
  );
  return r.rows[0]!;
}

export async function findUserById(tx: Queryable, id: string): Promise<UserRow | undefined> {
  return (await tx.query<UserRow>('SELECT * FROM users WHERE id = $1', [id])).rows[0];
}

/**
 * The user named `username` in any letter case. A name outside printable ASCII names nobody (see
 * security/login-names.ts): PostgreSQL's lower() folds "admİn" onto "admin", while the limiter keys
 * the attempt under JavaScript's folding, a key of its own; a locked account was reached that way.
 */
export async function findUserByUsername(tx: Queryable, username: string): Promise<UserRow | undefined> {
  if (!isPlainAscii(username)) return undefined;
  return (await tx.query<UserRow>('SELECT * FROM users WHERE lower(username) = lower($1)', [username])).rows[0];
}

/** The user with address `email` in any letter case; outside printable ASCII, nobody (as {@link findUserByUsername}). */
export async function findUserByEmail(tx: Queryable, email: string): Promise<UserRow | undefined> {
  if (!isPlainAscii(email)) return undefined;
  return (await tx.query<UserRow>('SELECT * FROM users WHERE lower(email) = lower($1)', [email])).rows[0];
}

/** The user whose username or e-mail is `login` (a username can't contain '@', so the two never collide). */
export async function findUserByLogin(tx: Queryable, login: string): Promise<UserRow | undefined> {
  return login.includes('@') ? findUserByEmail(tx, login) : findUserByUsername(tx, login);
}

/** Sets a new password (a reset: the e-mailed link wins over whatever was in force). */
export async function updatePasswordHash(tx: Queryable, id: string, hash: string, now: Date): Promise<void> {
  await tx.query('UPDATE users SET password_hash = $2, updated_at = $3, password_changed_at = $3 WHERE id = $1', [id, hash, now]);
}

/**
 * Sets a new password only while the password is still the one changed at `passwordChangedAt` (the
 * one the caller proved); false when it changed. A change whose current password was checked
 * before a reset committed must not overwrite the reset's password. Takes the user row's update
 * lock, so a reset running at once either waits for this commit or makes this update find nothing.
 */
export async function changePasswordIfUnchanged(tx: Queryable, id: string, hash: string, now: Date, passwordChangedAt: Date | null): Promise<boolean> {
  const r = await tx.query(
    `UPDATE users SET password_hash = $2, updated_at = $3, password_changed_at = $3
     WHERE id = $1 AND password_changed_at IS NOT DISTINCT FROM $4::timestamptz`,
    [id, hash, now, passwordChangedAt],
  );
  return r.rowCount > 0;
}

/**
 * Replaces the stored hash by a rehash of the same password (new parameters, or a pre-NFKC hash),
 * only while `oldHash` is still stored: a reset committing between the login's check and this write
 * must not be undone by a hash of the old password. Not a change: password_changed_at stays.
 */
export async function rehashPasswordIfUnchanged(tx: Queryable, id: string, oldHash: string, newHash: string): Promise<boolean> {
  const r = await tx.query('UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2', [id, oldHash, newHash]);
  return r.rowCount > 0;
}

/**
 * Marks the address verified, once: only while it is still the user's address and not yet verified,
 * and with `activate` also activates the account (accounts created inactive until verified). Returns
 * the updated row only to the one request that made the change.
 */
export async function markEmailVerifiedOnce(tx: Queryable, id: string, email: string, now: Date, activate: boolean): Promise<UserRow | undefined> {
  const r = await tx.query<UserRow>(
    // An account an admin deactivated (deactivated_at) stays inactive: the link only ends "inactive until verified".
    `UPDATE users SET email_verified = true, is_active = CASE WHEN $4 AND deactivated_at IS NULL THEN true ELSE is_active END, updated_at = $3
     WHERE id = $1 AND lower(email) = lower($2) AND email_verified = false RETURNING *`,
    [id, email, now, activate],
  );
  return r.rows[0];
}

/** Forgets the second factor chosen at sign-up (used, or never to be used). */
export async function clearSignupMfa(tx: Queryable, id: string): Promise<void> {
  await tx.query('UPDATE users SET signup_mfa = NULL WHERE id = $1', [id]);
}

/** Sets roles and the verified flag at creation by an admin; returns the row. */
export async function setRolesAndVerified(tx: Queryable, id: string, roles: readonly string[], emailVerified: boolean): Promise<UserRow> {
  const r = await tx.query<UserRow>('UPDATE users SET roles = $2::text[], email_verified = $3 WHERE id = $1 RETURNING *', [id, [...roles], emailVerified]);
  return r.rows[0]!;
}

/**
 * Notes a successful login (last_login_at, shown to admins) while the password is still the one the
 * login proved; false when it changed. The guard of a password login's transaction, run as its last
 * statement: the user row is then locked only from here to the commit, so simultaneous logins of one
 * account wait on each other for one statement instead of for their whole transactions. A password
 * change or reset either commits first (this update then finds another password_changed_at, and the
 * login rolls back) or waits for this commit (and then revokes the new session with the others).
 * The same holds for an admin's deactivation (and, with `requireVerified`, an address unmarked as
 * verified): the account must still be allowed to log in when the row is locked.
 */
export async function noteLoginIfPasswordUnchanged(tx: Queryable, id: string, at: Date, passwordChangedAt: Date | null, requireVerified: boolean): Promise<TokenClaimsOfUser | undefined> {
  const r = await tx.query<TokenClaimsOfUser>(
    `UPDATE users SET last_login_at = $2
     WHERE id = $1 AND password_changed_at IS NOT DISTINCT FROM $3::timestamptz AND is_active AND (email_verified OR NOT $4)
     RETURNING username, roles`,
    [id, at, passwordChangedAt, requireVerified],
  );
  return r.rows[0];
}

/**
 * What a login's tokens say about the user, as the statement that locked the row for the login read
 * it: a role an admin removed while the login was in flight is not signed into its access token.
 */
export type TokenClaimsOfUser = Pick<UserRow, 'username' | 'roles'>;

/**
 * As {@link noteLoginIfPasswordUnchanged} for a login without a password (a passkey): notes it, and
 * takes the user row's update lock, only while the account may log in. An admin's deactivation
 * committed since the login's first read makes it match nothing. Also returns password_changed_at as
 * the lock read it: a passkey does not depend on the password, and a reset committed meanwhile must
 * not refuse the sign-in (the session it then opens comes after the reset).
 */
export async function noteLoginIfUsable(tx: Queryable, id: string, at: Date, requireVerified: boolean): Promise<(TokenClaimsOfUser & Pick<UserRow, 'password_changed_at'>) | undefined> {
  const r = await tx.query<TokenClaimsOfUser & Pick<UserRow, 'password_changed_at'>>('UPDATE users SET last_login_at = $2 WHERE id = $1 AND is_active AND (email_verified OR NOT $3) RETURNING username, roles, password_changed_at', [id, at, requireVerified]);
  return r.rows[0];
}

/** Notes a successful login (shown to admins). */
export async function setLastLogin(tx: Queryable, id: string, at: Date): Promise<void> {
  await tx.query('UPDATE users SET last_login_at = $2 WHERE id = $1', [id, at]);
}

export async function setActive(tx: Queryable, id: string, active: boolean, now: Date): Promise<void> {
  await tx.query('UPDATE users SET is_active = $2, updated_at = $3 WHERE id = $1', [id, active, now]);
}

/** The profile plus the state of each second factor, in one round trip (user-info is the hottest read). */
export interface UserWithFactors extends UserRow {
  /** The session's user (the same as id): lets the row go to assertLiveSession as it is. */
  user_id: string;
  totp_active: boolean;
  email_otp_enabled: boolean;
  passkeys: number;
  backup_codes_remaining: number;
}

/**
 * Locks the user's row for an update of it: the first lock of every transaction that touches the
 * user's reset links (so that they all take their locks in one order), and of factor changes
 * (lockBackupCodes).
 */
export async function lockUserForUpdate(tx: Queryable, id: string): Promise<void> {
  await tx.query('SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE', [id]);
}

/**
 * Locks the user's row (FOR SHARE) if the account is active; false when it is not (or gone). A
 * deactivation holds the row's update lock from its check to its commit, so whatever a transaction
 * that took this lock writes is either refused here or seen (and voided) by the deactivation.
 */
export async function lockUserIfActive(tx: Queryable, id: string): Promise<boolean> {
  const r = await tx.query('SELECT 1 FROM users WHERE id = $1 AND is_active FOR SHARE', [id]);
  return r.rows.length > 0;
}

/**
 * Locks the user's row (FOR SHARE) while its password is still the one changed at
 * `passwordChangedAt`; false when it changed. Taken first in a login's transaction, so the lock
 * order matches a password reset's (user row, then sessions and challenges) and the two never deadlock.
 */
export async function lockUserIfPasswordUnchanged(tx: Queryable, id: string, passwordChangedAt: Date | null): Promise<TokenClaimsOfUser | undefined> {
  const r = await tx.query<TokenClaimsOfUser>('SELECT username, roles FROM users WHERE id = $1 AND password_changed_at IS NOT DISTINCT FROM $2::timestamptz FOR SHARE', [id, passwordChangedAt]);
  return r.rows[0];
}
