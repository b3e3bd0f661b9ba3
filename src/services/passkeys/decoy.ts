/**
 * Stand-in credentials for names without passkeys. Sign-in options for a name list its passkeys; for
 * an unknown name, or a user who has none, they list a decoy instead, so the answer never shows
 * whether the name exists or has passkeys.
 *
 * A decoy must be the same every time for a name (two answers that differ give it away), and the
 * server must know one when it sees it: anyone can register a passkey under any credential id (WebAuthn
 * does not bind the id to the key), and registration answered 409 for a real passkey's id but 201 for a
 * decoy's, a second way to tell them apart. So a decoy is 8 bytes derived from the name and an 8-byte
 * tag of those bytes, both under the server key, and registration refuses ids that carry the tag as it
 * refuses an id already registered. A real 16-byte id carries it by chance once in 2^64.
 */
import type { Deps } from '../../deps.ts';
import type { PasskeyRow } from '../../db/repositories/passkeys/credentials.ts';

/** The decoy credential of `login` (16 bytes, the length many authenticators use, so it does not stand out). */
export function decoyCredential(deps: Pick<Deps, 'tokenHasher'>, login: string): Pick<PasskeyRow, 'credential_id' | 'transports'> {
  const head = Buffer.from(deps.tokenHasher.hash('passkey_decoy', login.trim().toLowerCase()), 'hex').subarray(0, 8);
  return { credential_id: Buffer.concat([head, tag(deps, head)]).toString('base64url'), transports: ['internal', 'hybrid'] };
}

/** True when `credentialId` (base64url) is a decoy this server hands out. */
export function isDecoyCredentialId(deps: Pick<Deps, 'tokenHasher'>, credentialId: string): boolean {
  const raw = Buffer.from(credentialId, 'base64url');
  return raw.length === 16 && tag(deps, raw.subarray(0, 8)).equals(raw.subarray(8));
}

function tag(deps: Pick<Deps, 'tokenHasher'>, head: Buffer): Buffer {
  return Buffer.from(deps.tokenHasher.hash('passkey_decoy_tag', head.toString('hex')), 'hex').subarray(0, 8);
}
