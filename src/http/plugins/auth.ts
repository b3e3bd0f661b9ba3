/** Request authentication (Bearer or cookie) and the CSRF defence for cookie-authenticated requests. */
import type {} from '@fastify/cookie';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../../config.ts';
import type { Deps } from '../../deps.ts';
import { AppError } from '../../errors.ts';
import { authenticateAccessToken, verifyAccessToken, type AuthContext } from '../../services/authenticate.ts';
import { ACCESS_COOKIE } from '../cookies.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the requireAuth pre-handler. */
    auth: AuthContext | null;
  }
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The Bearer token of the Authorization header, if any. */
export function bearerToken(request: FastifyRequest): string | undefined {
  const h = request.headers.authorization;
  if (!h) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m ? m[1] : undefined;
}

/**
 * Refuses an unsafe request that rides on cookies unless a browser says it is not cross-site: the
 * browser attaches cookies to cross-site requests too (a form post from another site), so cookies
 * alone prove nothing. Fetch metadata first; then Origin must be ours or trusted; without Origin
 * we need Sec-Fetch-Site: same-origin. Bearer requests never reach this: a foreign site cannot set headers.
 */
export function assertNotCrossSite(request: FastifyRequest, config: Config): void {
  if (SAFE_METHODS.has(request.method)) return;
  const site = request.headers['sec-fetch-site'];
  if (site === 'cross-site') throw new AppError('csrf_rejected', { detail: 'Cross-site requests with cookies are refused.' });
  const origin = request.headers.origin;
  if (origin !== undefined) {
    if (origin === config.publicOrigin || config.trustedOrigins.includes(origin)) return;
    throw new AppError('csrf_rejected', { detail: 'The request origin is not trusted.' });
  }
  if (site === 'same-origin') return;
  throw new AppError('csrf_rejected', { detail: 'A cookie-authenticated request must carry its Origin.' });
}

/**
 * Pre-handler: authenticates the caller by Bearer token or access-token cookie (with CSRF check).
 * With `sessionCheckedByHandler`, only the token is verified here and the handler's own query must
 * include the live-session condition and pass its row to assertLiveSession (user-info does: one
 * round trip instead of two on the hottest read).
 */
export function requireAuth(deps: Deps, options: { sessionCheckedByHandler?: boolean } = {}) {
  return async function requireAuthHandler(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    let token = bearerToken(request);
    if (!token) {
      token = request.cookies[ACCESS_COOKIE];
      if (!token) throw new AppError('authentication_required', { detail: 'Send an access token as Bearer or cookie.', headers: { 'WWW-Authenticate': 'Bearer' } });
      assertNotCrossSite(request, deps.config);
    }
    request.auth = options.sessionCheckedByHandler ? await verifyAccessToken(deps, token) : await authenticateAccessToken(deps, token);
  };
}

/** The authenticated caller (only after requireAuth). */
export function authOf(request: FastifyRequest): AuthContext {
  if (!request.auth) throw new AppError('authentication_required');
  return request.auth;
}

/** Client facts recorded on a session. */
export function clientInfo(request: FastifyRequest) {
  const ua = request.headers['user-agent'];
  return { userAgent: typeof ua === 'string' ? ua : null, ip: request.ip ?? null };
}
