/** RP-initiated logout at the provider: the Twofold session behind the provider session ends too. */
import type { Deps } from '../../deps.ts';
import { deleteLink, type SessionLinkRow } from '../../db/repositories/oidc/links.ts';
import { revokeSession } from '../../db/repositories/sessions.ts';
import { recordSessionsRevoked } from '../audit/login-events.ts';
import { userContext } from '../audit/record.ts';
import type { ClientInfo } from '../tokens.ts';

/**
 * Unlinks provider session `providerSessionUid` and revokes its Twofold session (reason `oidc_logout`),
 * audited as session.revoked in the same transaction: other services learn of it from that event.
 * Returns the link (undefined when the provider session was never linked).
 */
export async function endLinkedSession(deps: Deps, providerSessionUid: string, client: ClientInfo): Promise<SessionLinkRow | undefined> {
  return deps.db.transaction(async (tx) => {
    const link = await deleteLink(tx, providerSessionUid);
    if (!link) return undefined;
    // Undefined when the session was already revoked (e.g. logged out through the API meanwhile): nothing to record.
    const userId = await revokeSession(tx, link.session_id, 'oidc_logout', deps.clock());
    if (userId) await recordSessionsRevoked(deps, tx, userContext(userId, client), userId, [link.session_id], 'oidc_logout');
    return link;
  });
}
