/**
 * The public key a registration stores must be one that can verify a signature. The library checks
 * the key's `alg` against the algorithms allowed, and with attestation "none" nothing else proves the
 * key: coordinates given as text, no curve, a point off P-256, an RSA modulus of 1 all registered (201,
 * the first factor's backup codes, the other sessions ended), and the account then asked at every
 * login for a passkey that could never sign. Written here because @simplewebauthn has no check of its
 * own for it: the key is imported as its verification imports it (a JWK), through node:crypto, which
 * refuses a point off the curve; RSA keys must have at least 2,048 bits (as for the service's own).
 */
import { createPublicKey, type JsonWebKey } from 'node:crypto';

const MIN_RSA_BITS = 2048;

/** Why the COSE key cannot verify signatures of the algorithms allowed (ES256, RS256), or undefined when it can. */
export async function unusablePublicKey(cosePublicKey: Uint8Array): Promise<string | undefined> {
  const { decodeCredentialPublicKey } = await import('@simplewebauthn/server/helpers');
  let key: Map<number, unknown>;
  try {
    key = decodeCredentialPublicKey(cosePublicKey as Uint8Array<ArrayBuffer>) as unknown as Map<number, unknown>;
  } catch {
    return 'The public key is not a COSE key.';
  }
  const bytes = (label: number): string | undefined => {
    const v = key.get(label);
    return v instanceof Uint8Array && v.length > 0 ? Buffer.from(v).toString('base64url') : undefined;
  };
  const [kty, alg] = [key.get(1), key.get(3)];
  let jwk: JsonWebKey | undefined;
  // EC2 on P-256 (crv 1) for ES256; RSA for RS256. COSE labels: -1 crv / n, -2 x / e, -3 y.
  if (kty === 2 && alg === -7 && key.get(-1) === 1) jwk = { kty: 'EC', crv: 'P-256', x: bytes(-2), y: bytes(-3) };
  else if (kty === 3 && alg === -257) jwk = { kty: 'RSA', n: bytes(-1), e: bytes(-2) };
  if (!jwk || Object.values(jwk).some((v) => v === undefined)) return 'The public key is not an ES256 (P-256) or RS256 key.';
  try {
    const imported = createPublicKey({ key: jwk, format: 'jwk' });
    const details = imported.asymmetricKeyDetails;
    if (jwk.kty === 'RSA' && ((details?.modulusLength ?? 0) < MIN_RSA_BITS || (details?.publicExponent ?? 0n) < 3n)) {
      return `The RSA public key is weaker than ${MIN_RSA_BITS} bits.`;
    }
  } catch {
    return 'The public key is not a valid key (a point off the curve, or a malformed number).';
  }
  return undefined;
}
