/** Sign-up: validates, hashes, inserts the user (and a pending second factor when asked for at sign-up). */
import type { Deps } from '../deps.ts';
import { AppError, type FieldError } from '../errors.ts';
import { newId } from '../crypto/random.ts';
import { findUserByEmail, findUserByUsername, insertUser, setRolesAndVerified, type UserRow } from '../db/repositories/users.ts';
import { checkPassword } from '../security/password-policy.ts';
import { isReservedUsername, isValidEmail, USERNAME_PATTERN } from '../security/login-names.ts';
import { startTotpEnrollment, type TotpEnrollment } from './totp-enrollment.ts';
import { afterUserRegistered } from './registration-hooks.ts';
import { recheckAdminCaller } from './admin/authorize.ts';
import { recordAdminVouched } from './admin/vouched-address.ts';
import { enableEmailOtpAfterVerification } from './email-otp.ts';
import { recordSecurityEvent, type AuditContext } from './audit/record.ts';

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

/** What an admin may set besides the sign-up body (POST /api/v1/admin/users). */
export interface RegisterOptions {
  roles?: string[];
  emailVerified?: boolean;
}

/**
 * Creates a user; throws validation_failed, username_taken or email_taken. `ctx` says who did it
 * (the person signing up: a 'user' actor without id becomes the new user; or an admin); user.created
 * is recorded in the transaction of the insert.
 */
export async function registerUser(deps: Deps, input: RegisterInput, ctx: AuditContext, options: RegisterOptions = {}): Promise<{ user: UserRow; totp?: TotpEnrollment }> {
  const username = input.username.trim();
  const email = input.email.trim();
  const errors: FieldError[] = [];
  // The route schemas check these already; callers without them (the CLI) must not store a name
  // that lookups cannot find (security/login-names.ts).
  if (!new RegExp(USERNAME_PATTERN).test(username)) errors.push({ field: 'username', message: 'Use 3–32 of A–Z, a–z, 0–9, _ . -' });
  if (!isValidEmail(email)) errors.push({ field: 'email', message: 'Enter a valid e-mail address.' });
  if (input.password1 !== input.password2) errors.push({ field: 'password2', message: 'Passwords do not match.' });
  if (input.profile !== undefined && Buffer.byteLength(JSON.stringify(input.profile)) > PROFILE_MAX_BYTES) {
    errors.push({ field: 'profile', message: `Profile must be at most ${PROFILE_MAX_BYTES} bytes of JSON.` });
  }
  if (input.mfa !== undefined && !deps.config.mfaMethods.includes(input.mfa)) {
    errors.push({ field: 'mfa', message: `Second factor "${input.mfa}" is not offered by this service.` });
  }
  if (errors.length === 0) errors.push(...(await checkPassword(deps.config, input.password1, { username, email, fullName: input.full_name })));
  if (errors.length) throw new AppError('validation_failed', { detail: errors.map((e) => e.message).join(' '), errors });

  // Friendly early answers; the unique indexes below remain the real guard against races. A reserved
  // name is answered as taken: it is, by a path of the service.
  if (isReservedUsername(username) || (await findUserByUsername(deps.db, username))) throw new AppError('username_taken', { detail: 'This username is taken.', errors: [{ field: 'username', message: 'is taken' }] });
  if (await findUserByEmail(deps.db, email)) throw new AppError('email_taken', { detail: 'An account with this e-mail address exists.', errors: [{ field: 'email', message: 'is taken' }] });

  const passwordHash = await deps.passwords.hash(input.password1);
  try {
    return await deps.db.transaction(async (tx) => {
      // An admin creating the account is checked again here (a deactivated admin's request in flight).
      await recheckAdminCaller(tx, ctx);
      const user = await insertUser(tx, {
        id: newId(),
        username,
        email,
        full_name: input.full_name?.trim() || null,
        profile: input.profile ?? {},
        password_hash: passwordHash,
        signup_mfa: input.mfa ?? null,
        created_at: deps.clock(),
        // Where a person signed up from (mail-quota owner detection); none for admin-created users.
        signup_ip: ctx.actor.kind === 'user' ? ctx.ip : null,
      });
      const totp = input.mfa === 'totp' ? await startTotpEnrollment(deps, tx, user, true) : undefined;
      if (options.roles?.length || options.emailVerified) {
        const updated = await setRolesAndVerified(tx, user.id, options.roles ?? [], options.emailVerified ?? false);
        Object.assign(user, { roles: updated.roles, email_verified: updated.email_verified });
      }
      // An address an admin vouches for needs no verification mail (and starts active).
      if (!user.email_verified) await afterUserRegistered(deps, tx, user);
      const actor = ctx.actor.kind === 'user' && ctx.actor.id === undefined ? { kind: 'user' as const, id: user.id } : ctx.actor;
      await recordSecurityEvent(tx, {
        ...ctx,
        actor,
        type: 'user.created',
        userId: user.id,
        // No username or address: an erased user's entries keep only the uuid.
        data: { roles: user.roles, email_verified: user.email_verified, ...(input.mfa ? { mfa: input.mfa } : {}) },
        at: user.created_at,
      });
      // An address the admin vouches for counts as verified (recorded as such, as the link would be):
      // e-mailed codes chosen at sign-up start now.
      if (user.email_verified) await recordAdminVouched(tx, { ...ctx, actor }, user.id, user.is_active, user.created_at);
      if (user.email_verified && user.signup_mfa === 'email') await enableEmailOtpAfterVerification(deps, tx, user, { ...ctx, actor });
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
