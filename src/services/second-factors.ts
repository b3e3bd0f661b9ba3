/** Checks of second-factor codes, each consumed by a guarded statement so it works once only. */
import type { Deps } from '../deps.ts';
import type { Queryable } from '../db/database.ts';
import { matchTotpStep } from '../crypto/totp.ts';
import { normalizeBackupCode } from '../crypto/random.ts';
import { activatePending, findFactorSummary, resealActive, useActiveStep, type TotpSecrets } from '../db/repositories/totp-factors.ts';
import { consumeBackupCode } from '../db/repositories/backup-codes.ts';
import { reserveEmailOtpAttempt, spendEmailOtp } from '../db/repositories/email-otps.ts';
import { timingSafeEqual } from 'node:crypto';

/**
 * Which second factors a user has. `totpActive`/`emailEnabled`: the factor is set up AND the
 * operator offers it (MFA_METHODS), so a code of it is accepted. `totpStored`/`emailStored`: the
 * factor is set up, offered or not — what decides whether the account is protected at all.
 */
export interface FactorState {
  totp: TotpSecrets | undefined;
  totpActive: boolean;
  emailEnabled: boolean;
  totpStored: boolean;
  emailStored: boolean;
  /** Registered passkeys (a passkey is always offered: MFA_METHODS names only code factors). */
  passkeys: number;
  backupCodes: number;
}

/** Loads the user's factors (see {@link FactorState}). */
export async function loadFactorState(deps: Deps, userId: string, db: Queryable = deps.db): Promise<FactorState> {
  const { totp, emailEnabled, passkeys, backupCodes } = await findFactorSummary(db, userId);
  const totpStored = Boolean(totp?.active_secret);
  return {
    totp,
    totpActive: totpStored && deps.config.mfaMethods.includes('totp'),
    emailEnabled: emailEnabled && deps.config.mfaMethods.includes('email'),
    totpStored,
    emailStored: emailEnabled,
    passkeys,
    backupCodes,
  };
}

/**
 * True when the user must pass a second factor at login: they have set one up, whether or not the
 * operator still offers it. Taking a method out of MFA_METHODS must never turn a protected account
 * into a password-only one; such a user logs in with a backup code and enrols an offered factor.
 */
export function hasActiveFactor(state: FactorState): boolean {
  return state.totpStored || state.emailStored || state.passkeys > 0;
}

/** The stored factors, as requireBindingProof takes them. */
export function storedFactors(state: FactorState): { totp: boolean; email: boolean; passkey: boolean } {
  return { totp: state.totpStored, email: state.emailStored, passkey: state.passkeys > 0 };
}

/** The methods `/login/mfa` accepts for this user. */
export function mfaMethods(state: FactorState): string[] {
  const methods: string[] = [];
  if (state.totpActive) methods.push('totp');
  if (state.emailEnabled) methods.push('email');
  if (state.passkeys > 0) methods.push('passkey');
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

/**
 * A TOTP code at password login for an account whose TOTP secret is only pending (the password-only
 * `/qrcode` enrolment): checked against the pending secret, which it then activates, but only while
 * the account has no factor at all. Runs in the login's transaction after the user row's lock (the
 * lock of factor changes) and decides on the state read there: a factor the user confirmed a moment
 * ago (e-mailed codes, a passkey) is seen here, or sees this TOTP and asks for aal2.
 */
export async function checkFirstTotpCode(deps: Deps, tx: Queryable, userId: string, code: string): Promise<'active' | 'activated' | null> {
  const current = await loadFactorState(deps, userId, tx);
  return verifyTotpCode(deps, tx, current.totp, code, !hasActiveFactor(current));
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
 * Checks an e-mailed code for (user, purpose), counting the attempt first: one guarded, autocommit
 * UPDATE takes an attempt (refused at EMAIL_OTP_MAX_ATTEMPTS) and returns the stored digest, which is
 * then compared here. Of any number of simultaneous guesses at most EMAIL_OTP_MAX_ATTEMPTS are ever
 * compared, and a wrong one stays counted whatever happens later. Returns the digest when the code
 * matches; the caller spends it with {@link spendEmailCode} (in its transaction). Never call it
 * inside a transaction callback: PGlite is one connection and would wait for itself.
 */
export async function checkEmailCode(deps: Deps, userId: string, purpose: string, code: string): Promise<string | undefined> {
  const stored = await reserveEmailOtpAttempt(deps.db, userId, purpose, deps.clock(), deps.config.emailOtpMaxAttempts);
  if (stored === undefined || !/^\d{6}$/.test(code)) return undefined;
  const given = emailCodeHash(deps, userId, purpose, code);
  return given.length === stored.length && timingSafeEqual(Buffer.from(given), Buffer.from(stored)) ? stored : undefined;
}

/** Spends the code checked by {@link checkEmailCode}: true for exactly one caller. */
export function spendEmailCode(tx: Queryable, userId: string, purpose: string, digest: string): Promise<boolean> {
  return spendEmailOtp(tx, userId, purpose, digest);
}
