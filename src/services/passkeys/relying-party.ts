/**
 * The WebAuthn ceremonies, done by @simplewebauthn/server (no home-made CBOR or signature code):
 * creation and request options, and verification of attestations and assertions against the
 * configured RP ID and origin, with user verification required. No database access here.
 */
import type {
  AuthenticationResponseJSON,
  AuthenticatorTransport,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/server';
import type * as SimpleWebAuthn from '@simplewebauthn/server';
import type { WebauthnConfig } from '../../config-webauthn.ts';
import { AppError } from '../../errors.ts';
import type { PasskeyRow } from '../../db/repositories/passkeys/credentials.ts';
import { toCounter } from '../../db/repositories/passkeys/credentials.ts';
import { unusablePublicKey } from './public-key.ts';

/**
 * The library, loaded on the first ceremony rather than at start-up: with its ASN.1 and X.509
 * dependencies it is about 4 MB of live heap (issue 7, item 17) that an instance whose users never
 * use passkeys would carry for nothing.
 */
let library: Promise<typeof SimpleWebAuthn> | undefined;
function webauthn(): Promise<typeof SimpleWebAuthn> {
  library ??= import('@simplewebauthn/server');
  return library;
}

/** ES256 and RS256, the two algorithms the contract names (every platform authenticator has one). */
export const SUPPORTED_ALGORITHMS = [-7, -257];

/**
 * The longest credential id WebAuthn Level 3 lets a relying party accept (§7.1, registration: at most 1023 bytes).
 * Anything longer is refused at registration: it could not be indexed (a 500) or sent back at login.
 */
export const MAX_CREDENTIAL_ID_BYTES = 1023;

/** {@link MAX_CREDENTIAL_ID_BYTES} as base64url characters (no padding): the request schemas' limit for `id`. */
export const MAX_CREDENTIAL_ID_CHARS = Math.ceil((MAX_CREDENTIAL_ID_BYTES * 4) / 3);

const TRANSPORTS = new Set(['ble', 'cable', 'hybrid', 'internal', 'nfc', 'smart-card', 'usb']);

/**
 * The detail of every sign-in answer that is refused for its credential: unknown here, another
 * account's user handle, or a bad signature. One sentence for all, so that an answer signed with a
 * key of one's own cannot tell a real credential id (listed for a username) from a decoy.
 */
export const UNVERIFIED_PASSKEY = 'The passkey could not be verified.';

/** The error every bad passkey answer gets; `status` 401 at login, 400 (the code's own) at registration. */
export function passkeyError(detail: string, cause?: unknown, status?: number): AppError {
  return new AppError('invalid_passkey', { detail, cause, ...(status ? { status } : {}) });
}

/** Keeps the transports WebAuthn defines (they are echoed back to browsers in later options). */
export function cleanTransports(list: unknown): AuthenticatorTransport[] {
  return Array.isArray(list) ? (list.filter((t) => typeof t === 'string' && TRANSPORTS.has(t)) as AuthenticatorTransport[]) : [];
}

/**
 * The challenge a response claims to answer, read from its clientDataJSON (base64url of JSON), so
 * the stored challenge can be looked up and taken. The signature later proves it; undefined when unreadable.
 */
export function claimedChallenge(credential: { response?: { clientDataJSON?: unknown } }): string | undefined {
  const raw = credential.response?.clientDataJSON;
  if (typeof raw !== 'string' || raw.length > 8192) return undefined;
  try {
    const data = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as { challenge?: unknown };
    return typeof data.challenge === 'string' && /^[A-Za-z0-9_-]{16,128}$/.test(data.challenge) ? data.challenge : undefined;
  } catch {
    return undefined;
  }
}

/** Creation options for `user`: resident key and user verification required, the user's passkeys excluded. */
export async function creationOptions(
  rp: WebauthnConfig,
  user: { username: string; handle: string },
  existing: Pick<PasskeyRow, 'credential_id' | 'transports'>[],
): Promise<PublicKeyCredentialCreationOptionsJSON> {
  const { generateRegistrationOptions } = await webauthn();
  return generateRegistrationOptions({
    rpName: rp.rpName,
    rpID: rp.rpId,
    userName: user.username,
    userDisplayName: user.username,
    userID: Buffer.from(user.handle, 'base64url'),
    timeout: rp.challengeTtlSeconds * 1000,
    attestationType: 'none',
    excludeCredentials: existing.map((p) => ({ id: p.credential_id, transports: cleanTransports(p.transports) })),
    authenticatorSelection: { residentKey: 'required', requireResidentKey: true, userVerification: 'required' },
    supportedAlgorithmIDs: SUPPORTED_ALGORITHMS,
  });
}

/**
 * Request options: `allow` empty for discoverable credentials (autofill, "Sign in with a passkey").
 * An entry without `transports` is listed without the hint (the passwordless options, login.ts).
 */
export async function requestOptions(rp: WebauthnConfig, allow: Array<Pick<PasskeyRow, 'credential_id'> & Partial<Pick<PasskeyRow, 'transports'>>>): Promise<PublicKeyCredentialRequestOptionsJSON> {
  const { generateAuthenticationOptions } = await webauthn();
  return generateAuthenticationOptions({
    rpID: rp.rpId,
    timeout: rp.challengeTtlSeconds * 1000,
    userVerification: 'required',
    allowCredentials: allow.map((p) => ({ id: p.credential_id, ...(p.transports ? { transports: cleanTransports(p.transports) } : {}) })),
  });
}

/** What a verified registration stores. */
export interface VerifiedCredential {
  credentialId: string;
  publicKey: string;
  counter: number;
  transports: AuthenticatorTransport[];
  deviceType: 'singleDevice' | 'multiDevice';
  backedUp: boolean;
  aaguid: string;
}

/**
 * The id stored is the one inside the signed authenticator data; the library checks `id` against
 * `rawId` but not against it. It must be the id the browser reports (and will send at login) and
 * no longer than WebAuthn allows, else a crafted answer stores a passkey that can never sign in.
 */
function assertCredentialId(fromAuthData: string, fromResponse: string): void {
  if (Buffer.byteLength(fromAuthData, 'base64url') > MAX_CREDENTIAL_ID_BYTES) {
    throw passkeyError(`The credential id is longer than ${MAX_CREDENTIAL_ID_BYTES} bytes.`);
  }
  if (fromAuthData !== fromResponse) throw passkeyError('The credential id does not match the one in the authenticator data.');
}

/** Verifies an attestation for `challenge`; 400 invalid_passkey on anything wrong (origin, RP ID hash, UV flag, format…). */
export async function verifyRegistration(rp: WebauthnConfig, credential: RegistrationResponseJSON, challenge: string): Promise<VerifiedCredential> {
  const { verifyRegistrationResponse } = await webauthn();
  let result;
  try {
    result = await verifyRegistrationResponse({
      response: credential,
      expectedChallenge: challenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.rpId,
      requireUserVerification: true,
      supportedAlgorithmIDs: SUPPORTED_ALGORITHMS,
    });
  } catch (e) {
    throw passkeyError('The passkey could not be verified (wrong site, no user verification, or a malformed answer).', e);
  }
  if (!result.verified) throw passkeyError('The passkey could not be verified.');
  const info = result.registrationInfo;
  assertCredentialId(info.credential.id, credential.id);
  const unusable = await unusablePublicKey(info.credential.publicKey);
  if (unusable) throw passkeyError(unusable);
  return {
    credentialId: info.credential.id,
    publicKey: Buffer.from(info.credential.publicKey).toString('base64url'),
    counter: info.credential.counter,
    transports: cleanTransports(credential.response.transports ?? info.credential.transports),
    deviceType: info.credentialDeviceType,
    backedUp: info.credentialBackedUp,
    aaguid: info.aaguid,
  };
}

/** A verified assertion: the authenticator's new counter and backup state. */
export interface VerifiedAssertion {
  newCounter: number;
  backedUp: boolean;
  deviceType: 'singleDevice' | 'multiDevice';
  /** The counter did not grow although one of the two is non-zero: a possible clone (refused by the caller). */
  counterRegressed: boolean;
}

/**
 * Verifies an assertion by `passkey` for `challenge` (signature, origin, RP ID hash, UP and UV flags).
 * The counter is compared here, after the signature is proven, so that only a genuinely signed
 * step back is recorded as a regression (a forged one is just a bad signature). `status` of the error: 401.
 */
export async function verifyAssertion(rp: WebauthnConfig, credential: AuthenticationResponseJSON, challenge: string, passkey: PasskeyRow): Promise<VerifiedAssertion> {
  const { verifyAuthenticationResponse } = await webauthn();
  let result;
  const stored = toCounter(passkey);
  try {
    result = await verifyAuthenticationResponse({
      response: credential,
      expectedChallenge: challenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.rpId,
      // 0: the library's own counter rule is bypassed, ours below runs on a proven signature.
      credential: { id: passkey.credential_id, publicKey: Buffer.from(passkey.public_key, 'base64url'), counter: 0, transports: cleanTransports(passkey.transports) },
      requireUserVerification: true,
    });
  } catch (e) {
    throw passkeyError(UNVERIFIED_PASSKEY, e, 401);
  }
  if (!result.verified) throw passkeyError(UNVERIFIED_PASSKEY, undefined, 401);
  const { newCounter, credentialBackedUp, credentialDeviceType } = result.authenticationInfo;
  return {
    newCounter,
    backedUp: credentialBackedUp,
    deviceType: credentialDeviceType,
    counterRegressed: (newCounter > 0 || stored > 0) && newCounter <= stored,
  };
}

/** RFC 8176 methods of a passkey: `hwk` for a device-bound key, `swk` for one that may be synced; `user` for the verification. */
export function passkeyAmr(deviceType: string): string[] {
  return [deviceType === 'multiDevice' ? 'swk' : 'hwk', 'user'];
}
