/**
 * E-mailed one-time codes as a second factor: turning them on (a code mailed with purpose 'enable',
 * then confirmed), off, and sending the code of a login challenge (purpose 'login:<challenge id>').
 *
 * Codes are 6 digits, live EMAIL_OTP_TTL (10 minutes), are stored as keyed digests, work once and
 * allow EMAIL_OTP_MAX_ATTEMPTS (5) wrong tries; a resend replaces the code but keeps the count (a
 * new code for turning them on, once the count is used up, starts afresh: see storeAndMailCode).
 * Sending is limited per user by a cooldown and an hourly cap, so nobody can flood an inbox.
 * E-mail is a weaker channel than an authenticator app (NIST SP 800-63B-4 does not accept it for
 * AAL2): MFA_METHODS=totp switches it off everywhere.
 */
import type { Deps } from '../deps.ts';
import type { Queryable } from '../db/database.ts';
import { AppError } from '../errors.ts';
import { randomDigits } from '../crypto/random.ts';
import { isEmailOtpEnabled, deleteEmailOtpFactor, deleteEmailOtps, deleteExpiredEmailOtps, enableEmailOtpFactor, insertPendingEmailOtpFactor, upsertEmailOtp } from '../db/repositories/email-otps.ts';
import { findLiveChallenge } from '../db/repositories/mfa-challenges.ts';
import { clearSignupMfa, findUserById, type UserRow } from '../db/repositories/users.ts';
import { enqueueMail } from '../mail/outbox.ts';
import { requireAal2, type AuthContext } from './authenticate.ts';
import { issueBackupCodesIfNone } from './backup-codes.ts';
import { assertMethodOffered, callerUser, dropBackupCodesIfNoFactorLeft, endOtherSessionsAtFirstFactor, lockFactorChanges, lockFactorChangesOfSession, otherFactors, requireBindingProof, requireRecentLogin } from './factor-changes.ts';
import { verifyMfaToken } from './login.ts';
import { checkEmailCode, emailCodeHash, hasActiveFactor, loadFactorState, spendEmailCode } from './second-factors.ts';
import { accountNames } from './password-check.ts';
import { recordSecurityEvent, userContext, type AuditContext } from './audit/record.ts';
import type { ClientInfo } from './tokens.ts';

/** Digits of an e-mailed code. */
export const EMAIL_OTP_DIGITS = 6;
/** Purpose of the code that confirms turning e-mailed codes on. */
export const ENABLE_PURPOSE = 'enable';

/** Purpose of the code of one login challenge (completeMfaLogin checks the same string). */
export function loginPurpose(challengeId: string): string {
  return `login:${challengeId}`;
}

/** What a code-sending endpoint answers (202). */
export interface CodeSent {
  /** Seconds the mailed code stays valid. */
  expires_in: number;
}

/**
 * Applies the sending limits for `user`: a cooldown between two codes of the same kind ('enable' or
 * 'login') and a cap per hour on all codes. The cooldown is per kind so that confirming e-mailed
 * codes and then logging in at once is not refused; it is per user, not per challenge, so opening
 * new challenges does not get around it.
 */
async function consumeSendQuota(deps: Deps, userId: string, kind: 'enable' | 'login'): Promise<void> {
  await deps.limiter.consume('email_otp:cooldown', `${kind}:${userId}`);
  await deps.limiter.consume('email_otp:hour', userId);
}

/**
 * Stores a fresh code for (user, purpose) and queues its mail in `tx`. Codes that have expired are
 * dropped first, so a new code after expiry starts with a fresh attempt count, while a resend of a
 * live code keeps the count (the upsert leaves `attempts` alone) and cannot buy more guesses.
 *
 * Except for turning the factor on, once the count is used up: the purpose is one per user, so its
 * code stayed dead for as long as new ones were asked for (each moved its expiry on), and the error's
 * advice, "ask for a new one", locked the user out of the factor until they stopped asking for ten
 * minutes. The caller is logged in (with aal2 when another factor is active) and new codes are bounded
 * by the sending cooldown and hourly cap, so this buys at most EMAIL_OTP_MAX_ATTEMPTS guesses per code
 * mailed to the account's own verified address. A login challenge's code keeps its count: the
 * challenge itself dies with it, and a new login brings a new challenge.
 */
async function storeAndMailCode(deps: Deps, tx: Queryable, user: UserRow, purpose: string, kind: 'email_otp_enable' | 'email_otp_login'): Promise<CodeSent> {
  const now = deps.clock();
  const ttl = deps.config.emailOtpTtlSeconds;
  const code = randomDigits(EMAIL_OTP_DIGITS);
  await deleteExpiredEmailOtps(tx, user.id, now);
  const restartAt = purpose === ENABLE_PURPOSE ? deps.config.emailOtpMaxAttempts : null;
  await upsertEmailOtp(tx, user.id, purpose, emailCodeHash(deps, user.id, purpose, code), now, new Date(now.getTime() + ttl * 1000), restartAt);
  await enqueueMail(tx, deps, { kind, to: user.email, data: { username: user.username, code, expiresInMinutes: Math.ceil(ttl / 60) } });
  return { expires_in: ttl };
}

/**
 * POST /auth-email-otp/enable: mails a code that confirms turning e-mailed codes on. The address
 * must be verified (a code sent to someone else's address would hand them the account's second
 * factor): 422 email_not_verified. 409 when already on; aal2 when another factor is active.
 */
export async function startEmailOtpEnable(deps: Deps, auth: AuthContext): Promise<CodeSent> {
  assertMethodOffered(deps, 'email');
  const user = await callerUser(deps, auth);
  if (await isEmailOtpEnabled(deps.db, user.id)) throw new AppError('email_otp_already_enabled', { detail: 'E-mailed codes are already turned on.' });
  if (!user.email_verified) {
    // The contract gives this code 422 here (403 is its status at login).
    throw new AppError('email_not_verified', { status: 422, detail: 'Verify your e-mail address first.' });
  }
  await requireBindingProof(deps, auth, otherFactors(await loadFactorState(deps, user.id), 'email'));
  await consumeSendQuota(deps, user.id, 'enable');
  return deps.db.transaction(async (tx) => {
    await insertPendingEmailOtpFactor(tx, user.id, deps.clock());
    return storeAndMailCode(deps, tx, user, ENABLE_PURPOSE, 'email_otp_enable');
  });
}

/**
 * POST /auth-email-otp/confirm: turns e-mailed codes on with the mailed code. Returns 10 backup codes
 * when the user holds none, else []. A wrong code is counted (and stays counted) before anything else.
 */
export async function confirmEmailOtp(deps: Deps, auth: AuthContext, code: string, client: ClientInfo): Promise<string[]> {
  assertMethodOffered(deps, 'email');
  const user = await callerUser(deps, auth);
  if (await isEmailOtpEnabled(deps.db, user.id)) throw new AppError('email_otp_already_enabled', { detail: 'E-mailed codes are already turned on.' });
  await requireBindingProof(deps, auth, otherFactors(await loadFactorState(deps, user.id), 'email'));
  const wrongCode = (): AppError => new AppError('invalid_security_code', { detail: 'The code is not valid, has expired or was tried too often; ask for a new one.' });
  // The attempt is taken (and committed) before the code is compared, outside any transaction: of
  // simultaneous guesses at most EMAIL_OTP_MAX_ATTEMPTS are compared, as at login.
  const digest = await checkEmailCode(deps, user.id, ENABLE_PURPOSE, code.trim());
  if (digest === undefined) throw wrongCode();
  return deps.db.transaction(async (tx) => {
    // The rule once more under the lock of factor changes: a factor confirmed since the read above
    // (TOTP, a passkey) takes the same lock, so it is seen here or sees this one.
    const { loginAt } = await lockFactorChangesOfSession(deps, tx, auth);
    const current = await loadFactorState(deps, user.id, tx);
    await requireBindingProof(deps, auth, otherFactors(current, 'email'), loginAt);
    if (!(await spendEmailCode(tx, user.id, ENABLE_PURPOSE, digest))) throw wrongCode();
    if (!(await enableEmailOtpFactor(tx, user.id, deps.clock()))) {
      throw new AppError('email_otp_already_enabled', { detail: 'E-mailed codes were turned on meanwhile.' });
    }
    const codes = await issueBackupCodesIfNone(deps, tx, user.id);
    if (!hasActiveFactor(current)) await endOtherSessionsAtFirstFactor(deps, tx, user.id, auth.sessionId, userContext(user.id, client));
    await enqueueMail(tx, deps, { kind: 'factor_added', to: user.email, data: { username: user.username, factor: 'email' } });
    await recordSecurityEvent(tx, { ...userContext(user.id, client), type: 'mfa.enabled', userId: user.id, data: { method: 'email', backups_issued: codes.length > 0 }, at: deps.clock() });
    return codes;
  });
}

/** DELETE /auth-email-otp: turns e-mailed codes off (aal2); the backup codes go when no factor is left. */
export async function disableEmailOtp(deps: Deps, auth: AuthContext, client: ClientInfo): Promise<void> {
  const user = await callerUser(deps, auth);
  if (!(await isEmailOtpEnabled(deps.db, user.id))) throw new AppError('email_otp_not_enabled', { detail: 'E-mailed codes are not turned on.' });
  requireAal2(auth);
  await deps.db.transaction(async (tx) => {
    // Before the delete: a factor removal running at once waits, then counts what this one left.
    const { loginAt } = await lockFactorChangesOfSession(deps, tx, auth);
    requireRecentLogin(deps, loginAt, 'Turning off a second factor', 'then turn it off');
    if (!(await deleteEmailOtpFactor(tx, user.id))) throw new AppError('email_otp_not_enabled', { detail: 'E-mailed codes were turned off meanwhile.' });
    // Codes already mailed (for enabling or for open login challenges) must not work any more.
    await deleteEmailOtps(tx, user.id, '');
    const codesDropped = await dropBackupCodesIfNoFactorLeft(tx, user.id);
    await enqueueMail(tx, deps, { kind: 'factor_removed', to: user.email, data: { username: user.username, factor: 'email' } });
    await recordSecurityEvent(tx, { ...userContext(user.id, client), type: 'mfa.disabled', userId: user.id, data: { method: 'email', backups_removed: codesDropped }, at: deps.clock() });
  });
}

/**
 * POST /login/mfa/email-code: mails the code of a live MFA challenge. Sending does not use one of the
 * challenge's attempts. 400 method_not_enabled when the user has no e-mail factor or the operator
 * switched e-mailed codes off; 401 invalid_token for a dead challenge; 429 when locked or over quota.
 */
export async function sendLoginEmailCode(deps: Deps, mfaToken: string, ip: string): Promise<CodeSent> {
  const { challengeId, userId } = await verifyMfaToken(deps, mfaToken);
  const challenge = await findLiveChallenge(deps.db, challengeId, userId, deps.clock(), deps.config.mfaChallengeMaxAttempts);
  if (!challenge) throw new AppError('invalid_token', { detail: 'The MFA challenge is expired, used or over-tried; log in again.' });
  const user = await findUserById(deps.db, userId);
  if (!user) throw new AppError('invalid_token');
  // A locked account gets no mails: its codes could not be used anyway. Locked by any of its names,
  // as /login/mfa judges it (a lock earned through the e-mail address also refuses the code there).
  await deps.limiter.assertAllowed({ account: userId, alsoAccounts: accountNames(deps, user), ip });
  if (!user.is_active) throw new AppError('account_inactive', { detail: 'This account is not active.' });
  if (!(await loadFactorState(deps, user.id)).emailEnabled) {
    throw new AppError('method_not_enabled', { detail: 'E-mailed codes are not a second factor of this account.' });
  }
  await consumeSendQuota(deps, user.id, 'login');
  return deps.db.transaction((tx) => storeAndMailCode(deps, tx, user, loginPurpose(challengeId), 'email_otp_login'));
}

/**
 * Called by e-mail verification (the user's link, or an admin vouching for the address), inside its
 * transaction, for a user who chose `mfa: "email"` at sign-up: e-mailed codes become their second
 * factor now that the address is proven — but only as their first factor. Uses only `tx` (never
 * deps.db: PGlite is one connection and would wait for itself). Does nothing when the operator does
 * not offer e-mailed codes, they are already on, or the user has another factor by now (TOTP,
 * a passkey). Returns true when it turned them on.
 *
 * No backup codes are issued here: the verification answer is no place to show them (the link may be
 * opened in a mail client's browser). The user gets a set from POST /api/v1/backup-codes after
 * logging in with an e-mailed code, or with the next factor they confirm themselves.
 */
export async function enableEmailOtpAfterVerification(deps: Deps, tx: Queryable, user: Pick<UserRow, 'id' | 'username' | 'email' | 'signup_mfa'>, ctx: AuditContext): Promise<boolean> {
  if (user.signup_mfa !== 'email') return false;
  // The user row first (the lock of factor changes): a passkey being registered at once is then seen.
  await lockFactorChanges(tx, user.id);
  // The sign-up choice is used once, at the first verification, whatever comes of it: an address
  // unverified and verified again later (by an admin) must not bring back a factor the user turned off.
  await clearSignupMfa(tx, user.id);
  if (!deps.config.mfaMethods.includes('email')) return false;
  // Adding a factor next to an active one needs an aal2 session (requireBindingProof); a
  // verification link, which anyone can have re-sent, is none. Otherwise the password plus the
  // mailbox would get past the user's TOTP. Counted as hasActiveFactor does: stored, offered or not.
  // The sign-up choice is then left unused: the user can turn e-mailed codes on at aal2 themselves.
  if (hasActiveFactor(await loadFactorState(deps, user.id, tx))) return false;
  if (!(await enableEmailOtpFactor(tx, user.id, deps.clock()))) return false;
  await enqueueMail(tx, deps, { kind: 'factor_added', to: user.email, data: { username: user.username, factor: 'email' } });
  await recordSecurityEvent(tx, { ...ctx, type: 'mfa.enabled', userId: user.id, data: { method: 'email', at_sign_up: true }, at: deps.clock() });
  // The account's first factor, as when confirmed on the account page: the sessions opened with the
  // password alone end (all of them: no session made this change, a link or an admin did).
  await endOtherSessionsAtFirstFactor(deps, tx, user.id, undefined, ctx);
  return true;
}
