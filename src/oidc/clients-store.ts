/** Clients registered through the admin API, as the engine reads them (secret unsealed on lookup). */
import type { AdapterPayload } from 'oidc-provider';
import type { Deps } from '../deps.ts';
import { findClient } from '../db/repositories/oidc/clients.ts';
import { toProviderMetadata, type ClientInput } from './client-metadata.ts';

/** The engine metadata of registered client `clientId`, or undefined. */
export async function findRegisteredClient(deps: Deps, clientId: string): Promise<AdapterPayload | undefined> {
  const row = await findClient(deps.db, clientId);
  if (!row) return undefined;
  const input = row.metadata as unknown as ClientInput;
  const secret = row.secret_sealed ? deps.secretBox.open(row.secret_sealed) : undefined;
  return toProviderMetadata({ ...input, ...(secret ? { client_secret: secret } : {}) }) as AdapterPayload;
}
