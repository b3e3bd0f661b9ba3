/** The client facts recorded with a change made inside the OpenID engine (the Koa side). */
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { ClientInfo } from '../services/tokens.ts';

/** ctx.ip is Fastify's client address (mount.ts hands it over as X-Forwarded-For). */
export function koaClientInfo(ctx: KoaContextWithOIDC): ClientInfo {
  return { ip: ctx.ip || null, userAgent: ctx.get('user-agent') || null };
}
