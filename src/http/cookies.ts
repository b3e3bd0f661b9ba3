/** The token cookies of the contract: HttpOnly, SameSite Lax (access) / Strict (refresh), Secure on https. */
import type {} from '@fastify/cookie';
import type { FastifyReply } from 'fastify';
import type { Config } from '../config.ts';
import type { TokenPair } from '../services/tokens.ts';

export const ACCESS_COOKIE = 'access_token';
export const REFRESH_COOKIE = 'refresh_token';
/** The refresh cookie is only sent to the token endpoints, never with ordinary API calls. */
export const REFRESH_COOKIE_PATH = '/api/v1/auth-jwt';

/** Sets both token cookies. */
export function setTokenCookies(reply: FastifyReply, config: Config, tokens: TokenPair): void {
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
}

/** Expires both token cookies. */
export function clearTokenCookies(reply: FastifyReply, config: Config): void {
  reply.clearCookie(ACCESS_COOKIE, { path: '/', httpOnly: true, sameSite: 'lax', secure: config.secureCookies });
  reply.clearCookie(REFRESH_COOKIE, { path: REFRESH_COOKIE_PATH, httpOnly: true, sameSite: 'strict', secure: config.secureCookies });
}
