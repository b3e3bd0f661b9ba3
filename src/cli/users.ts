/** `twofold users create | promote | unlock`: what an operator does by hand, e.g. making the first admin. */
import { randomBytes } from 'node:crypto';
import type { Deps } from '../deps.ts';
import { findUserByLogin, type UserRow } from '../db/repositories/users.ts';
import { addUserRole, setEmailVerified } from '../db/repositories/user-roles.ts';
import { FlexibleLimiter } from '../security/limiter-flexible.ts';
import { registerUser } from '../services/register-user.ts';
import { accountNames } from '../services/password-check.ts';
import { CliError } from './context.ts';

/** Role names as the contract fixes them. */
const ROLE_PATTERN = /^[a-z][a-z0-9_.:-]{0,63}$/;

function validRole(role: string): string {
  if (!ROLE_PATTERN.test(role)) throw new CliError(`"${role}" is not a role name (lower-case: ${ROLE_PATTERN.source})`, 2);
  return role;
}

async function userNamed(deps: Deps, login: string): Promise<UserRow> {
  const user = await findUserByLogin(deps.db, login);
  if (!user) throw new CliError(`No user "${login}".`);
  return user;
}

export interface CreateUserInput {
  username: string;
  email: string;
  /** Undefined: a random one is made and printed once. */
  password: string | undefined;
  roles: string[];
  verified: boolean;
}

/** Creates a user through the sign-up service (same validation and password policy), then roles and the verified flag. */
export async function createUser(deps: Deps, input: CreateUserInput, out: (line: string) => void): Promise<void> {
  const roles = input.roles.map(validRole);
  const generated = input.password === undefined;
  const password = input.password ?? randomBytes(18).toString('base64url');
  const { user } = await registerUser(deps, { username: input.username, email: input.email, password1: password, password2: password });
  const now = deps.clock();
  await deps.db.transaction(async (tx) => {
    for (const role of roles) await addUserRole(tx, user.id, role, now);
    if (input.verified) await setEmailVerified(tx, user.id, now);
  });
  out(`created user ${user.username} (${user.id})${roles.length ? `, roles: ${roles.join(', ')}` : ''}${input.verified ? ', e-mail verified' : ''}`);
  if (generated) out(`password (shown once): ${password}`);
}

/** Grants a role; it reaches the user's tokens at their next login or refresh. */
export async function promoteUser(deps: Deps, login: string, role: string, out: (line: string) => void): Promise<void> {
  validRole(role);
  const user = await userNamed(deps, login);
  const roles = await deps.db.transaction((tx) => addUserRole(tx, user.id, role, deps.clock()));
  out(`${user.username}: roles ${roles!.join(', ')} (effective at the next login or token refresh)`);
}

/** Clears the user's lockout counters (they live in Redis with REDIS_URL, else in each server's memory). */
export async function unlockUser(deps: Deps, login: string, out: (line: string) => void): Promise<void> {
  const user = await userNamed(deps, login);
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
  // Until Redis answers, the limiter would clear its per-process stand-in counters instead.
  if (deps.limiter instanceof FlexibleLimiter) await deps.limiter.ready();
  for (const account of accountNames(user)) await deps.limiter.recordSuccess({ account, ip: 'cli' });
  out(`${user.username}: unlocked`);
}
