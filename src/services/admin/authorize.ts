/**
 * Who may use the admin API: a program presenting ADMIN_API_KEY, or a person whose access token
 * carries the role `admin` and `aal2` (contract, "Administration"). Anyone else: 403 admin_required.
 */
import type { Deps } from '../../deps.ts';
import { AppError } from '../../errors.ts';
import { safeEqual } from '../../crypto/token-hash.ts';
import { authenticateWithRoles } from '../authenticate.ts';
import type { Queryable } from '../../db/database.ts';
import { lockActiveAdminForChange } from '../../db/repositories/admin/users.ts';
import type { AuditActor, AuditContext } from '../audit/record.ts';

/** The role that opens the admin API to a person. */
export const ADMIN_ROLE = 'admin';

/** An authorised admin caller, as the audit log names it. */
export interface AdminCaller {
  actor: AuditActor;
  /** The person's session (absent for the API key): an admin must not lock out the session doing the work by accident. */
  sessionId?: string;
}

function adminRequired(detail: string): AppError {
  return new AppError('admin_required', { detail });
}

/** A compact JWS has three base64url parts; anything else cannot be an access token. */
const JWS_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/**
 * Decides on a presented credential (the Bearer value or the access-token cookie's value).
 *
 * The API key is compared in constant time (both sides hashed to equal length first, then
 * timingSafeEqual), so response timing says nothing about how much of a guess was right; it is at
 * least 32 characters (config), far beyond online guessing. Anything shaped like a token is
 * authenticated as an access token of a live session (401 invalid_token if it is not one, as on
 * every route; a deactivated account is refused at once), and then needs the `admin` role in the
 * token — roles reach a person at their next token — AND still in the database, so a demotion
 * shuts the admin API at once — plus `aal2`: a stolen password alone never reaches it.
 */
export async function authorizeAdmin(deps: Deps, presented: string, via: 'bearer' | 'cookie'): Promise<AdminCaller> {
  const key = deps.config.adminApiKey;
  // A key arrives only as Bearer; a cookie is a browser's, never a program's key.
  if (via === 'bearer' && key !== undefined && safeEqual(presented, key)) return { actor: { kind: 'api_key' } };
  if (!JWS_SHAPE.test(presented)) throw adminRequired('Send ADMIN_API_KEY, or the access token of an admin who passed a second factor.');
  const { auth, currentRoles } = await authenticateWithRoles(deps, presented);
  if (!auth.roles.includes(ADMIN_ROLE) || !currentRoles.includes(ADMIN_ROLE)) throw adminRequired('This needs the admin role.');
  if (auth.aal !== 'aal2') throw adminRequired('An admin must log in with a second factor (aal2) to use the admin API.');
  return { actor: { kind: 'admin', id: auth.userId }, sessionId: auth.sessionId };
}

/**
 * The first statement of every change made through the admin API: the guard authorised the request
 * when it arrived, and a deactivation or demotion of that admin may have committed since (a request
 * already in flight could re-activate its own account, or create another admin). A person admin is
 * checked again in the change's transaction (see lockActiveAdminForChange); the API key and the CLI
 * (the shell's owner) pass.
 */
export async function recheckAdminCaller(tx: Queryable, ctx: AuditContext): Promise<void> {
  if (ctx.actor.kind !== 'admin' || ctx.actor.id === undefined) return;
  if (!(await lockActiveAdminForChange(tx, ctx.actor.id))) {
    throw adminRequired('Your admin role or account changed while this request was under way; nothing was changed.');
  }
}
