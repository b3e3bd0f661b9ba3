/**
 * Password login (one step, optionally with a TOTP or backup code) and the second step of a two-step
 * login. Every credential failure is counted by the limiter; one message for unknown user and wrong
 * password; a dummy hash for unknown users keeps the timing equal.
 */
import type { Deps } from '../deps.ts';
import { AppError } from '../errors.ts';
import { TokenError } from '../crypto/jwt.ts';
import { newId } from '../crypto/random.ts';
import { findUserById, findUserByLogin, updatePasswordHash, type UserRow } from '../db/repositories/users.ts';
import { consumeChallenge, insertChallenge, reserveAttempt } from '../db/repositories/mfa-challenges.ts';
import type { AttemptSubject } from '../security/limiter.ts';
import { enqueueMail } from '../mail/outbox.ts';
import { AMR, createSession, signTokenPair, type AuthLevel, type ClientInfo, type TokenPair } from './tokens.ts';
import { hasActiveFactor, loadFactorState, mfaMethods, useBackupCode, useEmailCode, verifyTotpCode } from './second-factors.ts';

export interface PasswordLoginInput {
  username: string;
  password: string;
  security_code?: string;
  backup_code?: string;
}

function credentialsError(): AppError {
  return new AppError('invalid_credentials', { detail: 'Invalid username or password.' });
}

function codeError(): AppError {
  return new AppError('invalid_security_code', { detail: 'The security code is not valid.' });
}

/**
 * Checks the account may log in at all (after its password was proven, so nothing leaks before).
 * The verification check comes first: with REQUIRE_EMAIL_VERIFICATION=true accounts are created
 * inactive until verified, and such a user must be told to verify, not that the account is inactive.
 */
function assertUsable(deps: Deps, user: UserRow): void {
  if (deps.config.requireEmailVerification && !user.email_verified) {
    throw new AppError('email_not_verified', { detail: 'Verify your e-mail address before logging in.' });
  }
  if (!user.is_active) throw new AppError('account_inactive', { detail: 'This account is not active.' });
}

/**
 * Creates the session and signs its tokens; clears the account's failure count. `totpActivated`: this
 * login's code activated a pending TOTP secret, which the user is told by mail (as for any new factor).
 */
async function finishLogin(deps: Deps, user: UserRow, level: AuthLevel, client: ClientInfo, subject: AttemptSubject, totpActivated = false): Promise<TokenPair> {
  // A lone INSERT needs no transaction of its own; the activation mail must commit with the session.
  const session = totpActivated
    ? await deps.db.transaction(async (tx) => {
        await enqueueMail(tx, deps, { kind: 'factor_added', to: user.email, data: { username: user.username, factor: 'totp' } });
        return createSession(deps, tx, user, level, client);
      })
    : await createSession(deps, deps.db, user, level, client);
  await deps.limiter.recordSuccess(subject);
  return signTokenPair(deps, user, session, session.current_jti);
}

/**
 * Logs in with username (or e-mail) and password. Returns tokens, or throws 403 mfa_required with an
 * MFA challenge when a second factor is due and none was given.
 */
export async function loginWithPassword(deps: Deps, input: PasswordLoginInput, client: ClientInfo): Promise<TokenPair> {
  const login = input.username.trim();
  const user = await findUserByLogin(deps.db, login);
  // Account key: the user id when the login names a user, so username and e-mail share one counter.
  const subject: AttemptSubject = { account: user ? user.id : `unknown:${login.toLowerCase()}`, ip: client.ip ?? 'unknown' };
  await deps.limiter.assertAllowed(subject);

  if (!user) {
    await deps.passwords.verifyDummy(input.password);
    await deps.limiter.recordFailure(subject);
    throw credentialsError();
  }
  const match = await deps.passwords.check(user.password_hash, input.password);
  if (!match) {
    await deps.limiter.recordFailure(subject);
    throw credentialsError();
  }
  assertUsable(deps, user);
  if (match === 'legacy' || deps.passwords.needsRehash(user.password_hash)) {
    // Parameters changed, or the hash predates NFKC normalisation: upgrade it now that we hold the password.
    await updatePasswordHash(deps.db, user.id, await deps.passwords.hash(input.password), deps.clock(), false);
  }

  const factors = await loadFactorState(deps, user.id);
  if (input.security_code !== undefined && input.security_code !== '') {
    // A stored TOTP secret counts only while the operator offers TOTP (MFA_METHODS), as at /login/mfa.
    const offered = deps.config.mfaMethods.includes('totp');
    const result = offered ? await verifyTotpCode(deps, deps.db, factors.totp, input.security_code.trim(), !hasActiveFactor(factors)) : null;
    if (!result) {
      await deps.limiter.recordFailure(subject);
      throw codeError();
    }
    return finishLogin(deps, user, { amr: [...AMR.totp], aal: 'aal2' }, client, subject, result === 'activated');
  }
  if (input.backup_code !== undefined && input.backup_code !== '') {
    if (!hasActiveFactor(factors) || !(await useBackupCode(deps, deps.db, user.id, input.backup_code))) {
      await deps.limiter.recordFailure(subject);
      throw codeError();
    }
    return finishLogin(deps, user, { amr: [...AMR.backupCode], aal: 'aal2' }, client, subject);
  }
  if (hasActiveFactor(factors)) {
    const challenge = await issueChallenge(deps, user, client);
    throw new AppError('mfa_required', {
      detail: 'A second factor is required.',
      extra: { mfa_token: challenge.token, mfa_methods: mfaMethods(factors), mfa_expires_in: deps.config.mfaChallengeTtlSeconds },
    });
  }
  if (deps.config.mfaPolicy === 'required') {
    throw new AppError('mfa_enrollment_required', {
      detail: 'This service requires a second factor: enrol TOTP with POST /api/v1/auth-totp/qrcode, then log in with a security_code.',
    });
  }
  return finishLogin(deps, user, { amr: [...AMR.password], aal: 'aal1' }, client, subject);
}

/** Stores an MFA challenge and signs its mfa+jwt (jti and sid = challenge id; no session exists yet). */
async function issueChallenge(deps: Deps, user: UserRow, client: ClientInfo): Promise<{ id: string; token: string }> {
  const now = deps.clock();
  const id = newId();
  const ttl = deps.config.mfaChallengeTtlSeconds;
  await insertChallenge(deps.db, { id, user_id: user.id, created_at: now, expires_at: new Date(now.getTime() + ttl * 1000), user_agent: client.userAgent, ip: client.ip });
  const iat = Math.floor(now.getTime() / 1000);
  const token = await deps.keys.sign('mfa', { sub: user.id, iat, exp: iat + ttl, jti: id, sid: id });
  return { id, token };
}

/** Verifies an mfa+jwt; returns the challenge id and user id. */
export async function verifyMfaToken(deps: Deps, token: string): Promise<{ challengeId: string; userId: string }> {
  try {
    const claims = await deps.keys.verify('mfa', token, deps.clock());
    if (typeof claims.jti !== 'string' || typeof claims.sub !== 'string') throw new TokenError('claims');
    return { challengeId: claims.jti, userId: claims.sub };
  } catch (e) {
    if (e instanceof TokenError) throw new AppError('invalid_token', { detail: 'The MFA token is invalid or expired.', cause: e });
    throw e;
  }
}

export interface MfaLoginInput {
  mfa_token: string;
  method: 'totp' | 'email' | 'backup_code';
  code: string;
}

/**
 * Second step: checks one code against a live challenge. The attempt is reserved (and committed)
 * before the code is checked, so a challenge never sees more than MFA_CHALLENGE_MAX_ATTEMPTS codes,
 * however many arrive at once; success consumes the challenge in the same transaction as the session.
 */
export async function completeMfaLogin(deps: Deps, input: MfaLoginInput, client: ClientInfo): Promise<TokenPair> {
  const { challengeId, userId } = await verifyMfaToken(deps, input.mfa_token);
  const subject: AttemptSubject = { account: userId, ip: client.ip ?? 'unknown' };
  await deps.limiter.assertAllowed(subject);
  const now = deps.clock();
  const challenge = await reserveAttempt(deps.db, challengeId, userId, now, deps.config.mfaChallengeMaxAttempts);
  if (!challenge) throw new AppError('invalid_token', { detail: 'The MFA challenge is expired, used or over-tried; log in again.' });
  const user = await findUserById(deps.db, userId);
  if (!user) throw new AppError('invalid_token');
  assertUsable(deps, user);

  const factors = await loadFactorState(deps, user.id);
  const code = input.code.trim();
  let level: AuthLevel | undefined;
  if (input.method === 'totp' && factors.totpActive) {
    if (await verifyTotpCode(deps, deps.db, factors.totp, code, false)) level = { amr: [...AMR.totp], aal: 'aal2' };
  } else if (input.method === 'email' && factors.emailEnabled) {
    if (await useEmailCode(deps, user.id, `login:${challengeId}`, code)) level = { amr: [...AMR.email], aal: 'aal2' };
  } else if (input.method === 'backup_code' && hasActiveFactor(factors)) {
    if (await useBackupCode(deps, deps.db, user.id, code)) level = { amr: [...AMR.backupCode], aal: 'aal2' };
  }
  if (!level) {
    await deps.limiter.recordFailure(subject);
    throw codeError();
  }
  const authLevel = level;
  const session = await deps.db.transaction(async (tx) => {
    if (!(await consumeChallenge(tx, challengeId, deps.clock()))) throw new AppError('invalid_token', { detail: 'The MFA challenge was already used.' });
    return createSession(deps, tx, user, authLevel, client);
  });
  await deps.limiter.recordSuccess(subject);
  return signTokenPair(deps, user, session, session.current_jti);
}
