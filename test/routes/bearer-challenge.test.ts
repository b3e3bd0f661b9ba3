/**
 * RFC 6750 §3: a 401 for a missing token says `WWW-Authenticate: Bearer`, one for a bad access token
 * `Bearer error="invalid_token"`; the status and the problem's code stay the contract's.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { bearer, createUser, describeWithApp, loginTokens } from '../helpers/app.ts';

const USER_INFO = '/api/v1/auth-jwt/user-info';
const LOGOUT = '/api/v1/auth-jwt/logout';
const CHALLENGE = 'Bearer error="invalid_token"';

function assertRefused(res: LightMyRequestResponse, code: string, challenge: string | undefined, what: string): void {
  assert.equal(res.statusCode, 401, what);
  assert.equal(res.json().code, code, what);
  assert.equal(res.headers['www-authenticate'], challenge, what);
}

describeWithApp('WWW-Authenticate on 401 answers', (suite) => {
  test('a garbage Bearer token, a refresh token as Bearer, and the token of a logged-out session: Bearer error="invalid_token"', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const tokens = await loginTokens(app, user);
    assertRefused(await app.inject({ url: USER_INFO, headers: bearer('garbage') }), 'invalid_token', CHALLENGE, 'garbage');
    assertRefused(await app.inject({ url: USER_INFO, headers: bearer(tokens.refresh_token) }), 'invalid_token', CHALLENGE, 'refresh token');
    // A protected route whose session is checked by the guard (not by the handler, as user-info's is).
    assertRefused(await app.inject({ url: '/api/v1/auth-jwt/sessions', headers: bearer('garbage') }), 'invalid_token', CHALLENGE, 'sessions, garbage');

    assert.equal((await app.inject({ method: 'POST', url: LOGOUT, headers: bearer(tokens.access_token) })).statusCode, 204);
    assertRefused(await app.inject({ url: USER_INFO, headers: bearer(tokens.access_token) }), 'invalid_token', CHALLENGE, 'user-info, logged out');
    assertRefused(await app.inject({ url: '/api/v1/auth-jwt/sessions', headers: bearer(tokens.access_token) }), 'invalid_token', CHALLENGE, 'sessions, logged out');
    // A cookie-borne dead token gets the same challenge: harmless, and it tells the client what is wrong.
    assertRefused(await app.inject({ url: USER_INFO, cookies: { access_token: tokens.access_token } }), 'invalid_token', CHALLENGE, 'cookie, logged out');
  });

  test('logout: no token at all is authentication_required with Bearer; a bad Bearer token is invalid_token with the challenge, a bad body token without', async (t) => {
    const { app } = await suite.build(t);
    assertRefused(await app.inject({ method: 'POST', url: LOGOUT }), 'authentication_required', 'Bearer', 'no token');
    assertRefused(await app.inject({ method: 'POST', url: LOGOUT, headers: bearer('garbage') }), 'invalid_token', CHALLENGE, 'garbage Bearer');
    // A token in the body is no Bearer authentication: RFC 6750's challenge does not apply.
    assertRefused(await app.inject({ method: 'POST', url: LOGOUT, payload: { refresh_token: 'garbage' } }), 'invalid_token', undefined, 'garbage body');
  });
});
