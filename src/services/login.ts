/**
 * Password login (one step, optionally with a TOTP or backup code) and the second step of a two-step
 * login. Every attempt is counted by the limiter before its check (password-check.ts); one message
 * for unknown user and wrong password; a dummy hash for unknown users keeps the timing equal.
 */
import type { Queryable } from '../db/database.ts';
import type { Deps } from '../deps.ts';
import { AppError } from '../errors.ts';
import { TokenError } from '../crypto/jwt.ts';
import { newId } from '../crypto/random.ts';
import { findUserById, lockUserIfPasswordUnchanged, noteLoginIfPasswordUnchanged, rehashPasswordIfUnchanged, setLastLogin, type TokenClaimsOfUser, type UserRow } from '../db/repositories/users.ts';
import { countBackupCodes } from '../db/repositories/backup-codes.ts';
import { consumeChallenge, insertChallenge, reserveAttempt } from '../db/repositories/mfa-challenges.ts';
import type { Attempt } from '../security/limiter.ts';
import { enqueueMail } from '../mail/outbox.ts';
import { issueBackupCodesIfNone } from './backup-codes.ts';
import { assertUsable, refusalInFlight } from './login-guards.ts';
import { endOtherSessionsAtFirstFactor } from './factor-changes.ts';
import { accountNames, checkLoginPassword } from './password-check.ts';
import { recordLoginFailure, recordLoginSuccess } from './audit/login-events.ts';
import { recordSecurityEvent, userContext } from './audit/record.ts';
import { trimSessionsOverLimit } from './sessions-limit.ts';
import { AMR, createSession, passwordChangedDuringLogin, signTokenPair, type AuthLevel, type ClientInfo, type TokenPair } from './tokens.ts';
import type { AuthenticationResponseJSON } from '@simplewebauthn/server';
import { checkMfaPasskey, spendMfaPasskey, type MfaPasskeyProof } from './passkeys/login.ts';
import { passkeyError } from './passkeys/relying-party.ts';
import { checkEmailCode, checkFirstTotpCode, hasActiveFactor, loadFactorState, mfaMethods, spendEmailCode, useBackupCode, verifyTotpCode, type FactorState } from './second-factors.ts';
import { hasStoredFactor } from '../db/repositories/totp-factors.ts';

export interface PasswordLoginInput {
  username: string;
  password: string;
  security_code?: string;
  backup_code?: string;
}

/** A login's answer: the tokens, plus the backup codes when this login turned on the user's first factor. */
export interface LoginResult extends TokenPair {
  /** Present only when this login activated a pending TOTP secret (see finishLogin); shown once. */
  backup_codes?: string[];
  /** After a login with a backup code: how many unused codes the user has left. */
  backup_codes_remaining?: number;
}

export function codeError(): AppError {
  return new AppError('invalid_security_code', { detail: 'The security code is not valid.' });
}

/**
 * Creates the session and signs its tokens; clears the account's failure counts (all its names).
 * The session, login.succeeded and last_login_at commit together.
 * `spend`: a second factor checked (and spent) inside the login's transaction, after the user row's
 * lock (which is also the lock of factor changes): a backup code, or a TOTP code that may activate a
 * pending secret — the user's first factor. What it spends commits with the session, or not at all:
 * a password changed meanwhile leaves no code spent and no factor bound by the old password. A wrong
 * code rolls everything back and throws {@link CodeRejected}. An activation commits with its backup
 * codes, notice mail and audit entry; the 10 codes are returned: this answer is the only place they
 * are ever shown, as when confirming TOTP on the account page.
 */
async function finishLogin(deps: Deps, user: UserRow, level: AuthLevel, client: ClientInfo, attempt: Attempt, spend?: (tx: Queryable) => Promise<'spent' | 'activated' | null>): Promise<LoginResult> {
  let codes: string[] = [];
  let claims: TokenClaimsOfUser | undefined;
  const passwordUnchanged = async (tx: Queryable) => {
    claims = await noteLoginIfPasswordUnchanged(tx, user.id, deps.clock(), user.password_changed_at, deps.config.requireEmailVerification);
    if (!claims) throw await refusalInFlight(deps, tx, user.id, passwordChangedDuringLogin);
  };
  const session = await deps.db.transaction(async (tx) => {
    // The user row's update lock guards the session against a password change (see
    // noteLoginIfPasswordUnchanged). Taken last, it is held only until the commit: logins of one
    // account wait on each other for the last few statements (with the session cap's trim), not for
    // a whole transaction. A first factor
    // takes it first instead: two first logins cannot both issue backup codes, and a factor
    // confirmed elsewhere at the same instant is seen by the check.
    let activated = false;
    if (spend) {
      await passwordUnchanged(tx);
      const result = await spend(tx);
      if (!result) throw new CodeRejected();
      activated = result === 'activated';
    }
    const created = await createSession(deps, tx, user, level, client);
    await recordLoginSuccess(deps, tx, user.id, client, created);
    if (activated) {
      codes = await issueBackupCodesIfNone(deps, tx, user.id);
      await endOtherSessionsAtFirstFactor(deps, tx, user.id, created.id, userContext(user.id, client));
      await enqueueMail(tx, deps, { kind: 'factor_added', to: user.email, data: { username: user.username, factor: 'totp' } });
      await recordSecurityEvent(tx, { ...userContext(user.id, client), type: 'mfa.enabled', userId: user.id, data: { method: 'totp' }, at: created.created_at });
    }
    if (!spend) await passwordUnchanged(tx);
    // A first factor confirmed while this password-only login was in flight: its transaction ended
    // the sessions committed by then, not this one. Read again in a statement of its own, after the
    // row lock above (which waits for such a change to commit; one that starts later waits for this
    // commit and then ends this session): a password alone no longer opens a session here.
    if (level.aal === 'aal1' && (await hasStoredFactor(tx, user.id))) throw new FactorAddedDuringLogin();
    // Last, after the user row's lock on either path: see trimSessionsOverLimit (lock order).
    await trimSessionsOverLimit(deps, tx, user.id, created.id, client);
    return created;
  });
  await attempt.succeeded(accountNames(deps, user));
  const pair = await signTokenPair(deps, { ...user, ...claims }, session, session.current_jti);
  return codes.length > 0 ? { ...pair, backup_codes: codes } : pair;
}

/** The code given to finishLogin's `spend` did not match (its transaction was rolled back). */
class CodeRejected extends Error {}

/** A password-only login found a second factor set up meanwhile (its transaction was rolled back). */
class FactorAddedDuringLogin extends Error {}

/**
 * Runs `fn`; a throw settles `attempt` as passed (the password was right), unless `fn` settled it
 * already. `fail` settles it as failed, records login.failed (and login.locked) and throws.
 */
async function afterPassword<T>(
  deps: Deps,
  user: UserRow,
  client: ClientInfo,
  step: 'password' | 'mfa',
  attempt: Attempt,
  fn: (fail: (method?: string, error?: AppError) => Promise<never>) => Promise<T>,
): Promise<T> {
  let settled = false;
  // `error`: what the client is told (a wrong code by default; invalid_passkey for a passkey).
  const fail = async (method?: string, error: AppError = codeError()): Promise<never> => {
    settled = true;
    const locked = await attempt.failed();
    await recordLoginFailure(deps, user.id, client, { reason: method === 'passkey' ? 'invalid_passkey' : 'invalid_code', step, ...(method ? { method } : {}) }, locked);
    throw error;
  };
  try {
    return await fn(fail);
  } catch (e) {
    if (!settled) await attempt.passed().catch(() => undefined);
    throw e;
  }
}

/**
 * Logs in with username (or e-mail) and password. Returns tokens, or throws 403 mfa_required with an
 * MFA challenge when a second factor is due and none was given.
 */
export async function loginWithPassword(deps: Deps, input: PasswordLoginInput, client: ClientInfo): Promise<LoginResult> {
  const proof = await checkLoginPassword(deps, input.username, input.password, client);
  const { user, legacy } = proof;
  let attempt = proof.attempt;
  if ((input.security_code ?? '') !== '' || (input.backup_code ?? '') !== '') {
    // A code sent with a proven password is a second-factor guess: it counts against the account by
    // id and by both its names, as at /login/mfa (the password already tells who the account is).
    // Counted only against the name typed, each name gave its own budget of code guesses.
    await proof.attempt.passed();
    attempt = await deps.limiter.beginAttempt({ account: user.id, alsoAccounts: accountNames(deps, user), ip: client.ip ?? 'unknown' });
  }
  return afterPassword(deps, user, client, 'password', attempt, async (fail) => {
    assertUsable(deps, user);
    if (legacy || deps.passwords.needsRehash(user.password_hash)) {
      // Parameters changed, or the hash predates NFKC normalisation: upgrade it now that we hold the
      // password. Only over the hash just checked: a reset committed meanwhile keeps its own.
      await rehashPasswordIfUnchanged(deps.db, user.id, user.password_hash, await deps.passwords.hash(input.password));
    }

    const factors = await loadFactorState(deps, user.id);
    if (input.security_code !== undefined && input.security_code !== '') {
      // A stored TOTP secret counts only while the operator offers TOTP (MFA_METHODS), as at /login/mfa.
      // A pending secret is activated only for an account with no factor at all: a password alone
      // must never bind a new authenticator next to one the user already has.
      if (!deps.config.mfaMethods.includes('totp')) return fail('totp');
      const code = input.security_code.trim();
      const level: AuthLevel = { amr: [...AMR.totp], aal: 'aal2' };
      if (hasActiveFactor(factors) || !factors.totp?.pending_secret) {
        if (!(await verifyTotpCode(deps, deps.db, factors.totp, code, false))) return fail('totp');
        return finishLogin(deps, user, level, client, attempt);
      }
      try {
        return await finishLogin(deps, user, level, client, attempt, async (tx) => {
          const result = await checkFirstTotpCode(deps, tx, user.id, code);
          return result === 'active' ? 'spent' : result;
        });
      } catch (e) {
        if (e instanceof CodeRejected) return fail('totp');
        throw e;
      }
    }
    if (input.backup_code !== undefined && input.backup_code !== '') {
      if (!hasActiveFactor(factors)) return fail('backup_code');
      const backupCode = input.backup_code;
      let result: LoginResult;
      let remaining = 0;
      try {
        // Spent with the session: a code is not used up by a login that a password reset then refuses.
        // The codes left are counted in the same transaction: read after its commit, a failed read
        // (the database gone for a moment) answered 500 for a login whose code was spent and whose
        // session existed, and the user could not try again with that code.
        result = await finishLogin(deps, user, { amr: [...AMR.backupCode], aal: 'aal2' }, client, attempt, async (tx) => {
          if (!(await useBackupCode(deps, tx, user.id, backupCode))) return null;
          remaining = await countBackupCodes(tx, user.id);
          return 'spent';
        });
      } catch (e) {
        if (e instanceof CodeRejected) return fail('backup_code');
        throw e;
      }
      return { ...result, backup_codes_remaining: remaining };
    }
    if (hasActiveFactor(factors)) throw await mfaRequired(deps, user, client, factors);
    if (deps.config.mfaPolicy === 'required') {
      throw new AppError('mfa_enrollment_required', {
        detail: 'This service requires a second factor: enrol TOTP with POST /api/v1/auth-totp/qrcode, then log in with a security_code.',
      });
    }
    try {
      return await finishLogin(deps, user, { amr: [...AMR.password], aal: 'aal1' }, client, attempt);
    } catch (e) {
      // The factor set up meanwhile is asked for, as it would have been a moment later.
      if (e instanceof FactorAddedDuringLogin) throw await mfaRequired(deps, user, client, await loadFactorState(deps, user.id));
      throw e;
    }
  });
}

/** 403 mfa_required with a new challenge for `user`, whose password was just proven. */
async function mfaRequired(deps: Deps, user: UserRow, client: ClientInfo, factors: FactorState): Promise<AppError> {
  const challenge = await issueChallenge(deps, user, client);
  return new AppError('mfa_required', {
    detail: 'A second factor is required.',
    extra: { mfa_token: challenge.token, mfa_methods: mfaMethods(factors), mfa_expires_in: deps.config.mfaChallengeTtlSeconds },
  });
}

/**
 * Stores an MFA challenge and signs its mfa+jwt (jti and sid = challenge id; no session exists yet).
 * The challenge keeps the password_changed_at of `user`, the row the password was checked against,
 * and is opened only while that is still current: a login in flight across a reset gets none.
 */
async function issueChallenge(deps: Deps, user: UserRow, client: ClientInfo): Promise<{ id: string; token: string }> {
  const now = deps.clock();
  const id = newId();
  const ttl = deps.config.mfaChallengeTtlSeconds;
  const challenge = { id, user_id: user.id, created_at: now, expires_at: new Date(now.getTime() + ttl * 1000), user_agent: client.userAgent, ip: client.ip, password_changed_at: user.password_changed_at };
  if (!(await insertChallenge(deps.db, challenge))) throw passwordChangedDuringLogin();
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
  method: 'totp' | 'email' | 'backup_code' | 'passkey';
  /** The code (totp, email, backup_code). */
  code?: string;
  /** The WebAuthn assertion (passkey), answering options from /login/mfa/passkey/options. */
  credential?: AuthenticationResponseJSON;
}

/**
 * Second step: checks one code against a live challenge. The limiter's attempt and the challenge's
 * attempt are both taken (and committed) before the code is checked, so a challenge never sees more
 * than MFA_CHALLENGE_MAX_ATTEMPTS codes, however many arrive at once. The code is then spent in the
 * transaction that consumes the challenge and creates the session, after the challenge row is
 * taken: of two different valid codes arriving at once (a TOTP and a backup code, say) one wins and
 * the other is not spent — its transaction finds the challenge used and rolls back.
 */
export async function completeMfaLogin(deps: Deps, input: MfaLoginInput, client: ClientInfo): Promise<LoginResult> {
  const { challengeId, userId } = await verifyMfaToken(deps, input.mfa_token);
  const user = await findUserById(deps.db, userId);
  if (!user) throw new AppError('invalid_token');
  // The token proves which account this is, so code guesses here also lock its logins by both names.
  const attempt = await deps.limiter.beginAttempt({ account: userId, alsoAccounts: accountNames(deps, user), ip: client.ip ?? 'unknown' });
  return afterPassword(deps, user, client, 'mfa', attempt, async (fail) => {
    const challenge = await reserveAttempt(deps.db, challengeId, userId, deps.clock(), deps.config.mfaChallengeMaxAttempts);
    if (!challenge) throw new AppError('invalid_token', { detail: 'The MFA challenge is expired, used or over-tried; log in again.' });
    assertUsable(deps, user);

    const factors = await loadFactorState(deps, user.id);
    const code = (input.code ?? '').trim();
    const purpose = `login:${challengeId}`;
    // Only methods the operator offers; backup codes whenever the account has any factor stored.
    const method =
      (input.method === 'totp' && factors.totpActive) ||
      (input.method === 'email' && factors.emailEnabled) ||
      (input.method === 'passkey' && factors.passkeys > 0) ||
      (input.method === 'backup_code' && hasActiveFactor(factors))
        ? input.method
        : undefined;
    if (method === undefined) return fail(input.method, input.method === 'passkey' ? passkeyError('This account has no passkey.', undefined, 401) : undefined);
    // The e-mailed code's own attempt count is taken outside the transaction, so it survives a rollback.
    const emailDigest = method === 'email' ? await checkEmailCode(deps, user.id, purpose, code) : undefined;
    if (method === 'email' && emailDigest === undefined) return fail('email');
    // The passkey's WebAuthn challenge is taken (single use) and the assertion verified before the
    // transaction; its counter moves on inside it, guarded, with the session.
    let passkeyProof: MfaPasskeyProof | undefined;
    if (method === 'passkey') {
      try {
        passkeyProof = await checkMfaPasskey(deps, user, challengeId, input.credential, client);
      } catch (e) {
        return e instanceof AppError && e.code === 'invalid_passkey' ? fail('passkey', e) : Promise.reject(e);
      }
    }

    let wrongCode = false;
    let remaining = 0;
    let level: AuthLevel | undefined;
    let claims: TokenClaimsOfUser | undefined;
    const session = await deps.db
      .transaction(async (tx) => {
        // The user row first (the lock order of a password reset), then the challenge, then the code.
        // Its update lock (last_login_at, rolled back with a wrong code) comes before the share locks
        // below: share-then-update deadlocks two simultaneous completions for one user on PostgreSQL.
        await setLastLogin(tx, user.id, deps.clock());
        // Against the password the first step proved (kept in the challenge), not the row read above:
        // that one is read now, after any reset, and would let a challenge won with the old password pass.
        claims = await lockUserIfPasswordUnchanged(tx, user.id, challenge.password_changed_at);
        if (!claims) throw new AppError('invalid_token', { detail: 'The password changed; log in again.' });
        if (!(await consumeChallenge(tx, challengeId, deps.clock()))) throw new AppError('invalid_token', { detail: 'The MFA challenge was already used.' });
        if (method === 'totp' && (await verifyTotpCode(deps, tx, factors.totp, code, false))) level = { amr: [...AMR.totp], aal: 'aal2' };
        else if (method === 'email' && emailDigest !== undefined && (await spendEmailCode(tx, user.id, purpose, emailDigest))) level = { amr: [...AMR.email], aal: 'aal2' };
        else if (method === 'backup_code' && (await useBackupCode(deps, tx, user.id, code))) {
          level = { amr: [...AMR.backupCode], aal: 'aal2' };
          remaining = await countBackupCodes(tx, user.id); // in the transaction: see the one-step login
        }
        else if (method === 'passkey' && passkeyProof) level = await spendMfaPasskey(deps, tx, passkeyProof);
        if (!level) {
          wrongCode = true;
          throw codeError(); // rolls the challenge back: a wrong code does not end it
        }
        const created = await createSession(deps, tx, { id: user.id, password_changed_at: challenge.password_changed_at }, level, client);
        await recordLoginSuccess(deps, tx, user.id, client, created);
        await trimSessionsOverLimit(deps, tx, user.id, created.id, client); // last: see its lock order
        return created;
      })
      .catch(async (e: unknown) =>
        wrongCode ? fail(method, method === 'passkey' ? passkeyError('The passkey was used by another sign-in at the same moment.', undefined, 401) : undefined) : Promise.reject(e),
      );
    await attempt.succeeded(accountNames(deps, user));
    // The roles as the row's lock read them, not as the first read (a role removed meanwhile).
    const pair = await signTokenPair(deps, { ...user, ...claims }, session, session.current_jti);
    if (level?.amr.join() !== AMR.backupCode.join()) return pair;
    // After a backup-code login the client learns how many codes are left (the page shows it).
    return { ...pair, backup_codes_remaining: remaining };
  });
}
