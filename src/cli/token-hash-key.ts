/**
 * `twofold token-hash-key adopt`: after TOKEN_HASH_KEY was replaced on purpose, makes the new key the
 * one the database accepts (servers refuse to start with any other; see services/deployment-checks.ts).
 */
import type { Deps } from '../deps.ts';
import { adoptTokenHashKey } from '../services/deployment-checks.ts';
import { CliError } from './context.ts';
import { CLI_CONTEXT } from './users.ts';

/** Records this process's key as the deployment's, audited as admin.action (token_hash_key.adopt). */
export async function adoptTokenHashKeyCommand(deps: Deps, out: (line: string) => void): Promise<void> {
  // Unset, the key is one generated into this shell's DATA_DIR: adopting it would refuse every
  // correctly configured server at its next start.
  if (deps.config.tokenHashKey === undefined) throw new CliError('set TOKEN_HASH_KEY to the key to adopt (unset, it would be a key generated into DATA_DIR)', 2);
  if (!(await adoptTokenHashKey(deps, CLI_CONTEXT))) {
    out('TOKEN_HASH_KEY is already the key this database accepts; nothing changed');
    return;
  }
  out('TOKEN_HASH_KEY adopted: instances start with this key only (restart every instance with it; one still running with the previous key is refused at its next start)');
  out('backup codes, e-mailed codes and verification links made under the previous key no longer work, and OpenID Connect sessions and tokens have ended');
}
