/** What a login does with the browser's previous session (its browser-session cookie, cookies.ts). */
import type { FastifyRequest } from 'fastify';
import { decodeJwt } from 'jose';
import type { Deps } from '../deps.ts';
import { moveProviderSessionsToLogin } from '../services/oidc/interaction-login.ts';
import type { TokenPair } from '../services/tokens.ts';
import { BROWSER_SESSION_COOKIE, browserSessionId } from './cookies.ts';
import { clientInfo } from './plugins/auth.ts';

/**
 * After a login whose tokens are being set as cookies: when the browser held another session of the
 * same user, the OpenID provider sessions linked to it move to the new one (see
 * moveProviderSessionsToLogin). Nothing to do, and no query, without a browser-session cookie.
 */
export async function followLoginInBrowser(deps: Deps, request: FastifyRequest, tokens: TokenPair): Promise<void> {
  const previous = browserSessionId(deps.tokenHasher, request.cookies[BROWSER_SESSION_COOKIE]);
  if (!previous) return;
  const { sid, sub } = decodeJwt(tokens.access_token);
  if (typeof sid !== 'string' || typeof sub !== 'string' || sid === previous) return;
  try {
    await moveProviderSessionsToLogin(deps, previous, sid, sub, clientInfo(request));
  } catch (err) {
    // The login has committed: its answer goes out. The provider sessions stay where they were, as
    // before this login; the next authorization in the browser moves them (provider.ts).
    deps.logger.error({ err }, 'moving the provider sessions to a new login failed');
  }
}
