/**
 * Backup codes: 10 single-use codes of 60 random bits each (12 Crockford base32 characters), shown
 * once and stored only as keyed digests. Consumption lives in second-factors.ts (one DELETE … RETURNING).
 */
import type { Deps } from '../deps.ts';
import type { Queryable } from '../db/database.ts';
import { AppError } from '../errors.ts';
import { newId, randomBackupCode } from '../crypto/random.ts';
import { countBackupCodes, lockBackupCodes, replaceBackupCodes } from '../db/repositories/backup-codes.ts';
import { findUserById } from '../db/repositories/users.ts';
import { enqueueMail } from '../mail/outbox.ts';
import { requireAal2, type AuthContext } from './authenticate.ts';
import { backupCodeHash, hasActiveFactor, loadFactorState } from './second-factors.ts';
import { recordSecurityEvent, userContext } from './audit/record.ts';
import { lockFactorChangesOfSession, requireRecentLogin } from './factor-changes.ts';
import type { ClientInfo } from './tokens.ts';

/** How many codes a set holds. */
export const BACKUP_CODE_COUNT = 10;

/**
 * Replaces the user's backup codes with a fresh set of {@link BACKUP_CODE_COUNT} distinct codes in
 * `tx` (the earlier set is void once `tx` commits) and returns them in the clear: the only time
 * they exist outside the user's hands.
 */
export async function issueBackupCodes(deps: Deps, tx: Queryable, userId: string): Promise<string[]> {
  const codes = new Set<string>();
  // 60 random bits each: a repeat is practically impossible, but the unique index would fail the
  // whole change on one, so draw until there are ten different codes.
  while (codes.size < BACKUP_CODE_COUNT) codes.add(randomBackupCode());
  const list = [...codes];
  await lockBackupCodes(tx, userId);
  await replaceBackupCodes(tx, userId, list.map((code) => ({ id: newId(), hash: backupCodeHash(deps, userId, code) })), deps.clock());
  return list;
}

/**
 * Issues a set only when the user holds none (first factor, or every code used up). A set the user
 * already holds is never replaced implicitly: they may have printed it. Returns [] otherwise.
 */
export async function issueBackupCodesIfNone(deps: Deps, tx: Queryable, userId: string): Promise<string[]> {
  // Locked before counting, so two factors confirmed at once cannot both see "none" and both issue.
  await lockBackupCodes(tx, userId);
  if ((await countBackupCodes(tx, userId)) > 0) return [];
  return issueBackupCodes(deps, tx, userId);
}

function noFactor(): AppError {
  return new AppError('mfa_not_enabled', { detail: 'Turn on a second factor (TOTP, e-mailed codes or a passkey) first; backup codes come with it.' });
}

/**
 * POST /backup-codes: a new set for an aal2 session; the old codes stop working. 409 mfa_not_enabled
 * comes before the step-up check, because without a factor the caller could never step up.
 */
export async function regenerateBackupCodes(deps: Deps, auth: AuthContext, client: ClientInfo): Promise<string[]> {
  const user = await findUserById(deps.db, auth.userId);
  if (!user) throw new AppError('invalid_token');
  if (!hasActiveFactor(await loadFactorState(deps, user.id))) throw noFactor();
  // A stolen password-only session must not mint codes that then pass as a second factor.
  requireAal2(auth);
  return deps.db.transaction(async (tx) => {
    // Once more under the lock of factor changes: a removal of the last factor committed since the
    // read above dropped the codes, and a set minted now would outlive every factor (and later pass
    // as the second factor of the next one, which then issues none of its own).
    const { loginAt } = await lockFactorChangesOfSession(deps, tx, auth);
    if (!hasActiveFactor(await loadFactorState(deps, user.id, tx))) throw noFactor();
    requireRecentLogin(deps, loginAt, 'A new set of backup codes', 'then ask for it');
    const codes = await issueBackupCodes(deps, tx, user.id);
    await enqueueMail(tx, deps, { kind: 'factor_added', to: user.email, data: { username: user.username, factor: 'backup_codes' } });
    await recordSecurityEvent(tx, { ...userContext(user.id, client), type: 'backup_codes.regenerated', userId: user.id, data: { backups_issued: codes.length }, at: deps.clock() });
    return codes;
  });
}

/** How many unused backup codes the user has. */
export function remainingBackupCodes(deps: Deps, userId: string): Promise<number> {
  return countBackupCodes(deps.db, userId);
}
