/** Request authentication (Bearer or cookie) and the CSRF defence for cookie-authenticated requests. */
import type {} from '@fastify/cookie';
import type { FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
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
 * Refuses an unsafe request that rides on cookies when a browser says it is cross-site: the browser
 * attaches cookies to cross-site requests too (a form post from another site), so cookies alone prove
 * nothing. Fetch metadata first; then Origin must be ours (or a loopback alias of ours) or trusted.
 * A request with neither Origin nor Sec-Fetch-Site is not from a browser (every current browser sends
 * Origin on a cross-origin unsafe request) and is accepted (contract: "Non-browser clients and the CSRF rule").
 * Bearer requests never reach this: a foreign site cannot set headers.
 */
export function assertNotCrossSite(request: FastifyRequest, config: Config): void {
  if (SAFE_METHODS.has(request.method)) return;
  const site = request.headers['sec-fetch-site'];
  if (site === 'cross-site') throw new AppError('csrf_rejected', { detail: 'Cross-site requests with cookies are refused.' });
  const origin = request.headers.origin;
  if (origin !== undefined) {
    if (isOwnOrigin(origin, config) || config.trustedOrigins.includes(origin)) return;
    // Includes `Origin: null` (sandboxed frames, some redirects): never one of ours.
    throw new AppError('csrf_rejected', { detail: 'The request origin is not trusted.' });
  }
  if (site === undefined || site === 'same-origin' || site === 'none') return;
  // same-site: a sibling subdomain is not us.
  throw new AppError('csrf_rejected', { detail: 'A cookie-authenticated request from another site is refused.' });
}

/** PUBLIC_URL's origin, or the same service under another loopback name (localhost ↔ 127.0.0.1). */
export function isOwnOrigin(origin: string, config: Config): boolean {
  return origin === config.publicOrigin || config.loopbackAliases.includes(origin);
}

/**
 * Pre-handler: authenticates the caller by Bearer token or access-token cookie (with CSRF check).
 * With `sessionCheckedByHandler`, only the token is verified here and the handler's own query must
 * include the live-session condition and pass its row to assertLiveSession (user-info does: one
 * round trip instead of two on the hottest read).
 */
export function requireAuth(deps: Deps, options: { sessionCheckedByHandler?: boolean } = {}) {
  const hook = async function requireAuthHandler(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    let token = bearerToken(request);
    if (!token) {
      token = request.cookies[ACCESS_COOKIE];
      if (!token) throw new AppError('authentication_required', { detail: 'Send an access token as Bearer or cookie.', headers: { 'WWW-Authenticate': 'Bearer' } });
      assertNotCrossSite(request, deps.config);
    }
    request.auth = options.sessionCheckedByHandler ? await verifyAccessToken(deps, token) : await authenticateAccessToken(deps, token);
  };
  return Object.assign(hook, { [AUTH_HOOK]: true });
}

const AUTH_HOOK = Symbol('twofold.requireAuth');
type Hook = RouteOptions['onRequest'];

function isAuthHook(h: unknown): boolean {
  return typeof h === 'function' && (h as unknown as Record<symbol, unknown>)[AUTH_HOOK] === true;
}

/**
 * onRoute hook: a requireAuth given as preValidation/preHandler is moved to onRequest, so every (auth)
 * route answers 401 before it parses or validates a body (no 415/422 for strangers; contract rule).
 */
export function authBeforeBody(route: RouteOptions): void {
  const moved: unknown[] = [];
  for (const stage of ['preValidation', 'preHandler'] as const) {
    const hooks = route[stage];
    if (!hooks) continue;
    const list = (Array.isArray(hooks) ? hooks : [hooks]) as unknown[];
    if (!list.some(isAuthHook)) continue;
    moved.push(...list.filter(isAuthHook));
    const rest = list.filter((h) => !isAuthHook(h));
    (route as unknown as Record<string, unknown>)[stage] = rest.length ? rest : undefined;
  }
  if (!moved.length) return;
  const existing = route.onRequest ? (Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]) : [];
  route.onRequest = [...moved, ...existing] as unknown as Hook;
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
