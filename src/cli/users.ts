/** `twofold users create | promote | unlock`: what an operator does by hand, e.g. making the first admin. */
import { randomBytes } from 'node:crypto';
import type { Deps } from '../deps.ts';
import { FlexibleLimiter } from '../security/limiter-flexible.ts';
import { findUserForAdmin, grantRole, validateRoles } from '../services/admin/roles.ts';
import { unlockUserAsAdmin } from '../services/admin/user-changes.ts';
import type { AuditContext } from '../services/audit/record.ts';
import { registerUser } from '../services/register-user.ts';
import { CliError } from './context.ts';

/** Who the audit log says acted: the operator at the command line (the service itself, no request). */
export const CLI_CONTEXT: AuditContext = Object.freeze({ actor: Object.freeze({ kind: 'system' as const }), ip: null, userAgent: 'twofold CLI' });

export interface CreateUserInput {
  username: string;
  email: string;
  /** Undefined: a random one is made and printed once. */
  password: string | undefined;
  roles: string[];
  verified: boolean;
}

/** Creates a user through the sign-up service (same validation and password policy), with roles and the verified flag. */
export async function createUser(deps: Deps, input: CreateUserInput, out: (line: string) => void): Promise<void> {
  const roles = validateRoles(input.roles);
  const generated = input.password === undefined;
  const password = input.password ?? randomBytes(18).toString('base64url');
  const { user } = await registerUser(deps, { username: input.username, email: input.email, password1: password, password2: password }, CLI_CONTEXT, {
    roles,
    emailVerified: input.verified,
  });
  out(`created user ${user.username} (${user.id})${roles.length ? `, roles: ${roles.join(', ')}` : ''}${input.verified ? ', e-mail verified' : ''}`);
  if (generated) out(`password (shown once): ${password}`);
}

/** Grants a role (audited as user.updated); it reaches the user's tokens at their next login or refresh. */
export async function promoteUser(deps: Deps, login: string, role: string, out: (line: string) => void): Promise<void> {
  const user = await findUserForAdmin(deps, login);
  const roles = await grantRole(deps, user.id, role, CLI_CONTEXT);
  out(`${user.username}: roles ${roles.join(', ')} (effective at the next login or token refresh)`);
}

/** Clears the user's lockout counters (they live in Redis with REDIS_URL, else in each server's memory). */
export async function unlockUser(deps: Deps, login: string, out: (line: string) => void): Promise<void> {
  const user = await findUserForAdmin(deps, login);
  if (!deps.config.redisUrl) {
    if (deps.config.databaseUrl) {
      throw new CliError(
        `Without REDIS_URL the lockout counters live in each running server's memory, out of this command's reach.\n` +
        `Unlock with POST /api/v1/admin/users/${user.id}/unlock, or restart the servers.`,
      );
    }
    // Embedded database: the server is stopped (this command holds its data directory), and its counters went with it.
    out(`${user.username}: not locked (the stopped server's lockout counters went with it)`);
    return;
  }
  // The unlock refuses to fall back to per-process stand-in counters, so wait for the connection;
  // an unreachable Redis fails here (or at the clear, 503 service_unavailable), exit 1, nothing recorded.
  try {
    if (deps.limiter instanceof FlexibleLimiter) await deps.limiter.ready();
  } catch (e) {
    // A name that resolves to several addresses fails with an AggregateError, whose message is empty.
    const why = (e as Error).message || (e as { code?: string }).code || 'no connection';
    throw new CliError(`Redis (REDIS_URL) cannot be reached, so ${user.username} was not unlocked: ${why}`);
  }
  await unlockUserAsAdmin(deps, user.id, CLI_CONTEXT);
  out(`${user.username}: unlocked`);
}
