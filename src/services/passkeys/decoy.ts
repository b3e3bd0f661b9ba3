/**
 * Stand-in credentials for names without passkeys. Sign-in options for a name list its passkeys; for
 * an unknown name, or a user who has none, they list decoys instead, so the answer never shows
 * whether the name exists or has passkeys.
 *
 * Decoys must look like a real user's list, or one request tells them apart: as many entries as users
 * hold (mostly one, sometimes two or three), each with an id as long as real authenticators make them.
 * The entries carry ids only (no transports: see login.ts), so count and id lengths are the whole shape,
 * and both are drawn, per name, from a keyed hash under the server key with the weights below.
 *
 * A decoy must be the same every time for a name (two answers that differ give it away), and the
 * server must know one when it sees it: anyone can register a passkey under any credential id (WebAuthn
 * does not bind the id to the key), and registration answered 409 for a real passkey's id but 201 for a
 * decoy's, a second way to tell them apart. So a decoy id is bytes derived from the name followed by an
 * 8-byte tag of those bytes, both under the server key, and registration refuses ids that carry the tag
 * as it refuses an id already registered. A real id of one of these lengths carries it by chance once in 2^64.
 */
import type { Deps } from '../../deps.ts';
import type { PasskeyRow } from '../../db/repositories/passkeys/credentials.ts';

/** A weighted choice: [value, weight], weights summing to 100. */
type Weighted = ReadonlyArray<readonly [number, number]>;

/**
 * How many passkeys a decoy list shows. Most people register one, some a second device or a security
 * key as a spare. Users may hold up to 20 (registration.ts); a long list is rare and stands out anyway.
 */
const DECOY_COUNTS: Weighted = [[1, 75], [2, 18], [3, 7]];

/**
 * Credential id lengths in bytes, as common discoverable-credential authenticators make them: 16
 * (Google Password Manager, password-manager passkeys), 20 (iCloud Keychain), 32 (Windows Hello), 64
 * (security keys). An authenticator with another length is told apart by it; no decoy can hide every length.
 */
export const DECOY_ID_LENGTHS: Weighted = [[16, 40], [20, 25], [32, 25], [64, 10]];

const TAG_BYTES = 8;

/**
 * The decoy credentials of the name `login` (as typed; case and surrounding spaces do not count):
 * stable, ids only (1 to 3 entries of the lengths above). Drawn from the name, for an unknown name and
 * a user without passkeys alike: drawn from the account, the username and the e-mail of every user
 * without passkeys answered alike, which an unknown name's two spellings never do, so anyone could test
 * which address belongs to a (public) username.
 */
export function decoyCredentials(deps: Pick<Deps, 'tokenHasher'>, login: string): Pick<PasskeyRow, 'credential_id'>[] {
  const seed = login.trim().toLowerCase();
  const shape = keyed(deps, 'passkey_decoy_shape', seed);
  const count = pick(DECOY_COUNTS, shape.readUInt32BE(0));
  return Array.from({ length: count }, (_, i) => {
    const head = expand(deps, `${seed}\0${i}`, pick(DECOY_ID_LENGTHS, shape.readUInt32BE(4 + 4 * i)) - TAG_BYTES);
    return { credential_id: Buffer.concat([head, tag(deps, head)]).toString('base64url') };
  });
}

/** True when `credentialId` (base64url) is a decoy this server hands out. */
export function isDecoyCredentialId(deps: Pick<Deps, 'tokenHasher'>, credentialId: string): boolean {
  const raw = Buffer.from(credentialId, 'base64url');
  if (!DECOY_ID_LENGTHS.some(([bytes]) => bytes === raw.length)) return false;
  const head = raw.subarray(0, raw.length - TAG_BYTES);
  return tag(deps, head).equals(raw.subarray(raw.length - TAG_BYTES));
}

function keyed(deps: Pick<Deps, 'tokenHasher'>, purpose: string, value: string): Buffer {
  return Buffer.from(deps.tokenHasher.hash(purpose, value), 'hex');
}

/** `bytes` bytes derived from `value`, in 32-byte blocks (counter mode, as HKDF-Expand does). */
function expand(deps: Pick<Deps, 'tokenHasher'>, value: string, bytes: number): Buffer {
  const blocks: Buffer[] = [];
  for (let i = 0; blocks.length * 32 < bytes; i++) blocks.push(keyed(deps, 'passkey_decoy', `${value}\0${i}`));
  return Buffer.concat(blocks).subarray(0, bytes);
}

function tag(deps: Pick<Deps, 'tokenHasher'>, head: Buffer): Buffer {
  return keyed(deps, 'passkey_decoy_tag', head.toString('hex')).subarray(0, TAG_BYTES);
}

/** The value `roll` (a uniform 32-bit number) lands on; the modulo bias is below 2^-25. */
function pick(choices: Weighted, roll: number): number {
  let at = roll % 100;
  for (const [value, weight] of choices) {
    if (at < weight) return value;
    at -= weight;
  }
  return choices[0]![0];
}
