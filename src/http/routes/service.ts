/** Service endpoints: JWKS, health, readiness (metrics: routes/metrics.ts; discovery: src/oidc/). */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { Deps } from '../../deps.ts';

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

  app.get('/healthz', { schema: { tags: ['Service'], summary: 'Liveness: the process is up' } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { tags: ['Service'], summary: 'Readiness: the database answers (503 otherwise)' } }, async (_request, reply) => {
    const ok = await deps.db.ping();
    if (!ok) {
      return reply.code(503).type('application/problem+json').send({
        type: 'https://twofold.dev/problems/service-unavailable', title: 'Service unavailable', status: 503, detail: 'The database is not reachable.', code: 'service_unavailable',
      });
    }
    return { status: 'ready', database: deps.db.kind };
  });
}
