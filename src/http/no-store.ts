/**
 * `Cache-Control: no-store` on every answer of the API and the development mailbox, errors included:
 * sign-up with `mfa: "totp"`, the 403 `mfa_required` (its `mfa_token`), enrolments, backup codes and
 * token answers carry secrets, and a shared cache or the browser's disk must never keep one (RFC 6749 §5.1).
 * A blanket rule rather than a per-route header, so a new route cannot forget it.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';

const PREFIXES = ['/api/', '/dev/'];

export async function noStoreForApi(request: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
  if (!reply.hasHeader('cache-control') && PREFIXES.some((p) => routePath(request).startsWith(p))) reply.header('Cache-Control', 'no-store');
  return payload;
}

/**
 * The path a request was routed by: the matched route's pattern, or for an unmatched request its
 * decoded path. Never the raw URL: the router decodes percent-escapes before matching, so
 * `/%61pi/v1/user` reaches `/api/v1/user`, and a test on the raw URL would miss it.
 */
export function routePath(request: FastifyRequest): string {
  const pattern = request.routeOptions.url;
  if (pattern) return pattern;
  const path = request.url.split('?')[0] ?? '';
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}
