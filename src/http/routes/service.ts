/** Service endpoints: JWKS, health, readiness (metrics: routes/metrics.ts; discovery: src/oidc/). */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { Deps } from '../../deps.ts';
import { URL_PROBLEMS, codedProblem, problems } from '../schemas.ts';

/** The JWKS's Cache-Control max-age: half the activation delay, at most 5 minutes. */
export function jwksMaxAgeSeconds(activationDelaySeconds: number): number {
  return Math.min(300, Math.floor(activationDelaySeconds / 2));
}

export async function serviceRoutes(app: FastifyInstance, { deps }: { deps: Deps }): Promise<void> {
  app.get('/.well-known/jwks.json', {
    schema: { tags: ['Service'], summary: 'Public signing keys (JWK Set)', description: 'The keys in states `next`, `current` (listed first; the only one that signs) and `previous` (still verifying tokens it signed). `Cache-Control: max-age` is half of JWT_KEY_ACTIVATION_DELAY (at most 300 s), so a cached set holds a new key before its first token. Verifiers pick the key by the token header\'s `kid`.', response: { 200: Type.Object({ keys: Type.Array(Type.Record(Type.String(), Type.Unknown())) }) } },
  }, async (_request, reply) => {
    // Verifiers cache the set. A rotated-in key is served JWKS_MAX_AGE before it signs, so the
    // max-age must be shorter than JWT_KEY_ACTIVATION_DELAY: then every cache has it in time.
    reply.header('Cache-Control', `public, max-age=${jwksMaxAgeSeconds(deps.config.jwtKeyActivationDelaySeconds)}`);
    return deps.keys.jwks();
  });

  // GET /.well-known/openid-configuration is the OpenID provider's own discovery document (src/oidc/mount.ts).

  // Liveness only: it answers 200 whenever the process serves requests (the app adds the URL guard's 400).
  app.get('/healthz', {
    schema: { tags: ['Service'], summary: 'Liveness: the process is up', response: { 200: Type.Object({ status: Type.Literal('ok') }, { description: 'The process is up' }) } },
  }, async () => ({ status: 'ok' }));

  app.get('/readyz', {
    schema: {
      tags: ['Service'],
      summary: 'Readiness: the database answers (503 otherwise)',
      response: {
        200: Type.Object({ status: Type.Literal('ready'), database: Type.String({ description: 'The database kind', examples: ['postgres'] }) }, { description: 'The database answers' }),
        503: codedProblem(503, ['service_unavailable']),
      },
    },
  }, async (_request, reply) => {
    const ok = await deps.db.ping();
    if (!ok) {
      return reply.code(503).type('application/problem+json').send({
        type: 'https://twofold.dev/problems/service-unavailable', title: 'Service unavailable', status: 503, detail: 'The database is not reachable.', code: 'service_unavailable',
      });
    }
    return { status: 'ready', database: deps.db.kind };
  });
}

/** A GET operation of the document for a route that is hidden from it (see {@link servicePathsOutsideRoutes}). */
function serviceOperation(operationId: string, summary: string, description: string, ok: Record<string, unknown>) {
  // The app's URL guard (input-guard.ts) checks the query of these requests too.
  return { get: { tags: ['Service'], operationId, summary, description, security: [], responses: { 200: ok, ...problems(URL_PROBLEMS) } } };
}

/**
 * Contract service endpoints whose routes are hidden from the document: the discovery document (the
 * OpenID engine answers it on a route that also takes POST and OPTIONS, src/oidc/mount.ts), this
 * document itself and its rendering (@fastify/swagger-ui's routes). app.ts adds these paths to the
 * generated document; what the routes answer stays theirs.
 */
export function servicePathsOutsideRoutes(): Record<string, Record<string, unknown>> {
  return {
    '/.well-known/openid-configuration': serviceOperation(
      'getWellKnownOpenidConfiguration',
      'OpenID Connect discovery document',
      'The OpenID provider\'s metadata (OpenID Connect Discovery 1.0): issuer (PUBLIC_URL), jwks_uri, the authorization, token, userinfo, revocation, introspection and end-session endpoints, supported scopes, claims and algorithms.',
      {
        description: 'Provider metadata',
        content: {
          'application/json': {
            schema: Type.Object(
              {
                issuer: Type.String({ examples: ['http://127.0.0.1:8000'] }),
                jwks_uri: Type.String({ examples: ['http://127.0.0.1:8000/.well-known/jwks.json'] }),
                authorization_endpoint: Type.String({ examples: ['http://127.0.0.1:8000/oidc/auth'] }),
                token_endpoint: Type.String({ examples: ['http://127.0.0.1:8000/oidc/token'] }),
                id_token_signing_alg_values_supported: Type.Array(Type.String(), { examples: [['RS256']] }),
              },
              { additionalProperties: true },
            ),
          },
        },
      },
    ),
    '/openapi.json': serviceOperation('getOpenapiJson', 'This OpenAPI document', 'The OpenAPI 3.1 description of the API, generated from the route schemas.', {
      description: 'The OpenAPI document',
      content: { 'application/json': { schema: Type.Object({ openapi: Type.String({ examples: ['3.1.0'] }) }, { additionalProperties: true }) } },
    }),
    '/docs': serviceOperation('getDocs', 'The API documentation (Swagger UI)', 'An HTML page rendering `/openapi.json`.', {
      description: 'Swagger UI',
      content: { 'text/html': { schema: Type.String() } },
    }),
  };
}
