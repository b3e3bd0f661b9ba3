/**
 * An `operationId` and a `security` entry for every documented operation (client generators and linters need one): a route
 * that names none gets one from its method and path, e.g. `POST /api/v1/auth-jwt/login/mfa` →
 * `postAuthJwtLoginMfa`, `DELETE /api/v1/auth-jwt/sessions/:id` → `deleteAuthJwtSessionsById`.
 */
import type { RouteOptions } from 'fastify';

export function operationIdOf(method: string, url: string): string {
  const words = url
    .replace(/^\/api\/v1\//, '/')
    .split('/')
    .filter(Boolean)
    .flatMap((seg) => (seg.startsWith(':') ? ['by', ...seg.slice(1).split(/[^A-Za-z0-9]+/)] : seg.split(/[^A-Za-z0-9]+/)))
    .filter(Boolean);
  return method.toLowerCase() + words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join('');
}

/**
 * onRoute hook: fills in a missing operationId, and `security: []` on operations that declare no
 * security (they are public: sign-up, login, JWKS …; saying so explicitly is what OpenAPI linters ask).
 */
export function documentOperation(route: RouteOptions): void {
  const schema = route.schema as { operationId?: string; hide?: boolean; security?: unknown } | undefined;
  if (!schema || schema.hide) return;
  const method = Array.isArray(route.method) ? route.method[0]! : route.method;
  route.schema = {
    ...schema,
    operationId: schema.operationId ?? operationIdOf(method, route.url),
    security: schema.security ?? [],
  } as RouteOptions['schema'];
}
