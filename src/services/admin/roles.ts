/**
 * Roles: lower-case words (`^[a-z][a-z0-9_.:-]{0,63}$`) on the user row, carried in the access
 * token's `roles` claim. A change reaches the user's tokens at their next token (login or refresh);
 * the admin API itself also checks the stored roles, so removing `admin` closes it at once.
 */
import type { Deps } from '../../deps.ts';
import type { Queryable } from '../../db/database.ts';
import { AppError, validationError } from '../../errors.ts';
import { findUserByLogin, findUserById, type UserRow } from '../../db/repositories/users.ts';
import { lockUser, updateUserRoles } from '../../db/repositories/admin/users.ts';
import { recordSecurityEvent, type AuditContext } from '../audit/record.ts';
import { isUuid } from '../../crypto/random.ts';

/** The contract's role name rule. */
export const ROLE_PATTERN = /^[a-z][a-z0-9_.:-]{0,63}$/;
/** Most roles one user may hold (a token carries them all). */
export const MAX_ROLES = 32;

/** Checks and normalises a role list (sorted, without repeats); 422 validation_failed naming the bad one. */
export function validateRoles(roles: readonly string[]): string[] {
  for (const role of roles) {
    if (typeof role !== 'string' || !ROLE_PATTERN.test(role)) {
      throw validationError('roles', `"${String(role).slice(0, 70)}" is not a role name: a lower-case letter, then up to 63 of a-z 0-9 _ . : -`);
    }
  }
  const unique = [...new Set(roles)].sort();
  if (unique.length > MAX_ROLES) throw validationError('roles', `At most ${MAX_ROLES} roles.`);
  return unique;
}

/**
 * Sets the roles of `user` in `tx` and records user.updated (from → to) when they changed.
 * Returns the stored roles. The caller's transaction makes the change and its entry one.
 */
export async function setRolesInTx(deps: Deps, tx: Queryable, user: Pick<UserRow, 'id' | 'roles'>, roles: readonly string[], ctx: AuditContext): Promise<string[]> {
  const next = validateRoles(roles);
  const before = [...user.roles].sort();
  if (before.join(',') === next.join(',')) return before;
  await updateUserRoles(tx, user.id, next, deps.clock());
  await recordSecurityEvent(tx, { ...ctx, type: 'user.updated', userId: user.id, data: { changes: { roles: { from: before, to: next } } }, at: deps.clock() });
  return next;
}

/** Finds a user by uuid, username or e-mail; 404 user_not_found. */
export async function findUserForAdmin(deps: Deps, ref: string): Promise<UserRow> {
  const user = isUuid(ref) ? await findUserById(deps.db, ref.toLowerCase()) : await findUserByLogin(deps.db, ref);
  if (!user) throw new AppError('user_not_found', { detail: 'No such user.' });
  return user;
}

/**
 * Gives `role` to the user named `ref` (uuid, username or e-mail) — the CLI's `users promote`, the
 * way to make the first admin. Idempotent; returns the user's roles afterwards.
 */
export async function grantRole(deps: Deps, ref: string, role: string, ctx: AuditContext): Promise<string[]> {
  const user = await findUserForAdmin(deps, ref);
  return deps.db.transaction(async (tx) => {
    // Re-read under a row lock so two grants at once do not drop each other's role.
    const current = await lockUser(tx, user.id);
    if (!current) throw new AppError('user_not_found', { detail: 'No such user.' });
    return setRolesInTx(deps, tx, { id: user.id, roles: current.roles }, [...current.roles, role], ctx);
  });
}

/** Takes `role` away from the user named `ref`; returns the roles afterwards. */
export async function revokeRole(deps: Deps, ref: string, role: string, ctx: AuditContext): Promise<string[]> {
  const user = await findUserForAdmin(deps, ref);
  return deps.db.transaction(async (tx) => {
    const current = await lockUser(tx, user.id);
    if (!current) throw new AppError('user_not_found', { detail: 'No such user.' });
    return setRolesInTx(deps, tx, { id: user.id, roles: current.roles }, current.roles.filter((r) => r !== role), ctx);
  });
}
