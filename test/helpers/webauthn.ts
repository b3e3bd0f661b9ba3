/**
 * A software authenticator for route tests: a P-256 key pair per credential that produces real
 * WebAuthn objects — "none" attestation (CBOR attestation object, COSE public key, authenticator data
 * with the RP ID hash, flags and counter) and ECDSA/SHA-256 assertions over authenticatorData ‖
 * SHA-256(clientDataJSON) — written here from the WebAuthn spec, independently of the library the
 * service verifies them with. Overrides produce the attacks: another origin, another RP ID hash, no
 * user verification, a chosen counter.
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';

// ---- minimal CBOR encoder (RFC 8949): unsigned/negative ints, byte and text strings, maps ----

function head(major: number, n: number): Buffer {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n]);
  if (n < 0x10000) return Buffer.from([(major << 5) | 25, n >> 8, n & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(n, 1);
  return b;
}

type Cbor = number | string | Buffer | Map<number | string, Cbor>;

export function cbor(value: Cbor): Buffer {
  if (typeof value === 'number') return value >= 0 ? head(0, value) : head(1, -1 - value);
  if (typeof value === 'string') {
    const bytes = Buffer.from(value, 'utf8');
    return Buffer.concat([head(3, bytes.length), bytes]);
  }
  if (Buffer.isBuffer(value)) return Buffer.concat([head(2, value.length), value]);
  const parts: Buffer[] = [head(5, value.size)];
  for (const [k, v] of value) parts.push(cbor(k), cbor(v));
  return Buffer.concat(parts);
}

// ---- the authenticator ----

/** A fresh P-256 key pair, its COSE public key and a random 16-byte credential id. */
function newKey(): Pick<SoftCredential, 'id' | 'privateKey' | 'cosePublicKey'> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = publicKey.export({ format: 'jwk' });
  const cosePublicKey = cbor(
    new Map<number, Cbor>([
      [1, 2], // kty: EC2
      [3, -7], // alg: ES256
      [-1, 1], // crv: P-256
      [-2, Buffer.from(jwk.x!, 'base64url')],
      [-3, Buffer.from(jwk.y!, 'base64url')],
    ]),
  );
  return { id: randomBytes(16), privateKey, cosePublicKey };
}

const FLAG_UP = 0x01;
const FLAG_UV = 0x04;
const FLAG_BE = 0x08;
const FLAG_BS = 0x10;
const FLAG_AT = 0x40;

const b64url = (b: Buffer | Uint8Array): string => Buffer.from(b).toString('base64url');
const sha256 = (b: Buffer | string): Buffer => createHash('sha256').update(b).digest();

/** One credential held by the authenticator. */
export interface SoftCredential {
  id: Buffer;
  privateKey: KeyObject;
  cosePublicKey: Buffer;
  rpId: string;
  userHandle: string;
  counter: number;
}

/** Per-call changes that turn an honest answer into an attack. */
export interface CeremonyOverrides {
  origin?: string;
  /** The RP ID whose hash goes into authenticatorData (default: the one in the options). */
  rpIdForHash?: string;
  /** Set the UV flag (default true). */
  userVerified?: boolean;
  /** Counter to sign with (default: the credential's counter + 1). */
  counter?: number;
  /** Use this credential instead of the one the options point at. */
  credential?: SoftCredential;
  /** Replace the challenge in clientDataJSON. */
  challenge?: string;
  type?: string;
}

interface CreationOptionsLike {
  challenge: string;
  rp: { id?: string };
  user: { id: string };
}
interface RequestOptionsLike {
  challenge: string;
  rpId?: string;
  allowCredentials?: Array<{ id: string }>;
}

export class SoftwareAuthenticator {
  readonly credentials: SoftCredential[] = [];
  /** Synced passkey (BE and BS flags) rather than a device-bound one. */
  constructor(
    readonly origin = 'http://localhost:8000',
    readonly synced = false,
    readonly aaguid: Buffer = Buffer.alloc(16),
  ) {}

  private flags(userVerified: boolean, extra = 0): number {
    return FLAG_UP | (userVerified ? FLAG_UV : 0) | (this.synced ? FLAG_BE | FLAG_BS : 0) | extra;
  }

  private clientData(type: string, challenge: string, origin: string): Buffer {
    return Buffer.from(JSON.stringify({ type, challenge, origin, crossOrigin: false }), 'utf8');
  }

  /** navigator.credentials.create(): a new P-256 credential and its RegistrationResponseJSON ("none" attestation). */
  create(options: CreationOptionsLike, o: CeremonyOverrides = {}) {
    const rpId = options.rp.id ?? new URL(this.origin).hostname;
    const { privateKey, cosePublicKey, id } = o.credential ?? newKey();
    const credIdLength = Buffer.alloc(2);
    credIdLength.writeUInt16BE(id.length);
    const counter = Buffer.alloc(4);
    const authData = Buffer.concat([
      sha256(o.rpIdForHash ?? rpId),
      Buffer.from([this.flags(o.userVerified ?? true, FLAG_AT)]),
      counter,
      this.aaguid,
      credIdLength,
      id,
      cosePublicKey,
    ]);
    const attestationObject = cbor(new Map<string, Cbor>([['fmt', 'none'], ['attStmt', new Map()], ['authData', authData]]));
    const clientDataJSON = this.clientData(o.type ?? 'webauthn.create', o.challenge ?? options.challenge, o.origin ?? this.origin);
    const credential: SoftCredential = o.credential ?? { id, privateKey, cosePublicKey, rpId, userHandle: options.user.id, counter: 0 };
    if (!o.credential) this.credentials.push(credential);
    return {
      credential,
      response: {
        id: b64url(id),
        rawId: b64url(id),
        type: 'public-key' as const,
        response: { clientDataJSON: b64url(clientDataJSON), attestationObject: b64url(attestationObject), transports: ['internal'] },
        clientExtensionResults: {},
        authenticatorAttachment: 'platform',
      },
    };
  }

  /** navigator.credentials.get(): an AuthenticationResponseJSON signed by the credential the options allow (or the first). */
  get(options: RequestOptionsLike, o: CeremonyOverrides = {}) {
    const allowed = (options.allowCredentials ?? []).map((c) => c.id);
    const credential =
      o.credential ?? this.credentials.find((c) => allowed.length === 0 || allowed.includes(b64url(c.id)));
    if (!credential) throw new Error('the authenticator holds no credential these options allow');
    const rpId = options.rpId ?? credential.rpId;
    const count = o.counter ?? credential.counter + 1;
    credential.counter = Math.max(credential.counter, count);
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(count);
    const authenticatorData = Buffer.concat([sha256(o.rpIdForHash ?? rpId), Buffer.from([this.flags(o.userVerified ?? true)]), counter]);
    const clientDataJSON = this.clientData(o.type ?? 'webauthn.get', o.challenge ?? options.challenge, o.origin ?? this.origin);
    const signature = sign('sha256', Buffer.concat([authenticatorData, sha256(clientDataJSON)]), credential.privateKey);
    return {
      id: b64url(credential.id),
      rawId: b64url(credential.id),
      type: 'public-key' as const,
      response: {
        clientDataJSON: b64url(clientDataJSON),
        authenticatorData: b64url(authenticatorData),
        signature: b64url(signature),
        userHandle: credential.userHandle,
      },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform',
    };
  }
}
