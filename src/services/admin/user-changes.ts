/**
 * What an admin changes on a user: roles, active, verified (PATCH), erasure, ending every session,
 * removing every second factor (lost device), clearing login locks. Each change and its audit
 * entries commit in one transaction, under a lock on the user row so two admins take turns.
 */
import type { Deps } from '../../deps.ts';
import type { Queryable } from '../../db/database.ts';
import { AppError } from '../../errors.ts';
import { countOtherActiveAdmins, deleteSecondFactors, deleteUserRow, eraseMailTo, lockUser, updateUserActive, updateUserRoles, updateUserVerified } from '../../db/repositories/admin/users.ts';
import { consumeAllChallenges } from '../../db/repositories/mfa-challenges.ts';
import { voidEmailTokens } from '../../db/repositories/email-tokens.ts';
import { deleteGrantsOfAccount } from '../../db/repositories/oidc/payloads.ts';
import { deleteAllPasskeys } from '../../db/repositories/passkeys/credentials.ts';
import { revokeAllSessions } from '../../db/repositories/sessions.ts';
import type { UserRow } from '../../db/repositories/users.ts';
import { enqueueMail } from '../../mail/outbox.ts';
import { recordSessionsRevoked } from '../audit/login-events.ts';
import { enableEmailOtpAfterVerification } from '../email-otp.ts';
import { recordSecurityEvent, type AuditContext } from '../audit/record.ts';
import { recordAdminVouched } from './vouched-address.ts';
import { accountNames } from '../password-check.ts';
import { validateRoles } from './roles.ts';
import { recheckAdminCaller } from './authorize.ts';
import { isUuid } from '../../crypto/random.ts';

function notFound(): AppError {
  return new AppError('user_not_found', { detail: 'No such user.' });
}

/** Runs `fn` in a transaction holding the user's row lock, once the admin is checked again; 404 when there is no such user. */
async function withLockedUser<T>(deps: Deps, userId: string, ctx: AuditContext, fn: (tx: Queryable, user: UserRow) => Promise<T>): Promise<T> {
  if (!isUuid(userId)) throw notFound();
  return deps.db.transaction(async (tx) => {
    await recheckAdminCaller(tx, ctx);
    const user = await lockUser(tx, userId.toLowerCase());
    if (!user) throw notFound();
    return fn(tx, user);
  });
}

/**
 * Refuses (409 last_admin) a change that leaves no active admin while no ADMIN_API_KEY is set: then
 * nobody could reach the admin API any more (two admins demoting each other at once included), and
 * only shell access (`twofold users promote`) would recover. With a key, a program always can.
 */
async function keepAnAdmin(deps: Deps, tx: Queryable, user: UserRow, after: { admin: boolean; active: boolean }): Promise<void> {
  if (deps.config.adminApiKey !== undefined) return;
  const isAdmin = user.is_active && user.roles.includes('admin');
  if (!isAdmin || (after.admin && after.active)) return;
  if ((await countOtherActiveAdmins(tx, user.id)) > 0) return;
  throw new AppError('last_admin', {
    detail: 'This is the last active admin and no ADMIN_API_KEY is set: give another user the admin role first (or run `twofold users promote`).',
  });
}

/** Body of PATCH /api/v1/admin/users/{uuid}. */
export interface UserPatch {
  is_active?: boolean;
  roles?: string[];
  email_verified?: boolean;
}

/**
 * Applies a PATCH and records one user.updated with each changed field as {from, to}. Deactivating
 * revokes every session in the same transaction (their tokens are refused at once: authentication
 * reads the session and the user's is_active on every request) and ends open MFA challenges. A role
 * change reaches the user's tokens at their next token; the admin API itself checks stored roles.
 */
export async function updateUserAsAdmin(deps: Deps, userId: string, patch: UserPatch, ctx: AuditContext): Promise<void> {
  const roles = patch.roles === undefined ? undefined : validateRoles(patch.roles);
  await withLockedUser(deps, userId, ctx, async (tx, locked) => {
    let user = locked;
    await keepAnAdmin(deps, tx, locked, { admin: (roles ?? locked.roles).includes('admin'), active: patch.is_active ?? locked.is_active });
    const now = deps.clock();
    const changes: Record<string, { from: unknown; to: unknown }> = {};
    if (roles !== undefined && [...user.roles].sort().join(',') !== roles.join(',')) {
      await updateUserRoles(tx, user.id, roles, now);
      changes.roles = { from: [...user.roles].sort(), to: roles };
    }
    if (patch.email_verified !== undefined && patch.email_verified !== user.email_verified) {
      await updateUserVerified(tx, user.id, patch.email_verified, now);
      changes.email_verified = { from: user.email_verified, to: patch.email_verified };
      // As when the user opens the link: an account inactive only until its address is verified
      // becomes active (never one an admin deactivated), and e-mailed codes chosen at sign-up become
      // the second factor. Otherwise the user's own link could no longer do it either: it finds the
      // address verified already and changes nothing.
      if (patch.email_verified && deps.config.requireEmailVerification && !user.is_active && !user.deactivated_at && patch.is_active !== false) {
        await updateUserActive(tx, user.id, true, now);
        changes.is_active = { from: false, to: true };
        user = { ...user, is_active: true };
      }
      if (patch.email_verified) {
        // email.verified as the link records it (and so its event): a service that follows only
        // that type must hear of a vouched address too. is_active as it is once this PATCH is done.
        await recordAdminVouched(tx, ctx, user.id, patch.is_active ?? user.is_active, now);
        await enableEmailOtpAfterVerification(deps, tx, user, ctx);
      }
    }
    let revoked: string[] = [];
    // Deactivating an account that is inactive only until its address is verified still marks it
    // as deactivated by an admin, so the verification link cannot activate it.
    const deactivating = patch.is_active === false && (user.is_active || !user.deactivated_at);
    if (patch.is_active !== undefined && (patch.is_active !== user.is_active || deactivating)) {
      await updateUserActive(tx, user.id, patch.is_active, now);
      // An account already inactive (waiting for its address) changes only its mark: reported as
      // such, not as an is_active that went from false to false.
      if (patch.is_active !== user.is_active) changes.is_active = { from: user.is_active, to: patch.is_active };
      else changes.deactivated = { from: false, to: true };
      if (!patch.is_active) {
        revoked = await revokeAllSessions(tx, user.id, 'deactivated', now);
        await consumeAllChallenges(tx, user.id, now);
        // A reset link mailed before would otherwise choose the password in force on reactivation
        // (an account deactivated as compromised: whoever holds the mail). Inactive accounts get no link.
        await voidEmailTokens(tx, user.id, 'reset_password');
      }
    }
    if (Object.keys(changes).length === 0) return;
    await recordSecurityEvent(tx, { ...ctx, type: 'user.updated', userId: user.id, data: { changes }, at: now });
    await recordSessionsRevoked(deps, tx, ctx, user.id, revoked, 'deactivated');
  });
}

/**
 * Erases a user: the row and with it (ON DELETE CASCADE) sessions, factors, backup codes, e-mailed
 * codes, challenges and link tokens; and every outbox row addressed to them (pending mail holds
 * links and codes). Audit entries stay, naming only the uuid. Live tokens die at once: their session
 * row is gone. Each live session is recorded as revoked first (session.revoked, reason
 * `user_deleted`), as for a deactivation: services that track sessions by `sid` learn they ended. The
 * provider sessions they logged in are ended by the OpenID sweep (their links outlive the user).
 */
export async function deleteUserAsAdmin(deps: Deps, userId: string, ctx: AuditContext): Promise<void> {
  const user = await withLockedUser(deps, userId, ctx, async (tx, u) => {
    await keepAnAdmin(deps, tx, u, { admin: false, active: false });
    const revoked = await revokeAllSessions(tx, u.id, 'user_deleted', deps.clock());
    await recordSessionsRevoked(deps, tx, ctx, u.id, revoked, 'user_deleted');
    if (!(await deleteUserRow(tx, u.id))) throw notFound();
    // After the row, not before: a code re-sent meanwhile updates its email_otps row (no lock on the
    // user), so its mail could commit just after an earlier look at the outbox, and be delivered to
    // the erased address. The cascade waits for such a transaction, so this statement sees its mail.
    const mails = await eraseMailTo(tx, u.email);
    // Its sessions' and tokens' grants go with the sweep (which still needs the sessions to send the
    // back-channel logouts); a grant nothing names goes now.
    await deleteGrantsOfAccount(tx, u.id);
    await recordSecurityEvent(tx, { ...ctx, type: 'user.deleted', userId: u.id, data: { mails_erased: mails }, at: deps.clock() });
    return u;
  });
  // Counters keyed by the erased names would otherwise lock a new account that reuses them.
  await deps.limiter.clearAccounts(accountNames(deps, user));
}

/** Ends every session of the user (tokens refused at once); session.revoked per session and admin.action. */
export async function revokeUserSessionsAsAdmin(deps: Deps, userId: string, ctx: AuditContext): Promise<number> {
  return withLockedUser(deps, userId, ctx, async (tx, user) => {
    const now = deps.clock();
    const revoked = await revokeAllSessions(tx, user.id, 'revoked_by_admin', now);
    await consumeAllChallenges(tx, user.id, now);
    await recordSecurityEvent(tx, { ...ctx, type: 'admin.action', userId: user.id, data: { action: 'revoke_sessions', sessions_revoked: revoked.length }, at: now });
    await recordSessionsRevoked(deps, tx, ctx, user.id, revoked, 'revoked_by_admin');
    return revoked.length;
  });
}

/**
 * Lost-device recovery: removes every second factor (TOTP, e-mailed codes, passkeys — the lost
 * device may hold one) and backup code, ends open MFA challenges, and
 * mails the user (in the same transaction, so the mail exists exactly when the reset happened).
 * Sessions stay: the admin ends them separately when the device may be in someone else's hands.
 */
export async function resetMfaAsAdmin(deps: Deps, userId: string, ctx: AuditContext): Promise<void> {
  await withLockedUser(deps, userId, ctx, async (tx, user) => {
    const now = deps.clock();
    const removed = await deleteSecondFactors(tx, user.id);
    const methods = [...(removed.totp ? ['totp'] : []), ...(removed.email ? ['email'] : [])];
    const passkeys = await deleteAllPasskeys(tx, user.id);
    if (passkeys.length > 0) methods.push('passkey');
    await consumeAllChallenges(tx, user.id, now);
    // Nothing was set up: no factor was turned off, so neither the mail nor mfa.disabled would be true.
    if (methods.length > 0 || removed.backupCodes > 0) {
      await enqueueMail(tx, deps, { kind: 'mfa_reset', to: user.email, data: { username: user.username } });
      await recordSecurityEvent(tx, { ...ctx, type: 'mfa.disabled', userId: user.id, data: { methods, backups_removed: removed.backupCodes, reset: true }, at: now });
    }
    // Each removed passkey announced as a removal by the user would be: services tracking passkeys keep no stale one.
    for (const p of passkeys) await recordSecurityEvent(tx, { ...ctx, type: 'passkey.removed', userId: user.id, data: { passkey_id: p.id, name: p.name, reset: true }, at: now });
    await recordSecurityEvent(tx, { ...ctx, type: 'admin.action', userId: user.id, data: { action: 'reset_mfa' }, at: now });
  });
}

/**
 * Clears every login lock and failure count of the account: by username and by e-mail (issue 7
 * counts failures per typed login name, `login:<digest of the name>`) and by user id (second step and in-session
 * checks). The per-IP count stays: it belongs to the client, not the account.
 *
 * In a transaction like every other admin change: the admin is re-checked as its first statement and
 * stays locked until the entry commits, so a demotion or erasure of that admin committing meanwhile
 * either waits for the unlock or refuses it (403). Checked outside one, the check ended with its own
 * statement, and an admin demoted an instant later still cleared the locks, recorded as its act.
 */
export async function unlockUserAsAdmin(deps: Deps, userId: string, ctx: AuditContext): Promise<void> {
  await withLockedUser(deps, userId, ctx, async (tx, user) => {
    // The counters live in the limiter's store (memory or Redis), not in this database: clear first,
    // so the entry records an unlock that happened. Without the fallback: with Redis out of reach
    // the clear throws (503 service_unavailable), the transaction rolls back and nothing is recorded,
    // rather than clearing this process's stand-in counters while every instance reads the lock.
    await deps.limiter.clearAccounts(accountNames(deps, user), { fallback: false });
    await recordSecurityEvent(tx, { ...ctx, type: 'admin.action', userId: user.id, data: { action: 'unlock' }, at: deps.clock() });
  });
}
