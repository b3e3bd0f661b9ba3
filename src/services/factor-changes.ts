/**
 * Rules shared by every change of a user's second factors (TOTP, e-mailed codes, passkeys): who may make it,
 * and what happens to the backup codes when the last factor goes.
 */
import type { Deps } from '../deps.ts';
import type { Queryable } from '../db/database.ts';
import { AppError } from '../errors.ts';
import type { MfaMethod } from '../config.ts';
import { deleteBackupCodes, lockBackupCodes } from '../db/repositories/backup-codes.ts';
import { isEmailOtpEnabled } from '../db/repositories/email-otps.ts';
import { findTotpFactor } from '../db/repositories/totp-factors.ts';
import { countPasskeys } from '../db/repositories/passkeys/credentials.ts';
import { findUserById, type UserRow } from '../db/repositories/users.ts';
import { findSession, lockLiveSessionUser, revokeAllSessions } from '../db/repositories/sessions.ts';
import { assertLiveSession, requireAal2, type AuthContext } from './authenticate.ts';
import { recordSessionsRevoked } from './audit/login-events.ts';
import type { AuditContext } from './audit/record.ts';
import type { FactorState } from './second-factors.ts';

/** The caller's user row (its session was live a moment ago; a deleted user is an invalid token). */
export async function callerUser(deps: Deps, auth: AuthContext): Promise<UserRow> {
  const user = await findUserById(deps.db, auth.userId);
  if (!user) throw new AppError('invalid_token', { detail: 'The user of this session no longer exists.' });
  return user;
}

/** 400 method_not_enabled unless the operator offers `method` (MFA_METHODS). */
export function assertMethodOffered(deps: Deps, method: MfaMethod): void {
  if (!deps.config.mfaMethods.includes(method)) {
    throw new AppError('method_not_enabled', { detail: `This service does not offer ${method === 'totp' ? 'TOTP' : 'e-mailed codes'} as a second factor.` });
  }
}

/** How soon after the login that opened the session a factor may be bound from it. */
export const FACTOR_BINDING_LOGIN_MAX_AGE_SECONDS = 600;

/**
 * Who may bind an authenticator. Adding or replacing a factor while another one is active needs an
 * aal2 session (NIST SP 800-63B §6.1.2.1: binding a new authenticator needs the strongest
 * authentication already available). Otherwise a password alone — an old aal1 session — could add a
 * weaker factor and then log in through it, around the authenticator the user set up. `others` is
 * the state with the factor being changed left out, as stored (a factor MFA_METHODS no longer offers
 * still counts).
 *
 * Every binding also needs a session whose login is recent (FACTOR_BINDING_LOGIN_MAX_AGE_SECONDS), as
 * "sudo modes" ask: a factor outlives the sessions and a password reset keeps it, so a stolen session
 * (a copied refresh cookie, a computer left signed in) that could bind its own authenticator would
 * keep its way in after the owner's "log out everywhere" and reset; as the account's first factor it
 * would even lock the owner out. `loginAt` is the session's start when the caller has it (read under
 * the lock).
 */
export async function requireBindingProof(deps: Pick<Deps, 'db' | 'clock'>, auth: AuthContext, others: { totp: boolean; email: boolean; passkey: boolean }, loginAt?: Date): Promise<void> {
  if (others.totp || others.email || others.passkey) requireAal2(auth);
  // A session that is gone is refused by the live-session checks, not here.
  const since = loginAt ?? (await findSession(deps.db, auth.sessionId))?.created_at;
  if (since) requireRecentLogin(deps, since, 'Adding a second factor', 'then add it');
}

/**
 * 403 step_up_required unless the session's login (`loginAt`, read under the lock of factor changes)
 * is at most FACTOR_BINDING_LOGIN_MAX_AGE_SECONDS old. Every change of the factors a session can make
 * without proving the password or a code again asks for it: adding a factor (above), minting backup
 * codes (they pass as the second factor at login, so a thief holding an old aal2 session could mint
 * a set, void the owner's, and log in with the password after "log out everywhere"), and turning a
 * factor off (an old session on a shared computer must not strip the account down to its password;
 * TOTP removal asks for a code or the password instead).
 */
export function requireRecentLogin(deps: Pick<Deps, 'clock'>, loginAt: Date, what: string, then: string): void {
  if (deps.clock().getTime() - loginAt.getTime() > FACTOR_BINDING_LOGIN_MAX_AGE_SECONDS * 1000) {
    throw new AppError('step_up_required', {
      detail: `${what} needs a recent login: log in again, ${then} within ${FACTOR_BINDING_LOGIN_MAX_AGE_SECONDS / 60} minutes.`,
    });
  }
}

/** The factors other than `changing` that a login enforces now. */
export function otherFactors(state: FactorState, changing: MfaMethod): { totp: boolean; email: boolean; passkey: boolean } {
  // Stored factors, offered or not: one switched off by MFA_METHODS still protects the account.
  return { totp: changing !== 'totp' && state.totpStored, email: changing !== 'email' && state.emailStored, passkey: state.passkeys > 0 };
}

/**
 * The first statement of every transaction that removes a second factor: locks the user's row (the
 * lock issueBackupCodesIfNone and passkey registration take), so changes of one user's factors take
 * turns. Without it, on PostgreSQL (READ COMMITTED) two removals at once — the last two passkeys, or
 * the last passkey and TOTP — each still see the other's factor, and neither drops the backup codes.
 */
export async function lockFactorChanges(tx: Queryable, userId: string): Promise<void> {
  await lockBackupCodes(tx, userId);
}

/**
 * {@link lockFactorChanges} for a change a session asked for, then that session checked again under
 * the lock, and held: a password reset, a logout everywhere or a revocation that committed while the
 * request ran ends it, and one committing after the check waits for this change to commit first. Otherwise a thief's session could bind its own authenticator (or drop a factor) in the
 * instant after the owner's reset: the owner, with the new password, would then meet the thief's TOTP.
 */
export async function lockFactorChangesOfSession(deps: Pick<Deps, 'clock'>, tx: Queryable, auth: AuthContext): Promise<{ loginAt: Date }> {
  await lockBackupCodes(tx, auth.userId);
  const live = await lockLiveSessionUser(tx, auth.sessionId, deps.clock());
  assertLiveSession(auth, live);
  return { loginAt: live.created_at };
}

/**
 * After a factor was removed in `tx` (begun with {@link lockFactorChanges}): when none is left, the
 * backup codes go too. They are a fallback for a factor, not a factor of their own, and a user who
 * later turns a factor on again should not find a forgotten old set still valid. Reads the stored
 * state, not MFA_METHODS: a factor the operator has only switched off for now still keeps its codes.
 */
export async function dropBackupCodesIfNoFactorLeft(tx: Queryable, userId: string): Promise<boolean> {
  // One statement after the other: a transaction is one connection.
  const totp = await findTotpFactor(tx, userId);
  if (totp?.active_secret || (await isEmailOtpEnabled(tx, userId)) || (await countPasskeys(tx, userId)) > 0) return false;
  await deleteBackupCodes(tx, userId);
  return true;
}

/**
 * When the factor just added is the account's first: every other session of the user ends (reason
 * `mfa_enabled`). They were opened with the password alone, and turning a factor on is what a user
 * does against someone who has it: kept, such a session would stay signed in past the new factor
 * (revoking the owner's sessions, changing the password, signing in to applications at aal1). The
 * session that made the change (`keepSessionId`) stays. Runs in the factor's transaction, after the
 * lock of factor changes. Returns how many ended.
 */
export async function endOtherSessionsAtFirstFactor(deps: Deps, tx: Queryable, userId: string, keepSessionId: string | undefined, ctx: AuditContext): Promise<number> {
  const revoked = await revokeAllSessions(tx, userId, 'mfa_enabled', deps.clock(), keepSessionId);
  await recordSessionsRevoked(deps, tx, ctx, userId, revoked, 'mfa_enabled');
  return revoked.length;
}
