/** Work done in the sign-up transaction besides the insert (the verification e-mail is queued here). */
import type { Deps } from '../deps.ts';
import type { Queryable } from '../db/database.ts';
import type { UserRow } from '../db/repositories/users.ts';

/** Runs inside the sign-up transaction, so whatever it queues commits or rolls back with the user. */
export async function afterUserRegistered(_deps: Deps, _tx: Queryable, _user: UserRow): Promise<void> {
  // The e-mail verification mail is added here by the account-lifecycle work (issue 3).
}
