/**
 * The token cookies of the contract: HttpOnly, SameSite Lax (access) / Strict (refresh), Secure on
 * https; and the browser-session cookie the OpenID provider's single sign-on follows.
 */
import type {} from '@fastify/cookie';
import type { FastifyReply } from 'fastify';
import { decodeJwt } from 'jose';
import type { Config } from '../config.ts';
import { safeEqual, type TokenHasher } from '../crypto/token-hash.ts';
import type { TokenPair } from '../services/tokens.ts';

export const ACCESS_COOKIE = 'access_token';
export const REFRESH_COOKIE = 'refresh_token';
/** The refresh cookie is only sent to the token endpoints, never with ordinary API calls. */
export const REFRESH_COOKIE_PATH = '/api/v1/auth-jwt';

/**
 * Which Twofold session this browser holds (`<sid>.<MAC>`), for as long as its refresh cookie lives.
 * The OpenID provider compares it with the session its own session is linked to: the access cookie
 * lasts an hour and the refresh cookie is never sent to `/oidc`, so without it a browser whose access
 * cookie had expired looked like "nothing to compare", and single sign-on went on as whoever first
 * signed in to an application there, after a logout or another user's login (provider.ts). It holds
 * no credential: it authenticates nothing, and the MAC only keeps a made-up id from being looked up.
 */
export const BROWSER_SESSION_COOKIE = 'twofold_browser_session';

const BROWSER_SESSION_PURPOSE = 'browser-session-cookie';

/** What the token cookies need: the configuration and the key of the browser-session cookie's MAC. */
export interface CookieDeps {
  config: Config;
  tokenHasher: TokenHasher;
}

/** Sets both token cookies and the browser-session cookie. */
export function setTokenCookies(reply: FastifyReply, deps: CookieDeps, tokens: TokenPair): void {
  const { config } = deps;
  reply.setCookie(ACCESS_COOKIE, tokens.access_token, {
    path: '/',
    maxAge: config.accessTokenTtlSeconds,
    httpOnly: true,
    sameSite: 'lax',
    secure: config.secureCookies,
  });
  reply.setCookie(REFRESH_COOKIE, tokens.refresh_token, {
    path: REFRESH_COOKIE_PATH,
    maxAge: config.refreshTokenTtlSeconds,
    httpOnly: true,
    sameSite: 'strict',
    secure: config.secureCookies,
  });
  const sid = decodeJwt(tokens.access_token).sid;
  if (typeof sid !== 'string') return;
  reply.setCookie(BROWSER_SESSION_COOKIE, `${sid}.${browserSessionMac(deps.tokenHasher, sid)}`, {
    path: '/',
    maxAge: config.refreshTokenTtlSeconds,
    httpOnly: true,
    sameSite: 'lax',
    secure: config.secureCookies,
  });
}

/** Expires the token cookies and the browser-session cookie. */
export function clearTokenCookies(reply: FastifyReply, config: Config): void {
  reply.clearCookie(ACCESS_COOKIE, { path: '/', httpOnly: true, sameSite: 'lax', secure: config.secureCookies });
  reply.clearCookie(REFRESH_COOKIE, { path: REFRESH_COOKIE_PATH, httpOnly: true, sameSite: 'strict', secure: config.secureCookies });
  reply.clearCookie(BROWSER_SESSION_COOKIE, { path: '/', httpOnly: true, sameSite: 'lax', secure: config.secureCookies });
}

/** `Set-Cookie` values expiring the three cookies, for answers Fastify does not write (the OpenID engine's). */
export function clearedCookieHeaders(config: Config): string[] {
  const secure = config.secureCookies ? '; Secure' : '';
  return [
    `${ACCESS_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax${secure}`,
    `${REFRESH_COOKIE}=; Path=${REFRESH_COOKIE_PATH}; Max-Age=0; HttpOnly; SameSite=Strict${secure}`,
    `${BROWSER_SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax${secure}`,
  ];
}

/** The session id of a browser-session cookie whose MAC holds, or undefined. */
export function browserSessionId(hasher: TokenHasher, value: string | undefined): string | undefined {
  if (!value || value.length > 200) return undefined;
  const dot = value.lastIndexOf('.');
  if (dot <= 0) return undefined;
  const sid = value.slice(0, dot);
  return safeEqual(value.slice(dot + 1), browserSessionMac(hasher, sid)) ? sid : undefined;
}

function browserSessionMac(hasher: TokenHasher, sid: string): string {
  return hasher.hash(BROWSER_SESSION_PURPOSE, sid).slice(0, 32);
}
