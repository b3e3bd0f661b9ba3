/**
 * The provider signs with the JSON API's key ring (database keys with rotation): one
 * ExternalSigningKey whose kid and key follow the ring's current signing key. The engine reads `kid`
 * synchronously, so the snapshot is refreshed before every request the engine handles (refresh());
 * `sign` takes the key named by the header it is signing, so a rotation between the two cannot mix them.
 */
import { sign as signCb, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { ExternalSigningKey } from 'oidc-provider';
import type { Clock } from '../clock.ts';
import type { KeyRing, KeySnapshot } from '../crypto/jwt.ts';

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
