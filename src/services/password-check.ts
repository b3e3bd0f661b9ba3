/**
 * The password check shared by login and the password-only `/qrcode`: the attempt is counted before
 * the password is hashed (limiter.ts), one answer for unknown users and wrong passwords, a dummy
 * hash for unknown users so the timing is the same.
 */
import type { Deps } from '../deps.ts';
import { AppError } from '../errors.ts';
import { findUserByLogin, type UserRow } from '../db/repositories/users.ts';
import type { Attempt } from '../security/limiter.ts';
import { recordLoginFailure } from './audit/login-events.ts';
import type { ClientInfo } from './tokens.ts';

function credentialsError(): AppError {
  return new AppError('invalid_credentials', { detail: 'Invalid username or password.' });
}

/**
 * The limiter's account name for a login as typed. It is the name itself, never the user it
 * resolves to: a lock earned through the username must not also lock the e-mail address (or the
 * other way round) only when both belong to one account — that would tell an attacker which
 * address belongs to which username, and that the account exists. So each of an account's two
 * names has its own count, exactly as two made-up names do; a successful login clears both.
 *
 * The name is kept as a keyed digest (HMAC-SHA256 under the token-hash key, as codes and tokens are):
 * what is typed at a login is whatever the person typed, known or not, sometimes a password typed
 * into the wrong field, and it was stored as typed in the limiter's keys (Redis, for the length of a
 * lock) and in passwordless challenges. Every instance shares the key, so they count alike.
 */
export function loginAccountName(deps: Pick<Deps, 'tokenHasher'>, login: string): string {
  return `login:${deps.tokenHasher.hash('limiter-login-name', login.trim().toLowerCase())}`;
}

/** Every limiter account name of `user`: both login names and the id (second-step and in-session checks). */
export function accountNames(deps: Pick<Deps, 'tokenHasher'>, user: Pick<UserRow, 'id' | 'username' | 'email'>): string[] {
  return [loginAccountName(deps, user.username), loginAccountName(deps, user.email), user.id];
}

/** A proven password: the user and the still unsettled attempt (the caller settles it). */
export interface PasswordProof {
  user: UserRow;
  attempt: Attempt;
  /** The hash predates NFKC normalisation (only the password as typed matched): rehash it. */
  legacy: boolean;
}

/**
 * Counts the attempt, then checks `password` for the login name. A wrong password or unknown name
 * settles the attempt as failed, records login.failed (and login.locked when it locked the account)
 * and throws invalid_credentials; 429 when locked, before any hashing.
 */
export async function checkLoginPassword(deps: Deps, login: string, password: string, client: ClientInfo): Promise<PasswordProof> {
  const name = login.trim();
  const attempt = await deps.limiter.beginAttempt({ account: loginAccountName(deps, name), ip: client.ip ?? 'unknown' });
  let user: UserRow | undefined;
  let ok: false | 'current' | 'legacy';
  try {
    user = await findUserByLogin(deps.db, name);
    ok = user ? await deps.passwords.check(user.password_hash, password) : await deps.passwords.verifyDummy(password);
  } catch (e) {
    await attempt.passed(); // our failure, not a guess
    throw e;
  }
  if (!user || !ok) {
    const locked = await attempt.failed();
    await recordLoginFailure(deps, user?.id ?? null, client, { reason: user ? 'invalid_password' : 'unknown_user', step: 'password' }, locked);
    throw credentialsError();
  }
  return { user, attempt, legacy: ok === 'legacy' };
}
