/**
 * RS256 JWTs. `jose` verifies (algorithm, issuer, audience, typ and expiry all pinned) and exports the
 * JWKS; signing uses node:crypto's one-shot sign with a callback instead of jose's SignJWT because that
 * runs on the thread pool without WebCrypto's overhead (measured ~3.9k vs ~2.7k signatures/s here) and
 * a refresh signs two tokens, so it bounds refresh throughput. The JWS layout is RFC 7515 compact.
 *
 * Which key signs and which keys verify is the KeyRing's business (a fixed key here, the database's
 * rotating keys in services/signing-keys/); the KeyStore only asks it at the time of each token.
 */
import { createPrivateKey, createPublicKey, generateKeyPair, sign as signCb, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { calculateJwkThumbprint, errors as joseErrors, exportJWK, jwtVerify, type JWK, type JWTPayload } from 'jose';
import type { Clock } from '../clock.ts';

const signAsync = promisify(signCb) as (alg: string, data: Buffer, key: KeyObject) => Promise<Buffer>;
const generateKeyPairAsync = promisify(generateKeyPair);

export const JWT_ALG = 'RS256';

/** Header `typ` of each token type; a token is only ever accepted where its typ is expected. */
export const TOKEN_TYP = { access: 'at+jwt', refresh: 'refresh+jwt', mfa: 'mfa+jwt' } as const;
export type TokenKind = keyof typeof TOKEN_TYP;

/** Why a token was refused (internal; clients only ever see `invalid_token`). */
export class TokenError extends Error {
  override name = 'TokenError';
}

/** One RSA key pair with its RFC 7638 thumbprint as `kid` and its public JWK (kid, alg, use set). */
export interface SigningKey {
  readonly kid: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly jwk: JWK;
}

/** The keys in force at one moment: the one that signs, and every one that verifies (by kid). */
export interface KeySnapshot {
  readonly signing: SigningKey;
  readonly verifying: ReadonlyMap<string, KeyObject>;
  readonly jwks: { keys: JWK[] };
}

/** Where a KeyStore gets its keys. */
export interface KeyRing {
  /** The keys in force at `now`. */
  keysAt(now: Date): Promise<KeySnapshot>;
  /**
   * A verifying key the snapshot does not hold (another instance may have just made it): the ring may
   * look again in its source, at a bounded rate. Undefined for a kid that is not a served key.
   */
  find(kid: string, now: Date): Promise<KeyObject | undefined>;
}

/** The public key of `kid` that verifies at `now` (in the snapshot, else looked up again); undefined when the ring serves no such key. */
export async function verifyingKey(ring: KeyRing, kid: string, now: Date): Promise<KeyObject | undefined> {
  return (await ring.keysAt(now)).verifying.get(kid) ?? (await ring.find(kid, now));
}

/** Parses a PEM private key (PKCS#8 or PKCS#1); refuses non-RSA keys and RSA keys under 2048 bits. */
export async function signingKeyFromPem(pem: string): Promise<SigningKey> {
  const privateKey = createPrivateKey(pem);
  if (privateKey.asymmetricKeyType !== 'rsa') throw new Error('JWT signing key must be an RSA private key');
  const bits = privateKey.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < 2048) throw new Error(`JWT signing key must be at least 2048 bits, got ${bits}`);
  const publicKey = createPublicKey(privateKey);
  const jwk = await exportJWK(publicKey);
  // kid = RFC 7638 thumbprint: stable for the key, derivable by anyone holding the public key.
  const kid = await calculateJwkThumbprint(jwk, 'sha256');
  return { kid, privateKey, publicKey, jwk: { ...jwk, kid, alg: JWT_ALG, use: 'sig' } };
}

/** A ring of one fixed key (tests, and tools that sign with a key they were handed). */
export class FixedKeyRing implements KeyRing {
  readonly #snapshot: KeySnapshot;
  constructor(key: SigningKey) {
    this.#snapshot = { signing: key, verifying: new Map([[key.kid, key.publicKey]]), jwks: { keys: [key.jwk] } };
  }
  async keysAt(): Promise<KeySnapshot> {
    return this.#snapshot;
  }
  async find(): Promise<KeyObject | undefined> {
    return undefined;
  }
}

/** Signs and verifies tokens with the keys of a KeyRing, and serves its JWKS. */
export class KeyStore {
  readonly #ring: KeyRing;
  readonly #clock: Clock;
  readonly issuer: string;
  readonly audience: string;
  // Verified-token cache: a client reuses one access token for up to an hour, and re-checking its
  // RSA signature each time is the costliest step of an authenticated request. Keyed by the whole
  // token string, so only the exact bytes already verified hit; expiry is re-checked on every use.
  // A key leaves the ring only after every token it signed has expired, so no entry outlives its key.
  readonly #verified = new Map<string, { kind: TokenKind; payload: JWTPayload }>();
  static readonly CACHE_LIMIT = 10_000;

  /** `clock` decides which key is current when a token is signed. */
  constructor(ring: KeyRing, issuer: string, audience: string, clock: Clock) {
    this.#ring = ring;
    this.#clock = clock;
    this.issuer = issuer;
    this.audience = audience;
  }

  /** A store around one fixed PEM private key (PKCS#8 or PKCS#1); refuses RSA keys under 2048 bits. */
  static async fromPem(pem: string, issuer: string, audience: string, clock: Clock = () => new Date()): Promise<KeyStore> {
    return new KeyStore(new FixedKeyRing(await signingKeyFromPem(pem)), issuer, audience, clock);
  }

  /** The ring this store reads (the admin API and the OIDC provider look at its keys too). */
  get ring(): KeyRing {
    return this.#ring;
  }

  /** The kid of the key that signs now. */
  async currentKid(): Promise<string> {
    return (await this.#ring.keysAt(this.#clock())).signing.kid;
  }

  /** The public keys (next, current, previous) as a JWK Set. */
  async jwks(): Promise<{ keys: JWK[] }> {
    return (await this.#ring.keysAt(this.#clock())).jwks;
  }

  /** Signs `claims` as a token of `kind` with the current key; `iss` is added, `iat`/`exp`/`jti` are the caller's. */
  async sign(kind: TokenKind, claims: Record<string, unknown>): Promise<string> {
    const key = (await this.#ring.keysAt(this.#clock())).signing;
    const header = { alg: JWT_ALG, typ: TOKEN_TYP[kind], kid: key.kid };
    const payload = { iss: this.issuer, ...claims };
    const input = `${b64json(header)}.${b64json(payload)}`;
    const signature = await signAsync('sha256', Buffer.from(input), key.privateKey);
    return `${input}.${signature.toString('base64url')}`;
  }

  /**
   * Verifies a token of `kind` at time `now`: RS256 only, a kid the ring serves, issuer, audience
   * (access tokens), header typ, expiry. Throws TokenError on any failure.
   */
  async verify(kind: TokenKind, token: string, now: Date): Promise<JWTPayload> {
    const cached = this.#verified.get(token);
    if (cached) {
      if (cached.kind !== kind) throw new TokenError(`expected a ${kind} token`);
      if (typeof cached.payload.exp !== 'number' || cached.payload.exp <= Math.floor(now.getTime() / 1000)) {
        this.#verified.delete(token);
        throw new TokenError('token expired');
      }
      return cached.payload;
    }
    let payload: JWTPayload;
    try {
      const result = await jwtVerify(token, async (header) => {
        if (typeof header.kid !== 'string') throw new TokenError('no kid');
        const key = await verifyingKey(this.#ring, header.kid, now);
        if (!key) throw new TokenError('unknown kid');
        return key;
      }, {
        algorithms: [JWT_ALG],
        issuer: this.issuer,
        typ: TOKEN_TYP[kind],
        currentDate: now,
        requiredClaims: ['exp', 'iat', 'sub', 'jti'],
        ...(kind === 'access' ? { audience: this.audience } : {}),
        clockTolerance: 0,
      });
      payload = result.payload;
    } catch (e) {
      if (e instanceof TokenError) throw e;
      if (e instanceof joseErrors.JOSEError) throw new TokenError(e.code, { cause: e });
      throw new TokenError('malformed token', { cause: e });
    }
    // Only access tokens are presented again and again; refresh and MFA tokens are single use.
    if (kind === 'access') {
      if (this.#verified.size >= KeyStore.CACHE_LIMIT) this.#verified.clear();
      this.#verified.set(token, { kind, payload });
    }
    return payload;
  }
}

function b64json(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** A fresh 2048-bit RSA private key as PKCS#8 PEM. */
export async function generateRsaPem(): Promise<string> {
  const { privateKey } = await generateKeyPairAsync('rsa', { modulusLength: 2048 });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
}
