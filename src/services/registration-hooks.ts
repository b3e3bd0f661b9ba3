/** Work done in the sign-up transaction besides the insert (the verification e-mail is queued here). */
import type { Deps } from '../deps.ts';
import type { Queryable } from '../db/database.ts';
import { setActive, type UserRow } from '../db/repositories/users.ts';
import { queueVerificationMail } from './email-verification.ts';

/**
 * Runs inside the sign-up transaction, so whatever it queues commits or rolls back with the user.
 *
 * With REQUIRE_EMAIL_VERIFICATION=true the account starts inactive, as in the original Django
 * service, and the verification link activates it; `user` is updated in place so the 201 answer
 * shows `is_active: false`. Every sign-up gets the verification mail.
 */
export async function afterUserRegistered(deps: Deps, tx: Queryable, user: UserRow): Promise<void> {
  if (deps.config.requireEmailVerification) {
    // updated_at stays the creation time: this is part of creating the account, not a later change.
    await setActive(tx, user.id, false, user.updated_at);
    user.is_active = false;
  }
  await queueVerificationMail(deps, tx, user);
}
