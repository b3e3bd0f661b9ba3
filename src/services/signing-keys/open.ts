/**
 * Start-up of the signing keys: make sure the database holds one (importing JWT_PRIVATE_KEY_FILE or
 * the old development key file, else generating one), re-seal keys sealed under a retired secret-box
 * key, and open the KeyStore that reads them.
 */
import type { Logger } from 'pino';
import type { Clock } from '../../clock.ts';
import type { Config } from '../../config.ts';
import { generateRsaPem, JWT_ALG, KeyStore, signingKeyFromPem } from '../../crypto/jwt.ts';
import type { SecretBox } from '../../crypto/secret-box.ts';
import type { Database } from '../../db/database.ts';
import { insertSigningKey, listSigningKeys, lockSigningKeys, updateSealedPrivateKey } from '../../db/repositories/signing-keys.ts';
import { DbKeyRing, keyLifetimeSeconds, keyRefreshSeconds } from './db-key-ring.ts';

/** What the signing-key services need of the service's dependencies. */
export interface SigningKeyDeps {
  readonly config: Config;
  readonly db: Database;
  readonly clock: Clock;
  readonly secretBox: SecretBox;
  readonly logger: Pick<Logger, 'info' | 'warn' | 'error'>;
}

/** A PEM key offered as the first key, and where it came from (for the log and the error message). */
export interface InitialKey {
  pem: string;
  source: string;
}

/**
 * Makes sure a key exists. Under an advisory lock, so instances starting together on an empty
 * database create exactly one: the first takes the lock and inserts, the others wait, then see it.
 * Returns the kid created, if any.
 */
export async function ensureSigningKey(deps: SigningKeyDeps, initial?: InitialKey): Promise<string | undefined> {
  // Parse (and refuse) the configured key before anything else: a bad file is an operator's error.
  const offered = initial ? await signingKeyFromPem(initial.pem).catch((e: unknown) => {
    throw new Error(`${initial.source}: ${(e as Error).message}`, { cause: e });
  }) : undefined;
  return deps.db.transaction(async (tx) => {
    await lockSigningKeys(tx);
    const rows = await listSigningKeys(tx);
    for (const row of rows) {
      // The secret box's first key seals; a key sealed under an older one is re-sealed on start.
      if (deps.secretBox.needsReseal(row.private_key_sealed)) {
        let pem: string;
        try {
          pem = deps.secretBox.open(row.private_key_sealed);
        } catch (e) {
          throw new Error(`signing key ${row.kid} cannot be opened with TOTP_ENCRYPTION_KEY (${(e as Error).message})`, { cause: e });
        }
        await updateSealedPrivateKey(tx, row.kid, deps.secretBox.seal(pem));
      }
    }
    if (rows.length > 0) {
      if (offered && !rows.some((r) => r.kid === offered.kid)) {
        deps.logger.warn({ kid: offered.kid }, `${initial!.source} is not imported: the database already holds signing keys (rotate with \`twofold keys rotate\`)`);
      }
      return undefined;
    }
    const key = offered ?? (await signingKeyFromPem(await generateRsaPem()));
    const now = deps.clock();
    // The first key has no predecessor and no verifier caching an older set: it is current at once.
    await insertSigningKey(tx, {
      kid: key.kid,
      alg: JWT_ALG,
      public_jwk: key.jwk,
      private_key_sealed: deps.secretBox.seal(key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string),
      origin: offered ? 'imported' : 'generated',
      created_at: now,
      activates_at: now,
    });
    deps.logger.info({ kid: key.kid }, offered ? `signing key imported from ${initial!.source}` : 'signing key generated');
    return key.kid;
  });
}

/** The DbKeyRing for `deps` (tests and the CLI build one directly; the server goes through openKeyStore). */
export function createDbKeyRing(deps: SigningKeyDeps): DbKeyRing {
  return new DbKeyRing({
    db: deps.db,
    secretBox: deps.secretBox,
    lifetimeSeconds: keyLifetimeSeconds(deps.config),
    refreshSeconds: keyRefreshSeconds(deps.config),
    logger: deps.logger,
  });
}

/** Ensures a key, reads the keys once (so a key that cannot be opened stops start-up), returns the store. */
export async function openKeyStore(deps: SigningKeyDeps, initial?: InitialKey): Promise<KeyStore> {
  await ensureSigningKey(deps, initial);
  const ring = createDbKeyRing(deps);
  await ring.reload(deps.clock());
  return new KeyStore(ring, deps.config.publicUrl, deps.config.jwtAudience, deps.clock);
}
