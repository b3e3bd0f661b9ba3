/**
 * Adding a passkey: creation options (a single-use challenge bound to the caller) and verification
 * of the browser's answer. The same factor rules as TOTP: with any factor already active only an
 * aal2 session may add one; the user's first factor brings the backup codes; every add mails the user.
 * A user holds at most {@link MAX_PASSKEYS_PER_USER}.
 */
import type { PublicKeyCredentialCreationOptionsJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import type { Deps } from '../../deps.ts';
import { AppError } from '../../errors.ts';
import { newId, randomToken } from '../../crypto/random.ts';
import { countPasskeys, ensureWebauthnUserId, insertPasskey, listPasskeys } from '../../db/repositories/passkeys/credentials.ts';
import { isDecoyCredentialId } from './decoy.ts';
import { insertChallengeRow, sweepExpiredChallenges, takeWebauthnChallenge, trimRegistrationChallenges } from '../../db/repositories/passkeys/challenges.ts';
import { lockUserForUpdate } from '../../db/repositories/users.ts';
import { enqueueMail } from '../../mail/outbox.ts';
import type { AuthContext } from '../authenticate.ts';
import { recordSecurityEvent, userContext } from '../audit/record.ts';
import type { ClientInfo } from '../tokens.ts';
import { issueBackupCodesIfNone } from '../backup-codes.ts';
import { callerUser, endOtherSessionsAtFirstFactor, lockFactorChangesOfSession, requireBindingProof } from '../factor-changes.ts';
import { hasActiveFactor, loadFactorState, storedFactors } from '../second-factors.ts';
import { claimedChallenge, creationOptions, passkeyError, verifyRegistration } from './relying-party.ts';
import { passkeyView, type PasskeyView } from './view.ts';

/** Bytes of a WebAuthn user handle (random, per user; WebAuthn allows up to 64). */
const USER_HANDLE_BYTES = 32;

/**
 * Most passkeys one user may hold. Without a cap a session could add passkeys without end: a mail
 * each, and every login's options listing them all. Twenty covers a phone, a laptop and security
 * keys several times over; the user removes one to add another.
 */
export const MAX_PASSKEYS_PER_USER = 20;

/** 409 passkey_limit_reached unless the user holds fewer than {@link MAX_PASSKEYS_PER_USER} passkeys. */
function assertBelowPasskeyLimit(count: number): void {
  if (count >= MAX_PASSKEYS_PER_USER) {
    throw new AppError('passkey_limit_reached', { detail: `You have ${MAX_PASSKEYS_PER_USER} passkeys, the most an account may hold; remove one to add another.` });
  }
}

/**
 * Registration challenges a user may have at once: a few tabs or retries. Older ones are dropped as
 * new ones are asked for (each request used to leave a row for five minutes, unbounded).
 */
export const REGISTRATION_CHALLENGES_PER_USER = 5;

/**
 * POST /passkeys/registration/options: creation options with a fresh challenge for the caller.
 * Counted on the `passkey:ip` quota, as the sign-in options are.
 */
export async function startPasskeyRegistration(deps: Deps, auth: AuthContext, ip: string): Promise<PublicKeyCredentialCreationOptionsJSON> {
  await deps.limiter.consume('passkey:ip', ip);
  const user = await callerUser(deps, auth);
  await requireBindingProof(deps, auth, storedFactors(await loadFactorState(deps, user.id)));
  const rp = deps.config.webauthn;
  const existing = await listPasskeys(deps.db, user.id);
  assertBelowPasskeyLimit(existing.length);
  const handle = await ensureWebauthnUserId(deps.db, user.id, randomToken(USER_HANDLE_BYTES));
  // No row: the account was deleted after the session check (an admin's deletion committing now).
  if (!handle) throw new AppError('invalid_token', { detail: 'The account no longer exists.' });
  const options = await creationOptions(rp, { username: user.username, handle }, existing);
  const now = deps.clock();
  await sweepExpiredChallenges(deps.db, now);
  // Trimmed and stored under the user's row lock: simultaneous requests take turns, so the user never
  // holds more than REGISTRATION_CHALLENGES_PER_USER (without it, 40 at once left 31).
  await deps.db.transaction(async (tx) => {
    await lockUserForUpdate(tx, user.id);
    await trimRegistrationChallenges(tx, user.id, REGISTRATION_CHALLENGES_PER_USER - 1);
    await insertChallengeRow(tx, {
      id: randomToken(16),
      challenge: options.challenge,
      purpose: 'registration',
      user_id: user.id,
      mfa_challenge_id: null,
      login_name: null,
      created_at: now,
      expires_at: new Date(now.getTime() + rp.challengeTtlSeconds * 1000),
    });
  });
  return options;
}

/** A registered passkey, plus the backup codes when it was the user's first factor. */
export interface RegisteredPasskey extends PasskeyView {
  backup_codes?: string[];
}

/** The name a passkey gets when the caller gives none. */
function defaultName(deps: Deps): string {
  return `Passkey ${deps.clock().toISOString().slice(0, 10)}`;
}

/**
 * POST /passkeys/registration/verify: takes the caller's challenge (single use: gone whatever the
 * outcome), verifies the attestation (origin, RP ID hash, user verification) and stores the passkey
 * in one transaction with its mail and, for a first factor, the backup codes.
 */
export async function finishPasskeyRegistration(deps: Deps, auth: AuthContext, credential: RegistrationResponseJSON, name: string | undefined, client: ClientInfo): Promise<RegisteredPasskey> {
  const user = await callerUser(deps, auth);
  // Checked again here: the options may have been fetched before another factor was added.
  await requireBindingProof(deps, auth, storedFactors(await loadFactorState(deps, user.id)));
  const rp = deps.config.webauthn;
  const challenge = claimedChallenge(credential);
  const taken = challenge ? await takeWebauthnChallenge(deps.db, 'registration', challenge, { userId: user.id }, deps.clock()) : undefined;
  if (!taken) throw passkeyError('The registration challenge is unknown, used, expired or not yours; start again.');
  const verified = await verifyRegistration(rp, credential, taken.challenge);
  const label = name?.trim() || defaultName(deps);
  return deps.db.transaction(async (tx) => {
    // The user row first (as issueBackupCodesIfNone does), so two registrations at once serialise
    // and the count below cannot be passed by several of them together.
    const { loginAt } = await lockFactorChangesOfSession(deps, tx, auth);
    // The binding rule once more under that lock: a factor confirmed since the read above (TOTP, e-mailed
    // codes, another passkey) takes the same lock, so it is seen here or sees this passkey.
    const current = await loadFactorState(deps, user.id, tx);
    await requireBindingProof(deps, auth, storedFactors(current), loginAt);
    // Again here: options fetched while below the cap may be answered after other passkeys were added.
    assertBelowPasskeyLimit(await countPasskeys(tx, user.id));
    const id = newId();
    const now = deps.clock();
    // A decoy's id (sign-in options for a name without passkeys) is refused as a taken one is: a 201
    // for it and a 409 for a real passkey's id told them apart (decoy.ts).
    const stored = isDecoyCredentialId(deps, verified.credentialId) ? undefined : await insertPasskey(tx, {
      id,
      user_id: user.id,
      credential_id: verified.credentialId,
      public_key: verified.publicKey,
      counter: verified.counter,
      transports: verified.transports,
      device_type: verified.deviceType,
      backed_up: verified.backedUp,
      aaguid: verified.aaguid,
      name: label,
      created_at: now,
    });
    if (!stored) throw new AppError('passkey_already_registered', { detail: 'This passkey is already registered.' });
    const codes = await issueBackupCodesIfNone(deps, tx, user.id);
    if (!hasActiveFactor(current)) await endOtherSessionsAtFirstFactor(deps, tx, user.id, auth.sessionId, userContext(user.id, client));
    await enqueueMail(tx, deps, { kind: 'factor_added', to: user.email, data: { username: user.username, factor: 'passkey', passkeyName: label } });
    await recordSecurityEvent(tx, {
      ...userContext(user.id, client),
      type: 'passkey.added',
      userId: user.id,
      data: { passkey_id: id, name: label, device_type: verified.deviceType, backed_up: verified.backedUp, aaguid: verified.aaguid, first_factor: codes.length > 0 },
      at: now,
    });
    // The first passkey turns the method on, as TOTP and e-mailed codes announce theirs: a service that
    // tracks whether a user has a second factor follows mfa.enabled / mfa.disabled alone.
    if (current.passkeys === 0) {
      await recordSecurityEvent(tx, { ...userContext(user.id, client), type: 'mfa.enabled', userId: user.id, data: { method: 'passkey', backups_issued: codes.length > 0 }, at: now });
    }
    const view = passkeyView({ id, name: label, created_at: now, last_used_at: null, backed_up: verified.backedUp, device_type: verified.deviceType, transports: verified.transports });
    return codes.length > 0 ? { ...view, backup_codes: codes } : view;
  });
}
