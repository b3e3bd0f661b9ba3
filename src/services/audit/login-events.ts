/** Audit entries of login attempts: the failures (and the lock a failure armed), and the success. */
import type { Deps } from '../../deps.ts';
import type { Queryable } from '../../db/database.ts';
import { sessionsEnded } from '../sessions-ended.ts';
import { recordSecurityEvent, userContext, type AuditContext } from './record.ts';

/** Client facts of a request (as on a session). */
interface Client {
  ip: string | null;
  userAgent: string | null;
}

/**
 * Records a failed credential check (login.failed) and, when that failure locked the account,
 * login.locked. A failure changes no row, so the entries are lone inserts. For a login name that
 * matches no user nothing names the account: the typed name may be a password typed into the wrong
 * field, and it belongs to nobody's trail.
 */
export async function recordLoginFailure(
  deps: Deps,
  userId: string | null,
  client: Client,
  data: { reason: 'unknown_user' | 'invalid_password' | 'invalid_code' | 'invalid_passkey'; method?: string; step?: 'password' | 'mfa' | 'passkey' },
  locked: boolean,
): Promise<void> {
  const ctx = userId ? userContext(userId, client) : { actor: { kind: 'user' as const }, ip: client.ip, userAgent: client.userAgent };
  const at = deps.clock();
  await recordSecurityEvent(deps.db, { ...ctx, type: 'login.failed', userId, data, at });
  if (locked && userId) await recordSecurityEvent(deps.db, { ...ctx, type: 'login.locked', userId, data: { step: data.step ?? 'password' }, at });
}

/** Records login.succeeded in `tx` (the transaction that creates the session). */
export async function recordLoginSuccess(deps: Deps, tx: Queryable, userId: string, client: Client, session: { id: string; amr: readonly string[]; aal: string }): Promise<void> {
  await recordSecurityEvent(tx, { ...userContext(userId, client), type: 'login.succeeded', userId, data: { sid: session.id, amr: [...session.amr], aal: session.aal }, at: deps.clock() });
}

/**
 * Records one session.revoked per session id (with `data.sid`, what other services need to drop it)
 * and, once `tx` commits, tells this process's listeners that sessions ended (the OpenID provider's
 * back-channel logouts go out then). Every revocation comes through here, so none is left to a timer.
 */
export async function recordSessionsRevoked(deps: Deps, tx: Queryable, ctx: AuditContext, userId: string, sessionIds: readonly string[], reason: string): Promise<void> {
  const at = deps.clock();
  // One after the other: a transaction is one connection.
  for (const sid of sessionIds) await recordSecurityEvent(tx, { ...ctx, type: 'session.revoked', userId, data: { sid, reason }, at });
  if (sessionIds.length > 0) sessionsEnded(deps.db, tx);
}
