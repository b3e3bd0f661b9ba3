/** Login (one and two steps), token refresh, logout and the caller's profile. */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import formbody from '@fastify/formbody';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.ts';
import type { AuthenticationResponseJSON } from '@simplewebauthn/server';
import { AppError, isAppError, validationError } from '../../errors.ts';
import { AuthenticationCredential } from './passkeys/schemas.ts';
import { readUserInfoForSession } from '../../db/repositories/session-reads.ts';
import { INVALID_TOKEN_CHALLENGE, assertLiveSession } from '../../services/authenticate.ts';
import { completeMfaLogin, loginWithPassword } from '../../services/login.ts';
import { refreshSession } from '../../services/refresh.ts';
import { logout, logoutAll } from '../../services/logout.ts';
import type { TokenPair } from '../../services/tokens.ts';
import { ACCESS_COOKIE, REFRESH_COOKIE, clearTokenCookies, setTokenCookies } from '../cookies.ts';
import { followLoginInBrowser } from '../browser-session.ts';
import { assertNotCrossSite, authOf, bearerToken, clientInfo, requireAuth } from '../plugins/auth.ts';
import {
  AUTH_PROBLEMS, AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, DateTime, LoginResultSchema, MFA_REQUIRED_EXAMPLE, MfaRequired, Password, RATE_LIMITED, SecurityCode, TokenPairSchema, Uuid, VALIDATION_PROBLEMS,
  codedProblem, problems, tokenResponse,
} from '../schemas.ts';
import { emptyBodyAsObject } from '../empty-body.ts';
import { privateUser } from '../../services/register-user.ts';

const security: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { cookieAuth: [] }];

export async function authJwtRoutes(app: FastifyInstance, { deps }: { deps: Deps }): Promise<void> {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const auth = requireAuth(deps);

  function sendTokens(reply: FastifyReply, tokens: TokenPair) {
    setTokenCookies(reply, deps, tokens);
    // Token responses must never be cached by a proxy or the browser (RFC 6749 §5.1).
    return reply.header('Cache-Control', 'no-store').send(tokens);
  }

  const LoginBody = Type.Object({
    username: Type.String({ minLength: 1, maxLength: 254, description: 'Username or e-mail address', examples: ['alice'] }),
    password: Password,
    security_code: Type.Optional(SecurityCode),
    backup_code: Type.Optional(Type.String({ maxLength: 64, examples: ['7K3D-9XQ2-M4TB'] })),
  });

  // The login route alone also accepts HTML-form bodies (the original service did); its own scope keeps
  // form parsing away from every other route.
  await app.register(async (scope) => {
    await scope.register(formbody, { bodyLimit: deps.config.bodyLimitBytes });
    scope.withTypeProvider<TypeBoxTypeProvider>().post('/api/v1/auth-jwt/login', {
      schema: {
        tags: ['Login and tokens'],
        summary: 'Log in with password (and optionally a second factor)',
        description: 'JSON or application/x-www-form-urlencoded. A user with an active second factor must send `security_code` (TOTP) or `backup_code`, or receives 403 `mfa_required` with an `mfa_token` for `/login/mfa`. The first successful `security_code` for a pending TOTP secret activates it; that answer also carries `backup_codes` (10 codes, shown once) when the user had none. After a `backup_code` login the answer carries `backup_codes_remaining`. Sets the cookies `access_token`, `refresh_token` and `twofold_browser_session` (which session the browser holds, for the OpenID provider\'s single sign-on; no credential).',
        consumes: ['application/json', 'application/x-www-form-urlencoded'],
        body: LoginBody,
        response: {
          200: tokenResponse(LoginResultSchema),
          ...problems(BODY_PROBLEMS, { 401: ['invalid_credentials', 'invalid_security_code', 'invalid_token'] }, VALIDATION_PROBLEMS, RATE_LIMITED),
          // Form bodies are held to the CSRF rule; MFA_POLICY=required refuses a login without a factor.
          403: codedProblem(403, ['mfa_required', 'account_inactive', 'email_not_verified', 'mfa_enrollment_required', 'csrf_rejected'], MfaRequired, MFA_REQUIRED_EXAMPLE),
        },
      },
    }, async (request, reply) => {
      // A cross-site HTML form can post form bodies without a CORS preflight: refuse that (login CSRF).
      // Media types are case-insensitive (RFC 9110 §8.3.1): `Application/X-WWW-Form-Urlencoded` is a form too.
      if (isFormBody(request)) assertNotCrossSite(request, deps.config);
      const tokens = await loginWithPassword(deps, request.body, clientInfo(request));
      await followLoginInBrowser(deps, request, tokens);
      return sendTokens(reply, tokens);
    });
  });

  r.post('/api/v1/auth-jwt/login/mfa', {
    schema: {
      tags: ['Login and tokens'],
      summary: 'Complete a login with a second factor',
      description:
        'The `mfa_token` may instead be sent as the Bearer token. A challenge allows 5 codes, then it is dead, and it spends at most one code: two valid codes sent at once log in once. After a `backup_code` the answer carries `backup_codes_remaining`. ' +
        'With `method: "passkey"` send `credential` (the browser\'s `AuthenticationResponseJSON` for options from `/login/mfa/passkey/options`) instead of `code`; a bad one answers 401 `invalid_passkey` and counts like a wrong code.',
      body: Type.Object({
        mfa_token: Type.Optional(Type.String({ maxLength: 4096 })),
        method: Type.Union([Type.Literal('totp'), Type.Literal('email'), Type.Literal('backup_code'), Type.Literal('passkey')]),
        code: Type.Optional(SecurityCode),
        credential: Type.Optional(AuthenticationCredential),
      }),
      response: {
        200: tokenResponse(LoginResultSchema),
        ...problems(BODY_PROBLEMS, { 401: ['invalid_security_code', 'invalid_token', 'invalid_passkey'], 403: ['account_inactive', 'email_not_verified'] }, VALIDATION_PROBLEMS, RATE_LIMITED),
      },
    },
  }, async (request, reply) => {
    const mfaToken = request.body.mfa_token ?? bearerToken(request);
    if (!mfaToken) throw new AppError('invalid_token', { detail: 'Send the mfa_token from the login answer.' });
    const { method, code, credential } = request.body;
    if (method === 'passkey' && !credential) throw validationError('credential', 'Send the passkey answer as credential.');
    if (method !== 'passkey' && code === undefined) throw validationError('code', 'Send the code.');
    const tokens = await completeMfaLogin(deps, { mfa_token: mfaToken, method, code, credential: credential as AuthenticationResponseJSON | undefined }, clientInfo(request));
    await followLoginInBrowser(deps, request, tokens);
    return sendTokens(reply, tokens);
  });

  r.post('/api/v1/auth-jwt/refresh', {
    preValidation: emptyBodyAsObject,
    schema: {
      tags: ['Login and tokens'],
      summary: 'Rotate the refresh token',
      description: 'Refresh token as `refresh_token` cookie, Bearer, or `{refresh_token}`. Reusing a rotated token revokes the session (after a grace of REFRESH_REUSE_GRACE_SECONDS).',
      body: Type.Object({ refresh_token: Type.Optional(Type.String({ maxLength: 4096 })) }),
      response: { 200: tokenResponse(TokenPairSchema), ...problems(BODY_PROBLEMS, { 401: ['invalid_token', 'refresh_token_reused'], 403: ['csrf_rejected'] }, VALIDATION_PROBLEMS) },
    },
  }, async (request, reply) => {
    const { token, fromCookie } = refreshTokenOf(request, deps);
    try {
      return sendTokens(reply, await refreshSession(deps, token, clientInfo(request)));
    } catch (e) {
      // Only the cookies' own token being dead clears them: a bad token in the body or as Bearer says
      // nothing of the browser's session (and let any same-site script log the browser out).
      if (fromCookie && e instanceof AppError && (e.code === 'refresh_token_reused' || e.code === 'invalid_token')) clearTokenCookies(reply, deps.config);
      throw e;
    }
  });

  r.post('/api/v1/auth-jwt/logout', {
    preValidation: emptyBodyAsObject,
    schema: {
      tags: ['Login and tokens'],
      summary: 'Log out (revoke this session)',
      description: 'Access or refresh token, as Bearer, cookie or `{refresh_token}`. Clears the cookies.',
      body: Type.Object({ refresh_token: Type.Optional(Type.String({ maxLength: 4096 })) }),
      response: { 204: Type.Null(), ...problems(BODY_PROBLEMS, { 401: ['authentication_required', 'invalid_token'], 403: ['csrf_rejected'] }, VALIDATION_PROBLEMS) },
    },
  }, async (request, reply) => {
    const bearer = bearerToken(request);
    let token = request.body?.refresh_token ?? bearer;
    if (!token) {
      token = request.cookies[REFRESH_COOKIE] ?? request.cookies[ACCESS_COOKIE];
      if (token) assertNotCrossSite(request, deps.config);
    }
    // The challenges of RFC 6750 §3, as every protected route sends them: no token at all, or a bad
    // Bearer one (not a bad token in the body, which is no Bearer authentication).
    if (!token) throw new AppError('authentication_required', { detail: 'Send the access or refresh token.', headers: { 'WWW-Authenticate': 'Bearer' } });
    try {
      await logout(deps, token, clientInfo(request));
    } catch (e) {
      if (token !== bearer || !isAppError(e, 'invalid_token')) throw e;
      throw new AppError('invalid_token', { detail: e.detail, cause: e, headers: { ...INVALID_TOKEN_CHALLENGE } });
    }
    clearTokenCookies(reply, deps.config);
    return reply.code(204).send(null);
  });

  r.post('/api/v1/auth-jwt/logout-all', {
    onRequest: auth,
    schema: { tags: ['Login and tokens'], summary: 'Log out everywhere (revoke every session)', security, response: { 204: Type.Null(), ...problems(AUTH_WRITE_PROBLEMS, BODY_PROBLEMS) } },
  }, async (request, reply) => {
    await logoutAll(deps, authOf(request).userId, clientInfo(request));
    clearTokenCookies(reply, deps.config);
    return reply.code(204).send(null);
  });

  r.get('/api/v1/auth-jwt/user-info', {
    // One round trip: the profile query below carries the live-session condition itself.
    onRequest: requireAuth(deps, { sessionCheckedByHandler: true }),
    schema: {
      tags: ['Login and tokens'],
      summary: 'The caller\'s private profile',
      security,
      response: {
        200: Type.Object({
          uuid: Uuid,
          username: Type.String(),
          email: Type.String(),
          email_verified: Type.Boolean(),
          is_active: Type.Boolean(),
          full_name: Type.Union([Type.String(), Type.Null()]),
          profile: Type.Record(Type.String(), Type.Unknown()),
          created_at: DateTime,
          updated_at: DateTime,
          mfa: Type.Object({ totp: Type.Boolean(), email: Type.Boolean(), passkeys: Type.Integer({ description: 'How many passkeys the user has' }), backup_codes_remaining: Type.Integer() }),
        }),
        ...problems(AUTH_PROBLEMS),
      },
    },
  }, async (request, reply) => {
    const auth = authOf(request);
    const user = await readUserInfoForSession(deps.db, auth.sessionId, deps.clock());
    assertLiveSession(auth, user);
    reply.header('Cache-Control', 'no-store');
    return {
      ...privateUser(user),
      full_name: user.full_name,
      profile: user.profile,
      mfa: {
        totp: user.totp_active && deps.config.mfaMethods.includes('totp'),
        email: user.email_otp_enabled && deps.config.mfaMethods.includes('email'),
        passkeys: user.passkeys,
        backup_codes_remaining: user.backup_codes_remaining,
      },
    };
  });
}

/** The refresh token from body, Bearer or cookie (cookies only with the CSRF check). */
function refreshTokenOf(request: FastifyRequest, deps: Deps): { token: string; fromCookie: boolean } {
  const body = request.body as { refresh_token?: string } | undefined;
  const explicit = body?.refresh_token ?? bearerToken(request);
  if (explicit) return { token: explicit, fromCookie: false };
  const cookie = request.cookies[REFRESH_COOKIE];
  if (!cookie) throw new AppError('invalid_token', { detail: 'Send the refresh token as cookie, Bearer or body.' });
  assertNotCrossSite(request, deps.config);
  return { token: cookie, fromCookie: true };
}

/** True for an application/x-www-form-urlencoded body, however the type is capitalised. */
function isFormBody(request: FastifyRequest): boolean {
  return (request.headers['content-type'] ?? '').trimStart().toLowerCase().startsWith('application/x-www-form-urlencoded');
}
