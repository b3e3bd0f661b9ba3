/**
 * Whether an account may log in, checked twice by every login: on the row its password (or passkey)
 * was checked against, and again when its transaction locks the user row, so that an admin's
 * deactivation or a password change committed in between opens no session.
 */
import type { Deps } from '../deps.ts';
import type { Queryable } from '../db/database.ts';
import { AppError } from '../errors.ts';
import { findUserById, type UserRow } from '../db/repositories/users.ts';

/**
 * Checks the account may log in at all (after its password was proven, so nothing leaks before).
 * The verification check comes first: with REQUIRE_EMAIL_VERIFICATION=true accounts are created
 * inactive until verified, and such a user must be told to verify, not that the account is inactive.
 */
export function assertUsable(deps: Deps, user: Pick<UserRow, 'email_verified' | 'is_active'>): void {
  if (deps.config.requireEmailVerification && !user.email_verified) {
    throw new AppError('email_not_verified', { detail: 'Verify your e-mail address before logging in.' });
  }
  if (!user.is_active) throw new AppError('account_inactive', { detail: 'This account is not active.' });
}

/**
 * Why a login's guarded statement matched nothing, read in its transaction: the refusal of an account
 * that may no longer log in, or `otherwise` (its password changed; for a passkey, the user is gone).
 */
export async function refusalInFlight(deps: Deps, tx: Queryable, userId: string, otherwise: () => AppError): Promise<AppError> {
  const current = await findUserById(tx, userId);
  if (!current) return otherwise();
  try {
    assertUsable(deps, current);
  } catch (e) {
    if (e instanceof AppError) return e;
    throw e;
  }
  return otherwise();
}
