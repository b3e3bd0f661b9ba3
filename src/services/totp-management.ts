/**
 * TOTP for logged-in users: enrol (a pending secret), confirm (pending → active, the old secret, if
 * any, stays in force until this moment), and remove. Each change queues a notice mail in its own
 * transaction, so the mail exists exactly when the change committed.
 */
import type { Deps } from '../deps.ts';
import { AppError, validationError } from '../errors.ts';
import { matchTotpStep } from '../crypto/totp.ts';
import { confirmPendingSecret, deleteTotpFactor, findTotpFactor } from '../db/repositories/totp-factors.ts';
import { findLiveSessionUser } from '../db/repositories/sessions.ts';
import { lockUserIfPasswordUnchanged } from '../db/repositories/users.ts';
import { enqueueMail } from '../mail/outbox.ts';
import { assertLiveSession, requireAal2, type AuthContext } from './authenticate.ts';
import { issueBackupCodes } from './backup-codes.ts';
import { assertMethodOffered, callerUser, dropBackupCodesIfNoFactorLeft, endOtherSessionsAtFirstFactor, lockFactorChanges, lockFactorChangesOfSession, otherFactors, requireBindingProof } from './factor-changes.ts';
import { hasActiveFactor, loadFactorState, storedFactors, verifyTotpCode } from './second-factors.ts';
import { accountNames } from './password-check.ts';
import { startTotpEnrollment, type TotpEnrollment } from './totp-enrollment.ts';
import { recordSecurityEvent, userContext } from './audit/record.ts';
import { recordLoginFailure } from './audit/login-events.ts';
import type { ClientInfo } from './tokens.ts';

function codeError(): AppError {
  return new AppError('invalid_security_code', { detail: 'The security code is not valid.' });
}

/**
 * Starts (or restarts) enrolment for the caller: a fresh pending secret. With any second factor
 * active — TOTP itself included — only an aal2 session may do this; an active secret stays in force
 * until the new one is confirmed, so a lost phone halfway through does not lock the user out.
 */
export async function enrollTotp(deps: Deps, auth: AuthContext): Promise<TotpEnrollment> {
  assertMethodOffered(deps, 'totp');
  const user = await callerUser(deps, auth);
  const state = await loadFactorState(deps, user.id);
  await requireBindingProof(deps, auth, storedFactors(state));
  return deps.db.transaction((tx) => startTotpEnrollment(deps, tx, user, false));
}

/**
 * Confirms the pending secret with a code from it: it becomes the active secret (replacing an old
 * one) and a TOTP-added mail is queued. Returns a new set of 10 backup codes, as the contract's
 * confirm answers, also when the user held some (TOTP added beside another factor, or replaced):
 * the earlier set stops working, and the answer shows the new one this once. 409 totp_not_pending
 * without a pending secret.
 */
export async function confirmTotp(deps: Deps, auth: AuthContext, code: string, client: ClientInfo): Promise<string[]> {
  assertMethodOffered(deps, 'totp');
  const user = await callerUser(deps, auth);
  const state = await loadFactorState(deps, user.id);
  const pending = state.totp?.pending_secret;
  if (!pending) throw new AppError('totp_not_pending', { detail: 'Start with POST /api/v1/auth-totp/enroll.' });
  // The same rule as for enrolling: the pending secret may have come from the password-only /qrcode.
  await requireBindingProof(deps, auth, storedFactors(state));
  const now = deps.clock();
  // Wrong codes are not counted here: the caller is already logged in and holds this very secret,
  // so guessing its codes would gain nothing.
  const step = matchTotpStep(deps.secretBox.open(pending), code.trim(), now);
  if (step === null) throw codeError();
  return deps.db.transaction(async (tx) => {
    // The rule once more under the lock of factor changes: a factor added since the read above (the
    // sign-up's e-mailed codes, turned on by a verification link at the same instant) needs aal2 too.
    // TOTP itself is left to the guard below (a concurrent confirmation of this secret is a 409).
    const { loginAt } = await lockFactorChangesOfSession(deps, tx, auth);
    const current = await loadFactorState(deps, user.id, tx);
    // An active secret that this confirmation replaces (our pending secret still waiting) protects
    // the account as before: aal2, as enrolling asked. One activated meanwhile from this very pending
    // secret does not: that is the concurrent confirmation the guard answers with a 409.
    const replacing = Boolean(current.totp?.active_secret) && current.totp?.pending_secret === pending;
    await requireBindingProof(deps, auth, { ...otherFactors(current, 'totp'), totp: replacing }, loginAt);
    // Guarded on the pending value read above: a concurrent confirm or a newer enrolment wins, not both.
    if (!(await confirmPendingSecret(tx, user.id, pending, step, now))) {
      throw new AppError('totp_not_pending', { detail: 'The enrolment changed meanwhile; start again.' });
    }
    const codes = await issueBackupCodes(deps, tx, user.id);
    if (!hasActiveFactor(current)) await endOtherSessionsAtFirstFactor(deps, tx, user.id, auth.sessionId, userContext(user.id, client));
    await enqueueMail(tx, deps, { kind: 'factor_added', to: user.email, data: { username: user.username, factor: 'totp' } });
    // replaced: an active secret was swapped for the new one (still one TOTP factor).
    await recordSecurityEvent(tx, { ...userContext(user.id, client), type: 'mfa.enabled', userId: user.id, data: { method: 'totp', replaced: Boolean(state.totp?.active_secret), backups_issued: true }, at: now });
    return codes;
  });
}

/** Proof for removing TOTP: a current code or the password. */
export interface TotpRemovalProof {
  security_code?: string;
  password?: string;
}

/**
 * Removes TOTP (active and pending) for an aal2 session that proves itself once more with a code or
 * the password — a session left open on a shared computer must not be enough. Wrong proofs count
 * towards the account lockout. When no factor is left, the backup codes are deleted as well.
 */
export async function removeTotp(deps: Deps, auth: AuthContext, proof: TotpRemovalProof, client: ClientInfo): Promise<void> {
  const ip = client.ip ?? 'unknown';
  const user = await callerUser(deps, auth);
  const totp = await findTotpFactor(deps.db, user.id);
  if (!totp?.active_secret) throw new AppError('totp_not_enabled', { detail: 'TOTP is not turned on.' });
  requireAal2(auth);
  const code = proof.security_code?.trim();
  const password = proof.password;
  if (!code && !password) throw validationError('security_code', 'Send security_code (a current TOTP code) or password.');

  // Counted before the check (see limiter.ts), so a burst of guesses gets no more than the limit checked.
  const attempt = await deps.limiter.beginAttempt({ account: user.id, alsoAccounts: accountNames(deps, user), ip });
  if (code) {
    // Consumes the code's time step, like a login: the same code cannot be replayed anywhere.
    if (!(await verifyTotpCode(deps, deps.db, totp, code, false))) {
      const locked = await attempt.failed();
      await recordLoginFailure(deps, user.id, client, { reason: 'invalid_code', step: 'mfa', method: 'totp_removal' }, locked);
      throw codeError();
    }
  }
  const byPassword = password !== undefined && password !== '';
  if (byPassword) {
    if (!(await deps.passwords.verify(user.password_hash, password))) {
      const locked = await attempt.failed();
      await recordLoginFailure(deps, user.id, client, { reason: 'invalid_password', step: 'password', method: 'totp_removal' }, locked);
      throw new AppError('invalid_credentials', { detail: 'The password is not correct.' });
    }
  }
  await attempt.passed();

  await deps.db.transaction(async (tx) => {
    // Before the delete: a factor removal running at once waits, then counts what this one left.
    await lockFactorChanges(tx, user.id);
    // Checked under that lock (the user row, which a reset updates first): a reset or logout that
    // committed after the proof was checked ends this request, so a stolen session holding the old
    // password cannot strip the factor from the account its owner has just recovered.
    assertLiveSession(auth, await findLiveSessionUser(tx, auth.sessionId, deps.clock()));
    if (byPassword && !(await lockUserIfPasswordUnchanged(tx, user.id, user.password_changed_at))) {
      throw new AppError('invalid_credentials', { detail: 'The password changed meanwhile; enter the current one again.' });
    }
    if (!(await deleteTotpFactor(tx, user.id))) throw new AppError('totp_not_enabled', { detail: 'TOTP was removed meanwhile.' });
    const codesDropped = await dropBackupCodesIfNoFactorLeft(tx, user.id);
    await enqueueMail(tx, deps, { kind: 'factor_removed', to: user.email, data: { username: user.username, factor: 'totp' } });
    await recordSecurityEvent(tx, { ...userContext(user.id, client), type: 'mfa.disabled', userId: user.id, data: { method: 'totp', backups_removed: codesDropped }, at: deps.clock() });
  });
}
