/**
 * The one registration point of the admin API. Every plugin in {@link ADMIN_ROUTE_PLUGINS} is
 * registered inside a context whose onRequest hook is the admin guard, so a route added here cannot
 * forget it. Plugins declare their full paths (`/api/v1/admin/...`). To add admin routes (keys,
 * webhooks, OIDC clients), append the plugin to the list.
 */
import type { FastifyInstance } from 'fastify';
import type { Deps } from '../../../deps.ts';
import { AppError } from '../../../errors.ts';
import { requireAdmin } from './guard.ts';
import { adminAuditRoutes } from './audit.ts';
import { adminKeyRoutes } from './keys.ts';
import { adminUserRoutes } from './users.ts';
import { adminOutboxRoutes } from './outbox.ts';
import { adminWebhookRoutes } from './webhooks.ts';
import { adminOidcClientRoutes } from './oidc-clients.ts';

/** An admin route plugin: receives the deps; its routes are already guarded. */
export type AdminRoutePlugin = (app: FastifyInstance, opts: { deps: Deps }) => Promise<void>;

/** Admin route plugins, registered in order behind the guard. Append yours. */
export const ADMIN_ROUTE_PLUGINS: AdminRoutePlugin[] = [adminUserRoutes, adminAuditRoutes, adminOutboxRoutes, adminKeyRoutes, adminWebhookRoutes, adminOidcClientRoutes];

/** Registers the guard and every admin route plugin (app.ts calls this once). */
export async function adminRoutes(app: FastifyInstance, opts: { deps: Deps }): Promise<void> {
  app.decorateRequest('admin', null);
  app.addHook('onRequest', requireAdmin(opts.deps));
  for (const plugin of ADMIN_ROUTE_PLUGINS) await app.register(plugin, opts);
  // Unknown admin paths answer behind the guard too: strangers learn nothing of what exists here.
  app.all('/api/v1/admin/*', { schema: { hide: true } }, async () => {
    throw new AppError('not_found', { detail: 'No such admin endpoint.' });
  });
}
