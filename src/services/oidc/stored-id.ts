/** The key under which the provider's models are stored (oidc/adapter.ts), for services that reach a model directly. */
import type { Deps } from '../../deps.ts';

/**
 * HMAC digest of a model id: a code, token, session or interaction id IS the bearer value, so the
 * table holds only this (a leaked table yields no live credential).
 */
export function storedModelId(deps: Pick<Deps, 'tokenHasher'>, id: string): string {
  return deps.tokenHasher.hash('oidc-id', id);
}
