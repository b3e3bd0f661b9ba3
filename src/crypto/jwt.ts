/**
 * RS256 JWTs. `jose` verifies (algorithm, issuer, audience, typ and expiry all pinned) and exports the
 * JWKS; signing uses node:crypto's one-shot sign with a callback instead of jose's SignJWT because that
 * runs on the thread pool without WebCrypto's overhead (measured ~3.9k vs ~2.7k signatures/s here) and
 * a refresh signs two tokens, so it bounds refresh throughput. The JWS layout is RFC 7515 compact.
 */
import { createPrivateKey, createPublicKey, generateKeyPair, sign as signCb, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import { calculateJwkThumbprint, errors as joseErrors, exportJWK, jwtVerify, type JWK, type JWTPayload } from 'jose';

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

interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  jwk: JWK;
}

/** Loads or generates the RSA key, signs and verifies tokens, serves the JWKS. */
export class KeyStore {
  readonly #signing: SigningKey;
  readonly #verifyKeys: Map<string, KeyObject>;
  readonly #jwks: { keys: JWK[] };
  readonly issuer: string;
  readonly audience: string;
  // Verified-token cache: a client reuses one access token for up to an hour, and re-checking its
  // RSA signature each time is the costliest step of an authenticated request. Keyed by the whole
  // token string, so only the exact bytes already verified hit; expiry is re-checked on every use.
  readonly #verified = new Map<string, { kind: TokenKind; payload: JWTPayload }>();
  static readonly CACHE_LIMIT = 10_000;

  private constructor(signing: SigningKey, issuer: string, audience: string) {
    this.#signing = signing;
    this.#verifyKeys = new Map([[signing.kid, signing.publicKey]]);
    this.#jwks = { keys: [signing.jwk] };
    this.issuer = issuer;
    this.audience = audience;
  }

  /** Builds a store around a PEM private key (PKCS#8 or PKCS#1); refuses RSA keys under 2048 bits. */
  static async fromPem(pem: string, issuer: string, audience: string): Promise<KeyStore> {
    const privateKey = createPrivateKey(pem);
    if (privateKey.asymmetricKeyType !== 'rsa') throw new Error('JWT signing key must be an RSA private key');
    const bits = privateKey.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < 2048) throw new Error(`JWT signing key must be at least 2048 bits, got ${bits}`);
    const publicKey = createPublicKey(privateKey);
    const jwk = await exportJWK(publicKey);
    // kid = RFC 7638 thumbprint: stable for the key, derivable by anyone holding the public key.
    const kid = await calculateJwkThumbprint(jwk, 'sha256');
    return new KeyStore({ kid, privateKey, publicKey, jwk: { ...jwk, kid, alg: JWT_ALG, use: 'sig' } }, issuer, audience);
  }

  /** Reads the key from `file`, or (development) generates a 2048-bit key there once and reuses it. */
  static async loadOrGenerate(file: string, generate: boolean, issuer: string, audience: string): Promise<KeyStore> {
    if (!existsSync(file)) {
      if (!generate) throw new Error(`JWT private key file ${file} does not exist`);
      mkdirSync(dirname(file), { recursive: true });
      const pem = await generateRsaPem();
      // 0600: the key is the service's identity; flag 'wx' never overwrites one made concurrently.
      try {
        writeFileSync(file, pem, { mode: 0o600, flag: 'wx' });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
    return KeyStore.fromPem(readFileSync(file, 'utf8'), issuer, audience);
  }

  get kid(): string {
    return this.#signing.kid;
  }

  /** The public keys as a JWK Set. */
  jwks(): { keys: JWK[] } {
    return this.#jwks;
  }

  /** Signs `claims` as a token of `kind`; `iss` is added, `iat`/`exp`/`jti` are the caller's. */
  async sign(kind: TokenKind, claims: Record<string, unknown>): Promise<string> {
    const header = { alg: JWT_ALG, typ: TOKEN_TYP[kind], kid: this.#signing.kid };
    const payload = { iss: this.issuer, ...claims };
    const input = `${b64json(header)}.${b64json(payload)}`;
    const signature = await signAsync('sha256', Buffer.from(input), this.#signing.privateKey);
    return `${input}.${signature.toString('base64url')}`;
  }

  /**
   * Verifies a token of `kind` at time `now`: RS256 only, known kid, issuer, audience (access tokens),
   * header typ, expiry. Throws TokenError on any failure.
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
        const key = header.kid === undefined ? undefined : this.#verifyKeys.get(header.kid);
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
