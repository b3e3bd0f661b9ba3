/** The onRequest hook that guards every route under /api/v1/admin (see services/admin/authorize.ts). */
import type {} from '@fastify/cookie';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Deps } from '../../../deps.ts';
import { AppError } from '../../../errors.ts';
import { authorizeAdmin, type AdminCaller } from '../../../services/admin/authorize.ts';
import type { AuditContext } from '../../../services/audit/record.ts';
import { ACCESS_COOKIE } from '../../cookies.ts';
import { assertNotCrossSite, bearerToken, clientInfo } from '../../plugins/auth.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the admin guard on every /api/v1/admin route. */
    admin: AdminCaller | null;
  }
}

/**
 * Authorises the caller before anything else (401 and 403 come before 415 and 422): 401
 * authentication_required without credentials, 403 admin_required for anyone but an admin.
 * A cookie-borne token is held to the CSRF rule like every cookie-authenticated request.
 */
export function requireAdmin(deps: Deps) {
  return async function requireAdminHandler(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const bearer = bearerToken(request);
    if (bearer !== undefined) {
      request.admin = await authorizeAdmin(deps, bearer, 'bearer');
      return;
    }
    const cookie = request.cookies[ACCESS_COOKIE];
    if (!cookie) {
      throw new AppError('authentication_required', { detail: 'Send ADMIN_API_KEY or an admin access token as Bearer.', headers: { 'WWW-Authenticate': 'Bearer' } });
    }
    assertNotCrossSite(request, deps.config);
    request.admin = await authorizeAdmin(deps, cookie, 'cookie');
  };
}

/** The admin caller of a guarded request. */
export function adminOf(request: FastifyRequest): AdminCaller {
  if (!request.admin) throw new AppError('admin_required');
  return request.admin;
}

/** The audit context of a guarded request: the admin (or the key) and the client it called from. */
export function adminContext(request: FastifyRequest): AuditContext {
  return { actor: adminOf(request).actor, ...clientInfo(request) };
}
