/**
 * The service's deps over an open, migrated database: the file secrets, the signing keys and the
 * password hasher. The server and the CLI differ only in the limiter and the mail transport they hand in.
 */
import type { Logger } from 'pino';
import { systemClock } from './clock.ts';
import type { Config } from './config.ts';
import { PasswordHasher } from './crypto/password.ts';
import type { Database } from './db/database.ts';
import type { Deps } from './deps.ts';
import { loadSecrets } from './secrets.ts';
import { checkTokenHashKey } from './services/deployment-checks.ts';
import { resealEndpointSecrets } from './services/events/endpoints.ts';
import { announceEvents } from './services/events/publish.ts';
import { openKeyStore } from './services/signing-keys/open.ts';

export interface OpenDepsOptions {
  /**
   * What is done with TOKEN_HASH_KEY's check value (services/deployment-checks.ts): `record` (the
   * server: records its key when none is recorded, then compares), `compare` (the default, CLI
   * commands: compares with a recorded value, records nothing), `skip` (`twofold token-hash-key
   * adopt`, which records a replaced key). A command records nothing: one run from a shell without the
   * deployment's key (a development key generated into its own DATA_DIR) would otherwise have made its
   * key the deployment's, and every correctly configured server refused at its next start.
   */
  tokenHashKey?: 'record' | 'compare' | 'skip';
}

/**
 * Throws when a secret or key cannot be read or used, or TOKEN_HASH_KEY is not the deployment's
 * (a ConfigError; the caller reports it in one line).
 */
export async function openDeps(config: Config, db: Database, logger: Logger, parts: Pick<Deps, 'limiter' | 'mailTransport'>, options: OpenDepsOptions = {}): Promise<Deps> {
  const secrets = await loadSecrets(config);
  // Every process that changes data comes through here (server, CLI): its audited changes are announced as events.
  announceEvents(config);
  const keys = await openKeyStore({ config, db, clock: systemClock, secretBox: secrets.secretBox, logger }, secrets.initialKey);
  // After the signing keys opened: a process with a wrong TOTP_ENCRYPTION_KEY stops there, before it
  // could record its TOKEN_HASH_KEY as the deployment's on a database that has none yet.
  const tokenHashKey = options.tokenHashKey ?? 'compare';
  if (tokenHashKey !== 'skip') await checkTokenHashKey({ config, db, tokenHasher: secrets.tokenHasher, clock: systemClock }, tokenHashKey === 'record');
  await resealEndpointSecrets({ db, secretBox: secrets.secretBox, logger });
  return {
    config,
    db,
    clock: systemClock,
    keys,
    secretBox: secrets.secretBox,
    tokenHasher: secrets.tokenHasher,
    passwords: new PasswordHasher(config.passwordHash),
    logger,
    ...parts,
  };
}
