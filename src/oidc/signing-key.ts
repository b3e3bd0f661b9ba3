/**
 * The provider signs with the JSON API's key ring (database keys with rotation): one
 * ExternalSigningKey whose kid and key follow the ring's current signing key. The engine reads `kid`
 * synchronously, so the snapshot is refreshed before every request the engine handles (refresh());
 * `sign` takes the key named by the header it is signing, so a rotation between the two cannot mix them.
 */
import { sign as signCb, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { compactVerify, decodeJwt, type JWTPayload } from 'jose';
import { ExternalSigningKey } from 'oidc-provider';
import type { Clock } from '../clock.ts';
import { verifyingKey, type KeyRing, type KeySnapshot } from '../crypto/jwt.ts';

const signAsync = promisify(signCb) as (alg: string, data: Buffer, key: KeyObject) => Promise<Buffer>;

/** RS256 signing key of the provider, backed by a KeyRing. */
export class RingSigningKey extends ExternalSigningKey {
  #snapshot: KeySnapshot;
  /** Private keys by kid of the snapshots seen lately (a header's kid may be one rotation old). */
  readonly #recent = new Map<string, KeyObject>();

  private constructor(private readonly ring: KeyRing, private readonly clock: Clock, snapshot: KeySnapshot) {
    super();
    this.#snapshot = snapshot;
    this.#recent.set(snapshot.signing.kid, snapshot.signing.privateKey);
    (this as unknown as { alg: string }).alg = 'RS256';
  }

  static async create(ring: KeyRing, clock: Clock): Promise<RingSigningKey> {
    return new RingSigningKey(ring, clock, await ring.keysAt(clock()));
  }

  override get kid(): string {
    return this.#snapshot.signing.kid;
  }

  override set kid(_value: string) {
    // The kid is the ring's; the engine's default (a thumbprint) is ignored.
  }

  /** Re-reads the ring's current key (cheap: the ring caches). */
  async refresh(): Promise<void> {
    this.#snapshot = await this.ring.keysAt(this.clock());
    const { kid, privateKey } = this.#snapshot.signing;
    if (!this.#recent.has(kid)) {
      if (this.#recent.size >= 4) this.#recent.delete(this.#recent.keys().next().value!);
      this.#recent.set(kid, privateKey);
    }
  }

  override keyObject(): KeyObject {
    return this.#snapshot.signing.publicKey;
  }

  override async sign(data: Uint8Array): Promise<Uint8Array> {
    const text = Buffer.from(data).toString('latin1');
    const header = JSON.parse(Buffer.from(text.slice(0, text.indexOf('.')), 'base64url').toString('utf8')) as { kid?: string };
    const key = (header.kid && this.#recent.get(header.kid)) || this.#snapshot.signing.privateKey;
    return signAsync('sha256', Buffer.from(data), key);
  }
}

/** What an id_token_hint check reads of the client it names. */
interface HintClient {
  clientId: string;
  idTokenSignedResponseAlg: string;
}

/**
 * The engine's IdToken.validate, against every key the ring publishes (next, current, previous): the
 * engine's keystore holds only RingSigningKey, whose kid is always the current one, so a hint signed
 * before a rotation would be refused and RP-initiated logout would fail for every earlier session.
 * Same checks as the engine's: the client's algorithm, issuer, audience, a sub; expiry is ignored
 * (OpenID Connect Core 3.1.2.1: an expired ID token is still a hint).
 */
export function ringIdTokenValidator(ring: KeyRing, clock: Clock, issuer: string) {
  return async (jwt: string, client: HintClient): Promise<{ header: Record<string, unknown>; payload: JWTPayload }> => {
    const { protectedHeader } = await compactVerify(jwt, async (header) => {
      if (typeof header.kid !== 'string') throw new Error('id_token_hint has no kid');
      const key = await verifyingKey(ring, header.kid, clock());
      if (!key) throw new Error('id_token_hint is signed by no published key');
      return key;
    }, { algorithms: [client.idTokenSignedResponseAlg] });
    const payload = decodeJwt(jwt);
    if (payload.iss !== issuer) throw new Error('jwt issuer invalid');
    const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    if (!audiences.includes(client.clientId)) throw new Error(`jwt audience missing ${client.clientId}`);
    if (typeof payload.sub !== 'string') throw new Error('invalid sub value');
    return { header: protectedHeader as Record<string, unknown>, payload };
  };
}
