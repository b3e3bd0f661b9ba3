/**
 * Signing in with a passkey: passwordless (discoverable credentials, autofill) and as the second
 * step of a password login. Attempts are counted before the check like codes (limiter.ts), the
 * challenge is taken (deleted) before the assertion is verified so a replay or a concurrent second
 * use of it finds nothing, and the counter is moved on by a guarded update in the session's transaction.
 */
import type { AuthenticationResponseJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import type { Deps } from '../../deps.ts';
import { AppError } from '../../errors.ts';
import { randomToken } from '../../crypto/random.ts';
import { findLiveChallenge } from '../../db/repositories/mfa-challenges.ts';
import { findPasskeyByCredentialId, listPasskeys, recordCounterRegression, recordPasskeyUse, type PasskeyRow } from '../../db/repositories/passkeys/credentials.ts';
import { insertWebauthnChallenge, takeWebauthnChallenge, type ChallengePurpose } from '../../db/repositories/passkeys/challenges.ts';
import { decoyCredentials } from './decoy.ts';
import { findUserById, findUserByLogin, noteLoginIfUsable, type TokenClaimsOfUser, type UserRow } from '../../db/repositories/users.ts';
import { recordLoginFailure, recordLoginSuccess } from '../audit/login-events.ts';
import { recordSecurityEvent, userContext } from '../audit/record.ts';
import { verifyMfaToken } from '../login.ts';
import { assertUsable, refusalInFlight } from '../login-guards.ts';
import { accountNames, loginAccountName } from '../password-check.ts';
import type { Attempt, AttemptSubject } from '../../security/limiter.ts';
import { trimSessionsOverLimit } from '../sessions-limit.ts';
import { createSession, signTokenPair, type AuthLevel, type ClientInfo, type TokenPair } from '../tokens.ts';
import { MAX_CREDENTIAL_ID_CHARS, UNVERIFIED_PASSKEY, passkeyAmr, passkeyError, claimedChallenge, requestOptions, verifyAssertion, type VerifiedAssertion } from './relying-party.ts';

/** What the passwordless options endpoint answers. */
export interface PasskeyLoginOptions {
  challenge_token: string;
  options: PublicKeyCredentialRequestOptionsJSON;
}

async function storeChallenge(deps: Deps, purpose: ChallengePurpose, id: string, challenge: string, userId: string | null, mfaChallengeId: string | null, loginName: string | null = null): Promise<void> {
  const now = deps.clock();
  await insertWebauthnChallenge(deps.db, {
    id,
    challenge,
    purpose,
    user_id: userId,
    mfa_challenge_id: mfaChallengeId,
    login_name: loginName,
    created_at: now,
    expires_at: new Date(now.getTime() + deps.config.webauthn.challengeTtlSeconds * 1000),
  });
}

/** The user id the passkey query runs with for an unknown name (no user has it: ids are random UUIDs). */
const NO_USER_ID = '00000000-0000-0000-0000-000000000000';

/**
 * The passkeys a name's sign-in options list: its own, or decoys for a name without any (unknown, or
 * a user who has none). Both paths do the same work (the user lookup, the passkey query, the decoys'
 * hashes), so the time taken does not tell them apart either.
 *
 * Ids only, without the transports stored at registration: those are what a browser reported then
 * (sorted sets such as ["internal"], ["hybrid","internal"], ["nfc","usb"]), and with them every
 * decoy would have to guess a set per entry that real lists show, and a rare one would give a real
 * account away. They are optional hints (WebAuthn §5.8.3): without them the browser may try every
 * transport, at worst one more choice in Chrome's or Safari's dialog (a security-key user picks "security
 * key"), and a stale hint (["internal"] for a passkey since synced to a phone) no longer steers it
 * away from the phone that now holds the passkey. The second step's options (mfaPasskeyOptions), for
 * a user whose password is proven, keep them.
 */
async function allowedForName(deps: Deps, login: string): Promise<Pick<PasskeyRow, 'credential_id'>[]> {
  const user = await findUserByLogin(deps.db, login);
  const passkeys = await listPasskeys(deps.db, user?.id ?? NO_USER_ID);
  const decoys = decoyCredentials(deps, login);
  return passkeys.length > 0 ? passkeys.map((p) => ({ credential_id: p.credential_id })) : decoys;
}

/**
 * POST /login/passkey/options: request options and their challenge_token. Without a username
 * `allowCredentials` is empty (discoverable credentials: the browser offers the user's passkeys,
 * also as autofill); with one, the user's passkeys — or decoys, so unknown names look the same.
 */
export async function passkeyLoginOptions(deps: Deps, username: string | undefined, ip: string): Promise<PasskeyLoginOptions> {
  await deps.limiter.consume('passkey:ip', ip);
  const login = username?.trim();
  const allow = login ? await allowedForName(deps, login) : [];
  const options = await requestOptions(deps.config.webauthn, allow);
  const token = randomToken(32);
  // Stored as the limiter's digest of the name, not as typed (see loginAccountName).
  await storeChallenge(deps, 'login', token, options.challenge, null, null, login ? loginAccountName(deps, login) : null);
  return { challenge_token: token, options };
}

/** The stored passkey a response names, and the user owning it (undefined when unknown). */
async function credentialOwner(deps: Deps, credential: AuthenticationResponseJSON): Promise<{ passkey: PasskeyRow; user: UserRow } | undefined> {
  const id = typeof credential.id === 'string' && credential.id.length <= MAX_CREDENTIAL_ID_CHARS ? credential.id : undefined;
  const passkey = id ? await findPasskeyByCredentialId(deps.db, id) : undefined;
  const user = passkey ? await findUserById(deps.db, passkey.user_id) : undefined;
  return passkey && user ? { passkey, user } : undefined;
}

/**
 * Verifies `credential` as an assertion by `passkey` of `user` for the challenge already taken. A
 * user handle in the answer must be this user's; a signed counter that did not grow is counted on
 * the credential, logged, and refused.
 */
async function verifyOwnAssertion(deps: Deps, credential: AuthenticationResponseJSON, challenge: string, passkey: PasskeyRow, user: UserRow, client: ClientInfo): Promise<VerifiedAssertion> {
  const handle = credential.response?.userHandle;
  if (handle !== undefined && handle !== null && handle !== '' && handle !== user.webauthn_user_id) {
    throw passkeyError(UNVERIFIED_PASSKEY, undefined, 401);
  }
  const verified = await verifyAssertion(deps.config.webauthn, credential, challenge, passkey);
  if (verified.counterRegressed) {
    // Its own transaction: the record must outlive the refused login. A step back of a proven signature
    // means two copies of the key exist (WebAuthn §6.1.1 "signCount"; NIST SP 800-63B §5.2.9).
    await deps.db.transaction(async (tx) => {
      await recordCounterRegression(tx, passkey.id);
      await recordSecurityEvent(tx, {
        ...userContext(user.id, client),
        type: 'passkey.counter_regressed',
        userId: user.id,
        data: { passkey_id: passkey.id, stored_counter: Number(passkey.counter), received_counter: verified.newCounter },
        at: deps.clock(),
      });
    });
    deps.logger.warn({ userId: user.id, passkeyId: passkey.id, storedCounter: Number(passkey.counter), receivedCounter: verified.newCounter }, 'passkey signature counter did not grow: login refused (possible cloned authenticator)');
    throw passkeyError('This passkey could not be accepted. If you copied it to another device, remove it and add it again.', undefined, 401);
  }
  return verified;
}

/** The session's level after a passkey: aal2, RFC 8176 methods naming the key (and `pwd` after a password). */
function passkeyLevel(verified: VerifiedAssertion, afterPassword: boolean): AuthLevel {
  return { amr: [...(afterPassword ? ['pwd'] : []), ...passkeyAmr(verified.deviceType), 'mfa'], aal: 'aal2' };
}

/** Settles a passwordless attempt as failed and records login.failed (and login.locked when it locked the account). */
async function failed(deps: Deps, attempt: Attempt, userId: string | null, client: ClientInfo): Promise<void> {
  const locked = await attempt.failed();
  await recordLoginFailure(deps, userId, client, { reason: 'invalid_passkey', method: 'passkey', step: 'passkey' }, locked);
}

/**
 * Who a passwordless attempt is counted against, besides the IP. A credential that names an account
 * counts against it (all its names). One that names nobody, answering options asked for a login name,
 * counts against that name (the digest stored with the challenge), as a wrong password for it would: those options list a decoy for a name
 * without passkeys (unknown, or a user who has none), and if failures with the decoy counted only
 * against the IP, the lock that failures with a real credential earn (a 429 here and at the password
 * login) would tell the two apart, undoing the decoy.
 */
function attemptSubject(deps: Deps, owner: UserRow | undefined, loginAccount: string | null, ip: string): AttemptSubject {
  if (owner) return { account: owner.id, alsoAccounts: accountNames(deps, owner), ip };
  return loginAccount ? { account: loginAccount, ip } : { ip };
}

/**
 * POST /login/passkey: a passwordless login. The attempt is counted (IP, and the account once the
 * credential names one) before anything is checked; any failure answers 401 invalid_passkey.
 */
export async function loginWithPasskey(deps: Deps, input: { challenge_token: string; credential: AuthenticationResponseJSON }, client: ClientInfo): Promise<TokenPair> {
  const ip = client.ip ?? 'unknown';
  const owner = await credentialOwner(deps, input.credential);
  // Taken (deleted) before the attempt is counted: the count needs the name the options were asked for.
  // A challenge is tried once either way, and the assertion is verified only after the count.
  const claimed = claimedChallenge(input.credential);
  const taken = claimed ? await takeWebauthnChallenge(deps.db, 'login', claimed, { id: input.challenge_token }, deps.clock()) : undefined;
  const attempt = await deps.limiter.beginAttempt(attemptSubject(deps, owner?.user, taken?.login_name ?? null, ip));
  let verified: VerifiedAssertion;
  try {
    if (!taken) throw passkeyError('The sign-in challenge is unknown, used or expired; start again.', undefined, 401);
    if (!owner) throw passkeyError(UNVERIFIED_PASSKEY, undefined, 401);
    verified = await verifyOwnAssertion(deps, input.credential, taken.challenge, owner.passkey, owner.user, client);
  } catch (e) {
    if (e instanceof AppError && e.code === 'invalid_passkey') await failed(deps, attempt, owner?.user.id ?? null, client);
    else await attempt.passed().catch(() => undefined);
    throw e;
  }
  const { user, passkey } = owner!;
  try {
    assertUsable(deps, user);
  } catch (e) {
    await attempt.passed();
    throw e;
  }
  let raced = false;
  let claims: (TokenClaimsOfUser & Pick<UserRow, 'password_changed_at'>) | undefined;
  const session = await deps.db
    .transaction(async (tx) => {
      // The user row's update lock first, as every change of a user's passkeys takes it (removal, an
      // admin's reset or deletion, the second step): the passkey row locked before it deadlocked with
      // a removal on PostgreSQL (a 500). Then the session insert, which takes a share lock on that
      // row: taking share then update would deadlock two sign-ins of one user.
      // Only while the account may still log in: a deactivation committed since the check above wins.
      claims = await noteLoginIfUsable(tx, user.id, deps.clock(), deps.config.requireEmailVerification);
      if (!claims) throw await refusalInFlight(deps, tx, user.id, () => passkeyError(UNVERIFIED_PASSKEY, undefined, 401));
      // A passkey removed meanwhile matches nothing here either.
      if (!(await recordPasskeyUse(tx, passkey.id, Number(passkey.counter), verified.newCounter, verified.backedUp, deps.clock()))) {
        raced = true;
        throw passkeyError('The passkey was used by another sign-in at the same moment; try again.', undefined, 401);
      }
      // The password as the lock read it: a reset committed meanwhile does not refuse a passkey (a 401
      // invalid_credentials about a password this sign-in never used); it revokes only older sessions.
      const created = await createSession(deps, tx, { id: user.id, password_changed_at: claims.password_changed_at }, passkeyLevel(verified, false), client);
      await recordLoginSuccess(deps, tx, user.id, client, created);
      await trimSessionsOverLimit(deps, tx, user.id, created.id, client); // last: see its lock order
      return created;
    })
    .catch(async (e: unknown) => {
      if (raced) await failed(deps, attempt, user.id, client);
      else await attempt.passed().catch(() => undefined);
      throw e;
    });
  await attempt.succeeded(accountNames(deps, user));
  // The roles as the row's lock read them (a role removed while the sign-in was in flight is not signed in).
  return signTokenPair(deps, { ...user, ...claims }, session, session.current_jti);
}

/**
 * POST /login/mfa/passkey/options: request options limited to the challenge's user's passkeys.
 * 401 invalid_token for a dead challenge; 400 method_not_enabled when the user has no passkey.
 */
export async function mfaPasskeyOptions(deps: Deps, mfaToken: string, ip: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
  const { challengeId, userId } = await verifyMfaToken(deps, mfaToken);
  await deps.limiter.consume('passkey:ip', ip);
  const live = await findLiveChallenge(deps.db, challengeId, userId, deps.clock(), deps.config.mfaChallengeMaxAttempts);
  if (!live) throw new AppError('invalid_token', { detail: 'The MFA challenge is expired, used or over-tried; log in again.' });
  const passkeys = await listPasskeys(deps.db, userId);
  if (passkeys.length === 0) throw new AppError('method_not_enabled', { detail: 'This account has no passkey.' });
  const options = await requestOptions(deps.config.webauthn, passkeys);
  await storeChallenge(deps, 'mfa', randomToken(16), options.challenge, userId, challengeId);
  return options;
}

/** A passkey proven at the second step, waiting for its use to be recorded in the session's transaction. */
export interface MfaPasskeyProof {
  passkey: PasskeyRow;
  verified: VerifiedAssertion;
}

/**
 * The second step's passkey check (the caller has counted the attempt): takes the WebAuthn
 * challenge of this MFA challenge, then verifies that the credential is one of `user`'s passkeys.
 * Throws 401 invalid_passkey on any failure.
 */
export async function checkMfaPasskey(deps: Deps, user: UserRow, mfaChallengeId: string, credential: AuthenticationResponseJSON | undefined, client: ClientInfo): Promise<MfaPasskeyProof> {
  if (!credential) throw passkeyError('Send the passkey answer as `credential`.', undefined, 401);
  const claimed = claimedChallenge(credential);
  const taken = claimed ? await takeWebauthnChallenge(deps.db, 'mfa', claimed, { mfaChallengeId, userId: user.id }, deps.clock()) : undefined;
  if (!taken) throw passkeyError('The passkey challenge is unknown, used or expired; ask for new options.', undefined, 401);
  const owner = await credentialOwner(deps, credential);
  // Another user's credential is refused like an unknown one.
  if (!owner || owner.user.id !== user.id) throw passkeyError('This passkey is not registered for this account.', undefined, 401);
  return { passkey: owner.passkey, verified: await verifyOwnAssertion(deps, credential, taken.challenge, owner.passkey, user, client) };
}

/** Records the proven use in `tx` (guarded counter); the level for the session, or undefined when another use won. */
export async function spendMfaPasskey(deps: Deps, tx: Parameters<typeof recordPasskeyUse>[0], proof: MfaPasskeyProof): Promise<AuthLevel | undefined> {
  const { passkey, verified } = proof;
  if (!(await recordPasskeyUse(tx, passkey.id, Number(passkey.counter), verified.newCounter, verified.backedUp, deps.clock()))) return undefined;
  return passkeyLevel(verified, true);
}
