/** SQL the command line uses on users beyond sign-up: roles and the verified flag. */
import type { Queryable } from '../database.ts';

/** Adds `role` to the user's roles (no repeat); returns the roles after, or undefined for an unknown user. */
export async function addUserRole(tx: Queryable, id: string, role: string, now: Date): Promise<string[] | undefined> {
  const r = await tx.query<{ roles: string[] }>(
    `UPDATE users SET roles = CASE WHEN $2 = ANY(roles) THEN roles ELSE array_append(roles, $2) END,
       updated_at = CASE WHEN $2 = ANY(roles) THEN updated_at ELSE $3 END
     WHERE id = $1 RETURNING roles`,
    [id, role, now],
  );
  return r.rows[0]?.roles;
}

/** Marks the user's e-mail address verified (an operator vouches for it). */
export async function setEmailVerified(tx: Queryable, id: string, now: Date): Promise<void> {
  await tx.query('UPDATE users SET email_verified = true, updated_at = $2 WHERE id = $1', [id, now]);
}
