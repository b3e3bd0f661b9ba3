/** The caller's sessions (list, revoke one) and RFC 7662 token introspection for other services. */
import type { FastifyInstance } from 'fastify';
import formbody from '@fastify/formbody';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.ts';
import { authenticateIntrospectionClient, introspectToken } from '../../services/introspection.ts';
import { listSessions, revokeOwnSession } from '../../services/sessions.ts';
import { clearTokenCookies } from '../cookies.ts';
import { authOf, bearerToken, clientInfo, requireAuth } from '../plugins/auth.ts';
import { AUTH_PROBLEMS, AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, DateTime, URL_PROBLEMS, Uuid, VALIDATION_PROBLEMS, problems } from '../schemas.ts';

const security: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { cookieAuth: [] }];

const SessionSchema = Type.Object({
  id: Uuid,
  created_at: DateTime,
  last_used_at: DateTime,
  user_agent: Type.Union([Type.String(), Type.Null()], { examples: ['Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0'] }),
  ip: Type.Union([Type.String(), Type.Null()], { examples: ['203.0.113.7'] }),
  current: Type.Boolean({ description: 'The session of the token making this request' }),
});

const IntrospectionSchema = Type.Object(
  {
    active: Type.Boolean(),
    token_type: Type.Optional(Type.Union([Type.Literal('access_token'), Type.Literal('refresh_token')])),
    sub: Type.Optional(Type.String({ description: 'User uuid', examples: ['01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e11'] })),
    sid: Type.Optional(Type.String({ description: 'Session id, as listed by /sessions' })),
    jti: Type.Optional(Type.String()),
    exp: Type.Optional(Type.Integer({ examples: [1739462141] })),
    iat: Type.Optional(Type.Integer({ examples: [1739458541] })),
    iss: Type.Optional(Type.String({ examples: ['http://127.0.0.1:8000'] })),
    aud: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())], { examples: ['twofold'] })),
    username: Type.Optional(Type.String({ examples: ['alice'] })),
    amr: Type.Optional(Type.Array(Type.String(), { examples: [['pwd', 'otp', 'mfa']] })),
    aal: Type.Optional(Type.String({ examples: ['aal2'] })),
    roles: Type.Optional(Type.Array(Type.String(), { description: "The token's roles that the user still holds: a role removed since the token was issued is left out, one granted since comes with the next token" })),
  },
  { description: 'RFC 7662 answer; `{"active": false}` alone for any token that is not good now' },
);

export async function sessionRoutes(app: FastifyInstance, { deps }: { deps: Deps }): Promise<void> {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const auth = requireAuth(deps);

  r.get('/api/v1/auth-jwt/sessions', {
    onRequest: auth,
    schema: {
      tags: ['Login and tokens'],
      summary: 'The caller\'s live sessions',
      description: 'One entry per login that is neither logged out, revoked nor expired, newest first; `current` marks the session of this request. At most `MAX_SESSIONS_PER_USER` entries (a login beyond it ends the oldest), the caller\'s own always among them.',
      security,
      response: { 200: Type.Array(SessionSchema), ...problems(AUTH_PROBLEMS) },
    },
  }, async (request, reply) => {
    reply.header('Cache-Control', 'no-store');
    return listSessions(deps, authOf(request));
  });

  r.delete('/api/v1/auth-jwt/sessions/:id', {
    onRequest: auth,
    schema: {
      tags: ['Login and tokens'],
      summary: 'Revoke one of the caller\'s sessions',
      description: 'Its access and refresh tokens are refused at once. Revoking the current session also clears the token cookies. Another user\'s session, or an unknown or ended one, is 404 `session_not_found`.',
      security,
      params: Type.Object({ id: Type.String({ description: 'Session id from GET /sessions' }) }),
      response: { 204: Type.Null(), ...problems(AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, URL_PROBLEMS, { 404: ['session_not_found'] }) },
    },
  }, async (request, reply) => {
    const { current } = await revokeOwnSession(deps, authOf(request), request.params.id, clientInfo(request));
    if (current) clearTokenCookies(reply, deps.config);
    return reply.code(204).send(null);
  });

  // RFC 7662 clients send form bodies; this route's own scope keeps form parsing away from the rest.
  // No cookie is ever read here, so a cross-site form post gains nothing (no CSRF concern).
  await app.register(async (scope) => {
    await scope.register(formbody, { bodyLimit: deps.config.bodyLimitBytes });
    scope.withTypeProvider<TypeBoxTypeProvider>().post('/api/v1/auth-jwt/introspect', {
      // The caller is checked before its body is even parsed: an unauthenticated client learns nothing, not even a 422.
      onRequest: async (request) => authenticateIntrospectionClient(deps, bearerToken(request)),
      schema: {
        tags: ['Login and tokens'],
        summary: 'Introspect a token (RFC 7662), for other services',
        description: 'Authenticate with `Authorization: Bearer <INTROSPECTION_SECRET>` (401 `invalid_client` otherwise, and always when no secret is configured). JSON or application/x-www-form-urlencoded `{token, token_type_hint?}`. An access token of a live session, or the current refresh token of one, is `active: true` with its claims, except that `roles` lists only the token\'s roles the user still holds (a removed role stops here at once); anything else (expired, tampered, revoked, rotated, an MFA token) is just `{"active": false}`.',
        security: [{ bearerAuth: [] }],
        consumes: ['application/json', 'application/x-www-form-urlencoded'],
        body: Type.Object({
          token: Type.String({ maxLength: 8192, examples: ['eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6Ii4uLiJ9...'] }),
          token_type_hint: Type.Optional(Type.String({ maxLength: 64, examples: ['access_token'] })),
        }),
        response: { 200: IntrospectionSchema, ...problems(BODY_PROBLEMS, { 401: ['invalid_client'] }, VALIDATION_PROBLEMS) },
      },
    }, async (request, reply) => {
      // The answer describes a credential: no cache may keep it (RFC 7662 §4 refers to RFC 6749 §5.1).
      reply.header('Cache-Control', 'no-store');
      return introspectToken(deps, request.body.token, request.body.token_type_hint);
    });
  });
}
