/**
 * Passwords: "forgot" (a single-use reset link by e-mail), reset with that link, and change by a
 * logged-in user. Every successful change of a password ends sessions (all of them after a reset,
 * all but the caller's after a change), ends open MFA challenges won with the old password, voids
 * outstanding reset links and queues a password_changed notice in the same transaction.
 */
import type { Deps } from '../deps.ts';
import { AppError, type FieldError } from '../errors.ts';
import { consumeEmailToken, findLiveEmailToken, lockLinkIssue, voidEmailTokens } from '../db/repositories/email-tokens.ts';
import { consumeAllChallenges } from '../db/repositories/mfa-challenges.ts';
import { findLiveSessionUser, revokeAllSessions } from '../db/repositories/sessions.ts';
import { changePasswordIfUnchanged, findUserByEmail, findUserById, lockUserForUpdate, lockUserIfActive, updatePasswordHash, type UserRow } from '../db/repositories/users.ts';
import { enqueueMail } from '../mail/outbox.ts';
import { accountNames } from './password-check.ts';
import { allowMailToAccount, consumeRequesterQuota } from './mail-quota.ts';
import { checkPassword } from '../security/password-policy.ts';
import { assertLiveSession, type AuthContext } from './authenticate.ts';
import { runDeferred } from './deferred.ts';
import { linkTokenHash, newLinkToken, storeLinkToken } from './email-verification.ts';
import { recordSecurityEvent, userContext } from './audit/record.ts';
import { recordLoginFailure, recordSessionsRevoked } from './audit/login-events.ts';
import type { ClientInfo } from './tokens.ts';

/** Path of the web page the reset link opens; the page posts the token to /api/v1/user/password/reset. */
export const RESET_PASSWORD_PAGE_PATH = '/reset-password';

/**
 * Queues a reset link for `email` if it belongs to an active account. The requester's quotas
 * count every address, known or not (the owner's budget is kept apart: mail-quota.ts), and the lookup, the token and the mail happen after the answer (see
 * deferred.ts): the 202 is the same, at the same speed, for every address. A new link voids the
 * user's earlier unused ones, so only the latest mail works. Inactive accounts get no link, as in
 * the original service: a reset would not let them log in.
 */
export async function requestPasswordReset(deps: Deps, email: string, ip: string): Promise<void> {
  const address = email.trim();
  // Per requester only: a stranger's requests must not use up the owner's budget (mail-quota.ts).
  await consumeRequesterQuota(deps, ip, address);
  runDeferred(deps, 'a password reset request', async () => {
    const user = await findUserByEmail(deps.db, address);
    if (!user || !user.is_active) return;
    if (!(await allowMailToAccount(deps, user.id, address, ip))) return;
    const ttlSeconds = deps.config.passwordResetTtlSeconds;
    const { token, hash } = newLinkToken(deps, 'reset_password');
    await deps.db.transaction(async (tx) => {
      // Read again under the row lock: a deactivation that committed since the read above voided
      // the links there were, and one in progress would miss this one (it is not committed yet).
      if (!(await lockUserIfActive(tx, user.id))) return;
      // Requests at once (a double click) take turns: each voids the links before it, one stays live.
      await lockLinkIssue(tx, user.id, 'reset_password');
      await voidEmailTokens(tx, user.id, 'reset_password');
      await storeLinkToken(tx, deps, user, 'reset_password', hash, ttlSeconds);
      await enqueueMail(tx, deps, {
        kind: 'password_reset',
        to: user.email,
        data: {
          username: user.username,
          link: `${deps.config.publicUrl}${RESET_PASSWORD_PAGE_PATH}?token=${encodeURIComponent(token)}`,
          // Rounded down: a mail must never promise more time than the link has.
          expiresInMinutes: Math.max(1, Math.floor(ttlSeconds / 60)),
        },
      });
    });
  });
}

/** A new password as sent by a client. */
export interface NewPasswordInput {
  password1: string;
  password2: string;
}

/** Field errors for a new password: the two must match and pass the policy (with the user's own words as context). */
async function newPasswordErrors(deps: Deps, user: UserRow, input: NewPasswordInput): Promise<FieldError[]> {
  if (input.password1 !== input.password2) return [{ field: 'password2', message: 'Passwords do not match.' }];
  return checkPassword(deps.config, input.password1, { username: user.username, email: user.email, fullName: user.full_name });
}

function rejectPassword(errors: FieldError[]): AppError {
  return new AppError('validation_failed', { detail: errors.map((e) => e.message).join(' '), errors });
}

function invalidResetToken(): AppError {
  return new AppError('invalid_or_expired_token', { detail: 'This password reset link is invalid, expired or already used. Ask for a new one.' });
}

/** Input of {@link resetPassword}. */
export interface ResetPasswordInput extends NewPasswordInput {
  token: string;
}

/**
 * Sets a new password with a reset token. The token is looked up first without being consumed, so
 * that a password the policy refuses (422) leaves the link usable, and no password is hashed for an
 * unknown token (a stream of made-up tokens costs one indexed SELECT each). The token is then
 * consumed by a guarded update in the transaction that sets the password: of concurrent resets with
 * one token exactly one succeeds. Every session of the user ends, the account's failed-login lock is
 * cleared (the owner has just proven control of the address), and second factors stay as they were,
 * so a user with one still needs it at the next login.
 */
export async function resetPassword(deps: Deps, input: ResetPasswordInput, client: ClientInfo): Promise<void> {
  const ip = client.ip ?? 'unknown';
  const hash = linkTokenHash(deps, 'reset_password', input.token);
  const live = await findLiveEmailToken(deps.db, 'reset_password', hash, deps.clock());
  const user = live ? await findUserById(deps.db, live.user_id) : undefined;
  // A link only vouches for the address it was sent to, and only for an active account (deactivation
  // voids the links; this refuses one of an account deactivated while the link was being used).
  if (!live || !user || !user.is_active || user.email.toLowerCase() !== live.email.toLowerCase()) throw invalidResetToken();

  const errors = await newPasswordErrors(deps, user, input);
  if (errors.length) throw rejectPassword(errors);
  const passwordHash = await deps.passwords.hash(input.password1);

  const done = await deps.db.transaction(async (tx) => {
    const now = deps.clock();
    // The user row before the token: the order of every transaction touching reset links (issuing
    // one, a deactivation, a password change); the token first deadlocked with them on PostgreSQL.
    await lockUserForUpdate(tx, user.id);
    if (!(await consumeEmailToken(tx, 'reset_password', hash, now))) return false;
    await updatePasswordHash(tx, user.id, passwordHash, now);
    await voidEmailTokens(tx, user.id, 'reset_password');
    const revoked = await revokeAllSessions(tx, user.id, 'password_reset', now);
    await consumeAllChallenges(tx, user.id, now);
    await enqueueMail(tx, deps, { kind: 'password_changed', to: user.email, data: { username: user.username } });
    const ctx = userContext(user.id, client);
    await recordSecurityEvent(tx, { ...ctx, type: 'password.reset', userId: user.id, data: { sessions_revoked: revoked.length }, at: now });
    await recordSessionsRevoked(deps, tx, ctx, user.id, revoked, 'password_reset');
    return true;
  });
  if (!done) throw invalidResetToken();
  // Every limiter name of the account: both login names and the id.
  await Promise.all(accountNames(deps, user).map((account) => deps.limiter.recordSuccess({ account, ip })));
}

/** Input of {@link changePassword}. */
export interface ChangePasswordInput extends NewPasswordInput {
  current_password: string;
}

/**
 * Changes the caller's password. The current password is checked like a login (under the same
 * account lock, a wrong one counted as a failure), so a stolen access token alone can neither change
 * the password nor guess it. Every other session of the user ends; the caller's stays. Nothing is
 * changed when, after the check, the caller's session ended (401 invalid_token, as for any ended
 * session) or the password changed (401 invalid_credentials: the password sent is no longer current).
 */
export async function changePassword(deps: Deps, auth: Pick<AuthContext, 'userId' | 'sessionId'>, input: ChangePasswordInput, client: ClientInfo): Promise<void> {
  const ip = client.ip ?? 'unknown';
  // Counted before the (expensive) check: a burst of guesses gets no more than the limit checked.
  const user = await findUserById(deps.db, auth.userId);
  if (!user) throw new AppError('invalid_token');
  const attempt = await deps.limiter.beginAttempt({ account: user.id, alsoAccounts: accountNames(deps, user), ip });
  if (!(await deps.passwords.verify(user.password_hash, input.current_password))) {
    const locked = await attempt.failed();
    await recordLoginFailure(deps, user.id, client, { reason: 'invalid_password', step: 'password', method: 'password_change' }, locked);
    throw new AppError('invalid_credentials', { detail: 'The current password is not correct.', errors: [{ field: 'current_password', message: 'is not correct' }] });
  }
  await attempt.succeeded(accountNames(deps, user));
  const errors = await newPasswordErrors(deps, user, input);
  if (errors.length) throw rejectPassword(errors);
  const passwordHash = await deps.passwords.hash(input.password1);

  await deps.db.transaction(async (tx) => {
    const now = deps.clock();
    // The password checked above must still be the one in force, and the caller's session still
    // live: a reset (or a logout) that committed while this request was hashing wins, and a stolen
    // session with the old password cannot put its own password back over the owner's reset. The
    // user row first (this update), then the reset links: the order of every transaction touching them.
    const changed = await changePasswordIfUnchanged(tx, user.id, passwordHash, now, user.password_changed_at);
    assertLiveSession(auth, await findLiveSessionUser(tx, auth.sessionId, now));
    if (!changed) throw new AppError('invalid_credentials', { detail: 'The password changed meanwhile; enter the current one again.' });
    // A reset link still in the mailbox could otherwise undo this change.
    await voidEmailTokens(tx, user.id, 'reset_password');
    const revoked = await revokeAllSessions(tx, user.id, 'password_changed', now, auth.sessionId);
    await consumeAllChallenges(tx, user.id, now);
    await enqueueMail(tx, deps, { kind: 'password_changed', to: user.email, data: { username: user.username } });
    const ctx = userContext(user.id, client);
    await recordSecurityEvent(tx, { ...ctx, type: 'password.changed', userId: user.id, data: { sessions_revoked: revoked.length }, at: now });
    await recordSessionsRevoked(deps, tx, ctx, user.id, revoked, 'password_changed');
  });
}
