/**
 * email.verified for an address an admin vouches for (PATCH or creation with `email_verified: true`,
 * or `twofold users create` from the shell). The user's own link records the type too
 * (email-verification.ts); services that follow only `email.verified` must hear of both, so the entry
 * (and with it the event) has the link's data plus `by_admin: true`, naming the admin as actor.
 */
import type { Queryable } from '../../db/database.ts';
import { recordSecurityEvent, type AuditContext } from '../audit/record.ts';

/** Records email.verified in `tx`, the transaction that set the flag; `isActive` as the account is once that change is done. */
export async function recordAdminVouched(tx: Queryable, ctx: AuditContext, userId: string, isActive: boolean, at: Date): Promise<void> {
  await recordSecurityEvent(tx, { ...ctx, type: 'email.verified', userId, data: { is_active: isActive, by_admin: true }, at });
}
