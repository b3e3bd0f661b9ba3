/** Consent remembered per user and client, and "Connected applications" (list, disconnect). */
import type { Deps } from '../../deps.ts';
import { AppError } from '../../errors.ts';
import { deleteConsent, findConsent, listConsents, upsertConsent } from '../../db/repositories/oidc/consents.ts';
import { claimInteraction, deleteForAccountClient, dropClientFromAccountSessions } from '../../db/repositories/oidc/payloads.ts';
import { recordSecurityEvent, userContext } from '../audit/record.ts';
import type { ClientInfo } from '../tokens.ts';
import { storedModelId } from './stored-id.ts';

/** True when `userId` already granted `clientId` every scope in `scopes`. */
export async function consentCovers(deps: Deps, userId: string, clientId: string, scopes: readonly string[]): Promise<boolean> {
  const row = await findConsent(deps.db, userId, clientId);
  return !!row && scopes.every((s) => row.scopes.includes(s));
}

/** A consent the user gave on the consent page. */
export interface GivenConsent {
  userId: string;
  clientId: string;
  scopes: readonly string[];
  client: ClientInfo;
}

/**
 * Takes the one decision of consent interaction `interactionUid` (allowed, refused, or remembered);
 * with `given`, also remembers that consent, audited as `oidc.consent_granted`, in the same transaction.
 * False when the interaction was already decided: the form posted twice (a double click, a second tab,
 * many at once) then saves no second grant, consent or audit entry, and a refusal cannot overturn an
 * allowed consent whose entry is written (nor the reverse). The caller saves the grant only when true.
 */
export async function decideConsentInteraction(deps: Deps, interactionUid: string, given?: GivenConsent): Promise<boolean> {
  return deps.db.transaction(async (tx) => {
    // Real time, as the adapter's own consumption (the engine counts in real seconds).
    if (!(await claimInteraction(tx, storedModelId(deps, interactionUid), new Date()))) return false;
    if (given) {
      const { userId, clientId, scopes, client } = given;
      await upsertConsent(tx, userId, clientId, scopes, deps.clock());
      await recordSecurityEvent(tx, { ...userContext(userId, client), type: 'oidc.consent_granted', userId, data: { client_id: clientId, scopes: [...scopes] }, at: deps.clock() });
    }
    return true;
  });
}

/** One connected application as the account page shows it. */
export interface ConnectedApp {
  client_id: string;
  scopes: string[];
  connected_at: string;
}

export async function listConnectedApps(deps: Deps, userId: string): Promise<ConnectedApp[]> {
  return (await listConsents(deps.db, userId)).map((c) => ({ client_id: c.client_id, scopes: c.scopes, connected_at: c.created_at.toISOString() }));
}

/**
 * Disconnects an application: forgets the consent and deletes every grant, code, access and refresh
 * token it holds for the user, and its place in the user's provider sessions, in one transaction.
 * Returns the sids the application knew those sessions by: the caller sends it a back-channel logout
 * for each (after the commit), so its own sign-in ends too. 404 when it was not connected, and then
 * nothing is deleted (an application that skips consent is never listed, and a 404 must not have
 * ended its tokens).
 */
export async function disconnectApp(deps: Deps, userId: string, clientId: string, client: ClientInfo): Promise<string[]> {
  return deps.db.transaction(async (tx) => {
    if (!(await deleteConsent(tx, userId, clientId))) throw new AppError('not_found', { detail: 'No connected application with this id.' });
    await deleteForAccountClient(tx, userId, clientId);
    const sids = await dropClientFromAccountSessions(tx, userId, clientId);
    await recordSecurityEvent(tx, { ...userContext(userId, client), type: 'oidc.app_disconnected', userId, data: { client_id: clientId }, at: deps.clock() });
    return sids;
  });
}
