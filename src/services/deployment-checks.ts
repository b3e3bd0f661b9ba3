/**
 * Settings every instance of a deployment must share, checked at start against the database. Today
 * one: TOKEN_HASH_KEY. An instance with another key used to start and serve silently: it refused the
 * backup codes and verification links the others made, and its brute-force counters (Redis keys are
 * digests under the key) were its own, so each such instance added a full lockout budget. A wrong
 * TOTP_ENCRYPTION_KEY stops the start by itself (the signing keys do not open); this makes a wrong
 * TOKEN_HASH_KEY do the same.
 *
 * The first server to open the database records its key's check value; every later server and every
 * CLI command compares (a command records nothing: see OpenDepsOptions in open-deps.ts). On an existing deployment upgraded to this check, the first instance to start afterwards
 * records its key, right or wrong: there is nothing older to compare with, and the instances started
 * after it are then held to that key (a wrong first one is noticed at the next start of a right one,
 * and `twofold token-hash-key adopt` settles which key is meant).
 */
import type { Config } from '../config.ts';
import { ConfigError } from '../config.ts';
import type { Clock } from '../clock.ts';
import type { TokenHasher } from '../crypto/token-hash.ts';
import type { Database } from '../db/database.ts';
import { lockCheck, readCheck, recordCheckOnce, replaceCheck } from '../db/repositories/deployment-checks.ts';
import { recordSecurityEvent, type AuditContext } from './audit/record.ts';

/** The deployment_checks row of TOKEN_HASH_KEY. */
export const TOKEN_HASH_KEY_CHECK = 'token_hash_key';

/** The command that accepts a replaced key (README › Command line). */
export const ADOPT_COMMAND = 'twofold token-hash-key adopt';

/**
 * The key's check value: an HMAC under the key of a fixed label, so equal keys give equal values and
 * the stored value tells nothing about the key (and, under a purpose of its own, matches no digest of
 * a code or token).
 */
export function tokenHashKeyCheckValue(hasher: TokenHasher): string {
  return hasher.hash('deployment_check', 'TOKEN_HASH_KEY');
}

/** What the operator set, for the message: the setting, or the development key file in its stead. */
function whichKey(config: Pick<Config, 'tokenHashKey' | 'dataDir'>): string {
  return config.tokenHashKey === undefined ? `TOKEN_HASH_KEY (unset: the key generated in ${config.dataDir}/token-hash.key)` : 'TOKEN_HASH_KEY';
}

export interface TokenHashKeyCheckDeps {
  config: Pick<Config, 'tokenHashKey' | 'dataDir'>;
  db: Database;
  tokenHasher: TokenHasher;
  clock: Clock;
}

/**
 * With `record`, records this key's check value if none is recorded yet; then refuses (ConfigError,
 * one line) when the recorded one is another key's (without `record` and with nothing recorded, there
 * is nothing to refuse). Servers starting together on a database without a value: with equal keys all
 * go on, with different keys exactly one key is recorded and the others are refused.
 */
export async function checkTokenHashKey(deps: TokenHashKeyCheckDeps, record: boolean): Promise<void> {
  const mine = tokenHashKeyCheckValue(deps.tokenHasher);
  const recorded = record ? await recordCheckOnce(deps.db, TOKEN_HASH_KEY_CHECK, mine, deps.clock()) : await readCheck(deps.db, TOKEN_HASH_KEY_CHECK);
  if (recorded === undefined || recorded === mine) return;
  throw new ConfigError(
    `${whichKey(deps.config)} differs from the key this database was set up with (other instances, or an earlier start, use another one). ` +
    'Give this instance the same TOKEN_HASH_KEY as the others. If the key was replaced on purpose (every backup code and pending ' +
    'verification link stops working, and every OpenID Connect session and token ends), accept the new one by running ' +
    `\`${ADOPT_COMMAND}\` with it, then restart every instance with it.`,
  );
}

/**
 * Records this key's check value in place of the one there (`twofold token-hash-key adopt`), audited
 * as admin.action in the same transaction. Instances running with the previous key go on until they
 * restart, and are then refused. Returns false, recording nothing, when the key is already the one.
 */
export async function adoptTokenHashKey(deps: Omit<TokenHashKeyCheckDeps, 'config'>, ctx: AuditContext): Promise<boolean> {
  const mine = tokenHashKeyCheckValue(deps.tokenHasher);
  return deps.db.transaction(async (tx) => {
    const previous = await lockCheck(tx, TOKEN_HASH_KEY_CHECK);
    if (previous === mine) return false;
    const now = deps.clock();
    await replaceCheck(tx, TOKEN_HASH_KEY_CHECK, mine, now);
    await recordSecurityEvent(tx, { ...ctx, type: 'admin.action', userId: null, data: { action: 'token_hash_key.adopt', replaced: previous !== undefined }, at: now });
    return true;
  });
}
