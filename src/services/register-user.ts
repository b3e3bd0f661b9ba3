/** Sign-up: validates, hashes, inserts the user (and a pending second factor when asked for at sign-up). */
import type { Deps } from '../deps.ts';
import { AppError, type FieldError } from '../errors.ts';
import { newId } from '../crypto/random.ts';
import { findUserByEmail, findUserByUsername, insertUser, type UserRow } from '../db/repositories/users.ts';
import { checkPassword } from '../security/password-policy.ts';
import { startTotpEnrollment, type TotpEnrollment } from './totp-enrollment.ts';
import { afterUserRegistered } from './registration-hooks.ts';

export interface RegisterInput {
  username: string;
  email: string;
  password1: string;
  password2: string;
  full_name?: string;
  profile?: Record<string, unknown>;
  mfa?: 'totp' | 'email';
}

/** Largest accepted `profile`, serialised (the contract: a free JSON object of at most 4 KiB). */
export const PROFILE_MAX_BYTES = 4096;

/** Creates a user; throws validation_failed, username_taken or email_taken. `signupIp`: where the request came from. */
export async function registerUser(deps: Deps, input: RegisterInput, signupIp?: string): Promise<{ user: UserRow; totp?: TotpEnrollment }> {
  const username = input.username.trim();
  const email = input.email.trim();
  const errors: FieldError[] = [];
  if (input.password1 !== input.password2) errors.push({ field: 'password2', message: 'Passwords do not match.' });
  if (input.profile !== undefined && Buffer.byteLength(JSON.stringify(input.profile)) > PROFILE_MAX_BYTES) {
    errors.push({ field: 'profile', message: `Profile must be at most ${PROFILE_MAX_BYTES} bytes of JSON.` });
  }
  if (input.mfa !== undefined && !deps.config.mfaMethods.includes(input.mfa)) {
    errors.push({ field: 'mfa', message: `Second factor "${input.mfa}" is not offered by this service.` });
  }
  if (errors.length === 0) errors.push(...(await checkPassword(deps.config, input.password1, { username, email, fullName: input.full_name })));
  if (errors.length) throw new AppError('validation_failed', { detail: errors.map((e) => e.message).join(' '), errors });

  // Friendly early answers; the unique indexes below remain the real guard against races.
  if (await findUserByUsername(deps.db, username)) throw new AppError('username_taken', { detail: 'This username is taken.', errors: [{ field: 'username', message: 'is taken' }] });
  if (await findUserByEmail(deps.db, email)) throw new AppError('email_taken', { detail: 'An account with this e-mail address exists.', errors: [{ field: 'email', message: 'is taken' }] });

  const passwordHash = await deps.passwords.hash(input.password1);
  try {
    return await deps.db.transaction(async (tx) => {
      const user = await insertUser(tx, {
        id: newId(),
        username,
        email,
        full_name: input.full_name?.trim() || null,
        profile: input.profile ?? {},
        password_hash: passwordHash,
        signup_mfa: input.mfa ?? null,
        created_at: deps.clock(),
        signup_ip: signupIp ?? null,
      });
      const totp = input.mfa === 'totp' ? await startTotpEnrollment(deps, tx, user, true) : undefined;
      await afterUserRegistered(deps, tx, user);
      return totp ? { user, totp } : { user };
    });
  } catch (e) {
    const pgError = e as { code?: string; constraint?: string; message?: string };
    if (pgError.code === '23505') {
      const text = `${pgError.constraint ?? ''} ${pgError.message ?? ''}`;
      if (text.includes('users_email_lower_key')) throw new AppError('email_taken', { detail: 'An account with this e-mail address exists.', errors: [{ field: 'email', message: 'is taken' }] });
      throw new AppError('username_taken', { detail: 'This username is taken.', errors: [{ field: 'username', message: 'is taken' }] });
    }
    throw e;
  }
}

/** The public profile: nothing private (no e-mail, no factors). */
export function publicUser(user: UserRow) {
  return { username: user.username, is_active: user.is_active, created_at: user.created_at.toISOString(), updated_at: user.updated_at.toISOString() };
}

/** The private profile returned at sign-up. */
export function privateUser(user: UserRow) {
  return {
    uuid: user.id,
    username: user.username,
    email: user.email,
    email_verified: user.email_verified,
    is_active: user.is_active,
    created_at: user.created_at.toISOString(),
    updated_at: user.updated_at.toISOString(),
  };
}
