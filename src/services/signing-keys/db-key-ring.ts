/**
 * The KeyRing of the running service: the keys in the database, re-read every `refreshSeconds`
 * (by the deciding clock) and whenever a token names a kid it has not seen (at most once a second),
 * so instances agree on the current key without a restart: a rotated-in key is in every instance's
 * JWKS long before its activation, and its activation time is a row's timestamp, the same for all.
 */
import type { KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import type { Config } from '../../config.ts';
import { signingKeyFromPem, type KeyRing, type KeySnapshot, type SigningKey } from '../../crypto/jwt.ts';
import type { SecretBox } from '../../crypto/secret-box.ts';
import type { Queryable } from '../../db/database.ts';
import { listSigningKeys, type SigningKeyRow } from '../../db/repositories/signing-keys.ts';
import { keyStates, type KeyStatus } from './states.ts';

/** Extra time a replaced key stays served beyond the longest token lifetime, for clock skew between instances. */
export const CLOCK_SKEW_MARGIN_SECONDS = 300;
/** Unknown-kid reloads at most this often (wall-clock): made-up kids must not become a query each. */
const UNKNOWN_KID_RELOAD_MS = 1000;

/**
 * How long the last token a key signed can live: the longest token lifetime plus the skew margin.
 * The OpenID provider's ID tokens count too (signed by the same ring): relying parties verify them
 * against the JWKS until they expire, and send them back later as id_token_hint.
 */
export function keyLifetimeSeconds(config: Pick<Config, 'accessTokenTtlSeconds' | 'refreshTokenTtlSeconds' | 'mfaChallengeTtlSeconds' | 'oidc'>): number {
  return Math.max(config.accessTokenTtlSeconds, config.refreshTokenTtlSeconds, config.mfaChallengeTtlSeconds, config.oidc.idTokenTtlSeconds) + CLOCK_SKEW_MARGIN_SECONDS;
}

/** How often an instance re-reads the keys: well within the activation delay, at most every 30 s. */
export function keyRefreshSeconds(config: Config): number {
  return Math.max(1, Math.min(30, Math.floor(config.jwtKeyActivationDelaySeconds / 4)));
}

/** Opens a row's sealed private key and checks that it is the key the row's kid names. */
export async function openSigningKey(row: Pick<SigningKeyRow, 'kid' | 'private_key_sealed'>, secretBox: SecretBox): Promise<SigningKey> {
  let pem: string;
  try {
    pem = secretBox.open(row.private_key_sealed);
  } catch (e) {
    throw new Error(`signing key ${row.kid} cannot be opened with TOTP_ENCRYPTION_KEY (${(e as Error).message})`, { cause: e });
  }
  const key = await signingKeyFromPem(pem);
  // The kid is the key's own thumbprint: a row whose sealed key was swapped for another's is refused.
  if (key.kid !== row.kid) throw new Error(`signing key ${row.kid} holds a different key (${key.kid})`);
  return key;
}

export interface DbKeyRingOptions {
  db: Queryable;
  secretBox: SecretBox;
  lifetimeSeconds: number;
  refreshSeconds: number;
  /** Where a failed re-read is reported (the ring then keeps serving the keys it has). */
  logger?: { error(obj: unknown, msg: string): void };
}

/** Keys read from the signing_keys table; see the file comment. */
export class DbKeyRing implements KeyRing {
  readonly #opts: DbKeyRingOptions;
  #rows: SigningKeyRow[] = [];
  #opened = new Map<string, SigningKey>();
  #loadedAt: number | undefined;
  #loading: Promise<void> | undefined;
  #lastUnknownReload = -Infinity;
  #memo: { signature: string; snapshot: KeySnapshot } | undefined;

  constructor(opts: DbKeyRingOptions) {
    this.#opts = opts;
  }

  /**
   * Reads the table again (refresh on a schedule, after a rotation, on an unknown kid). The first read
   * throws on failure (start-up stops); a later failure (database blip, a key this instance cannot
   * open) is logged and the keys already read keep serving until the next try.
   */
  reload(now: Date): Promise<void> {
    this.#loading ??= (async () => {
      try {
        const rows = await listSigningKeys(this.#opts.db);
        if (rows.length === 0) throw new Error('no signing key in the database (ensureSigningKey runs at start-up)');
        const opened = new Map<string, SigningKey>();
        for (const row of rows) opened.set(row.kid, this.#opened.get(row.kid) ?? (await openSigningKey(row, this.#opts.secretBox)));
        this.#opened = opened;
        this.#rows = rows;
        this.#loadedAt = now.getTime();
      } catch (e) {
        if (this.#loadedAt === undefined) throw e;
        this.#opts.logger?.error({ err: e }, 'reading the signing keys failed; serving the keys read before');
        this.#loadedAt = now.getTime();
      } finally {
        this.#loading = undefined;
      }
    })();
    return this.#loading;
  }

  /** Every key with its state at `now` (retired ones included), from the last read of the table. */
  async statuses(now: Date): Promise<KeyStatus<SigningKeyRow>[]> {
    await this.#fresh(now);
    return keyStates(this.#rows, now, this.#opts.lifetimeSeconds);
  }

  async keysAt(now: Date): Promise<KeySnapshot> {
    const statuses = await this.statuses(now);
    const served = statuses.filter((s) => s.state !== 'retired');
    const current = served.find((s) => s.state === 'current')!;
    const signature = `${current.key.kid}|${served.map((s) => s.key.kid).join(',')}`;
    if (this.#memo?.signature === signature) return this.#memo.snapshot;
    const verifying = new Map<string, KeyObject>();
    const jwks: JWK[] = [];
    // current first: a client that takes "the first key" still gets the one that signs.
    for (const s of [current, ...served.filter((x) => x !== current)]) {
      const key = this.#opened.get(s.key.kid)!;
      verifying.set(key.kid, key.publicKey);
      jwks.push(key.jwk);
    }
    const snapshot: KeySnapshot = { signing: this.#opened.get(current.key.kid)!, verifying, jwks: { keys: jwks } };
    this.#memo = { signature, snapshot };
    return snapshot;
  }

  async find(kid: string, now: Date): Promise<KeyObject | undefined> {
    if (this.#loading) {
      // A read already under way (a burst of tokens of a brand-new key): its result is as good.
      await this.#loading;
    } else {
      const wall = performance.now();
      if (wall - this.#lastUnknownReload < UNKNOWN_KID_RELOAD_MS) return undefined;
      this.#lastUnknownReload = wall;
      await this.reload(now);
    }
    return (await this.keysAt(now)).verifying.get(kid);
  }

  async #fresh(now: Date): Promise<void> {
    // Either direction: a test clock may move backwards, and a stale read must not outlive the interval.
    if (this.#loadedAt === undefined || Math.abs(now.getTime() - this.#loadedAt) >= this.#opts.refreshSeconds * 1000) {
      await this.reload(now);
    } else if (this.#loading) {
      await this.#loading;
    }
  }
}
