/** Checks of second-factor codes, each consumed by a guarded statement so it works once only. */
import type { Deps } from '../deps.ts';
import type { Queryable } from '../db/database.ts';
import { matchTotpStep } from '../crypto/totp.ts';
import { normalizeBackupCode } from '../crypto/random.ts';
import { activatePending, findFactorSummary, resealActive, useActiveStep, type TotpSecrets } from '../db/repositories/totp-factors.ts';
import { consumeBackupCode } from '../db/repositories/backup-codes.ts';
import { consumeEmailOtp, countEmailOtpFailure } from '../db/repositories/email-otps.ts';

/** Which second factors a user has, as offered at login. */
export interface FactorState {
  totp: TotpSecrets | undefined;
  totpActive: boolean;
  emailEnabled: boolean;
  backupCodes: number;
}

/** Loads the user's factors. E-mail codes count only while the operator allows them (MFA_METHODS). */
export async function loadFactorState(deps: Deps, userId: string): Promise<FactorState> {
  const { totp, emailEnabled, backupCodes } = await findFactorSummary(deps.db, userId);
  const totpActive = Boolean(totp?.active_secret) && deps.config.mfaMethods.includes('totp');
  return { totp, totpActive, emailEnabled: emailEnabled && deps.config.mfaMethods.includes('email'), backupCodes };
}

/** True when the user must pass a second factor at login. */
export function hasActiveFactor(state: FactorState): boolean {
  return state.totpActive || state.emailEnabled;
}

/** The methods `/login/mfa` accepts for this user. */
export function mfaMethods(state: FactorState): string[] {
  const methods: string[] = [];
  if (state.totpActive) methods.push('totp');
  if (state.emailEnabled) methods.push('email');
  if (state.backupCodes > 0) methods.push('backup_code');
  return methods;
}

/**
 * Checks a TOTP code against the active secret (or, with `allowPending` and no active secret, the
 * pending one, which it then activates). The step must be later than the last accepted one.
 * Returns 'active', 'activated' or null.
 */
export async function verifyTotpCode(deps: Deps, tx: Queryable, totp: TotpSecrets | undefined, code: string, allowPending: boolean): Promise<'active' | 'activated' | null> {
  if (!totp) return null;
  const now = deps.clock();
  if (totp.active_secret) {
    const secret = deps.secretBox.open(totp.active_secret);
    const step = matchTotpStep(secret, code, now);
    if (step === null || !(await useActiveStep(tx, totp.user_id, totp.active_secret, step, now))) return null;
    if (deps.secretBox.needsReseal(totp.active_secret)) {
      await resealActive(tx, totp.user_id, totp.active_secret, deps.secretBox.seal(secret));
    }
    return 'active';
  }
  if (allowPending && totp.pending_secret) {
    const step = matchTotpStep(deps.secretBox.open(totp.pending_secret), code, now);
    if (step === null || !(await activatePending(tx, totp.user_id, totp.pending_secret, step, now))) return null;
    return 'activated';
  }
  return null;
}

/** Consumes one backup code of the user; true for exactly one request per code. */
export function useBackupCode(deps: Deps, tx: Queryable, userId: string, code: string): Promise<boolean> {
  return consumeBackupCode(tx, userId, deps.tokenHasher.hash('backup_code', `${userId}:${normalizeBackupCode(code)}`));
}

/** Digest of a backup code as stored. */
export function backupCodeHash(deps: Deps, userId: string, code: string): string {
  return deps.tokenHasher.hash('backup_code', `${userId}:${normalizeBackupCode(code)}`);
}

/** Digest of an e-mailed code as stored. */
export function emailCodeHash(deps: Deps, userId: string, purpose: string, code: string): string {
  return deps.tokenHasher.hash('email_otp', `${userId}:${purpose}:${code}`);
}

/**
 * Consumes the e-mailed code for (user, purpose) in autocommit statements, so a wrong code is
 * counted even when the request fails later. Never call it inside a transaction callback: PGlite is
 * one connection, and a statement on the database from inside its transaction would wait forever.
 */
export async function useEmailCode(deps: Deps, userId: string, purpose: string, code: string): Promise<boolean> {
  if (!/^\d{6}$/.test(code)) {
    await countEmailOtpFailure(deps.db, userId, purpose);
    return false;
  }
  const ok = await consumeEmailOtp(deps.db, userId, purpose, emailCodeHash(deps, userId, purpose, code), deps.clock(), deps.config.emailOtpMaxAttempts);
  if (!ok) await countEmailOtpFailure(deps.db, userId, purpose);
  return ok;
}
