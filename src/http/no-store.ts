/**
 * `Cache-Control: no-store` on every answer of the API and the development mailbox, errors included:
 * sign-up with `mfa: "totp"`, the 403 `mfa_required` (its `mfa_token`), enrolments, backup codes and
 * token answers carry secrets, and a shared cache or the browser's disk must never keep one (RFC 6749 §5.1).
 * A blanket rule rather than a per-route header, so a new route cannot forget it.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';

const PREFIXES = ['/api/', '/dev/'];

export async function noStoreForApi(request: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
  if (!reply.hasHeader('cache-control') && PREFIXES.some((p) => request.url.startsWith(p))) reply.header('Cache-Control', 'no-store');
  return payload;
}
