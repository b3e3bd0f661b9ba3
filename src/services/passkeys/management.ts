/** Listing, renaming and removing the caller's passkeys. Removal needs aal2 and mails the user. */
import type { Deps } from '../../deps.ts';
import { AppError } from '../../errors.ts';
import { deletePasskey, listPasskeys, renamePasskey, countPasskeys } from '../../db/repositories/passkeys/credentials.ts';
import { enqueueMail } from '../../mail/outbox.ts';
import { requireAal2, type AuthContext } from '../authenticate.ts';
import { recordSecurityEvent, userContext } from '../audit/record.ts';
import type { ClientInfo } from '../tokens.ts';
import { callerUser, dropBackupCodesIfNoFactorLeft, lockFactorChangesOfSession, requireRecentLogin } from '../factor-changes.ts';
import { passkeyView, type PasskeyView } from './view.ts';
import { isUuid } from '../../crypto/random.ts';

function notFound(): AppError {
  return new AppError('passkey_not_found', { detail: 'No passkey of yours has this id.' });
}

/** GET /passkeys: the caller's passkeys, oldest first. */
export async function listOwnPasskeys(deps: Deps, auth: AuthContext): Promise<PasskeyView[]> {
  return (await listPasskeys(deps.db, auth.userId)).map(passkeyView);
}

/** PATCH /passkeys/{id}: renames one of the caller's passkeys; 404 for anyone else's. */
export async function renameOwnPasskey(deps: Deps, auth: AuthContext, id: string, name: string): Promise<PasskeyView> {
  if (!isUuid(id)) throw notFound();
  const row = await renamePasskey(deps.db, auth.userId, id, name.trim());
  if (!row) throw notFound();
  return passkeyView(row);
}

/**
 * DELETE /passkeys/{id}: removes one of the caller's passkeys (aal2: a password-only session must not
 * strip a factor). When no factor is left the backup codes go too, as when TOTP is turned off.
 */
export async function removeOwnPasskey(deps: Deps, auth: AuthContext, id: string, client: ClientInfo): Promise<void> {
  if (!isUuid(id)) throw notFound();
  const user = await callerUser(deps, auth);
  requireAal2(auth);
  await deps.db.transaction(async (tx) => {
    // Before the delete: a removal running at once waits, then counts what this one left.
    const { loginAt } = await lockFactorChangesOfSession(deps, tx, auth);
    const removed = await deletePasskey(tx, user.id, id);
    if (!removed) throw notFound();
    requireRecentLogin(deps, loginAt, 'Removing a passkey', 'then remove it');
    const lastFactor = await dropBackupCodesIfNoFactorLeft(tx, user.id);
    await enqueueMail(tx, deps, { kind: 'factor_removed', to: user.email, data: { username: user.username, factor: 'passkey', passkeyName: removed.name } });
    await recordSecurityEvent(tx, { ...userContext(user.id, client), type: 'passkey.removed', userId: user.id, data: { passkey_id: removed.id, name: removed.name, last_factor: lastFactor }, at: deps.clock() });
    // The last passkey turns the method off (see registration.ts).
    if ((await countPasskeys(tx, user.id)) === 0) {
      await recordSecurityEvent(tx, { ...userContext(user.id, client), type: 'mfa.disabled', userId: user.id, data: { method: 'passkey' }, at: deps.clock() });
    }
  });
}
