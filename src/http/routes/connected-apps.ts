/** The caller's connected applications (OpenID clients it consented to): list, disconnect. */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.ts';
import { disconnectApp, listConnectedApps } from '../../services/oidc/consent.ts';
import { authOf, clientInfo, requireAuth } from '../plugins/auth.ts';
import { sendBackchannelLogouts } from '../../oidc/session-end.ts';
import { AUTH_PROBLEMS, AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, DateTime, URL_PROBLEMS, VALIDATION_PROBLEMS, problems } from '../schemas.ts';

const security: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { cookieAuth: [] }];
const tags = ['Login and tokens'];

const AppSchema = Type.Object({
  client_id: Type.String({ examples: ['wiki'] }),
  scopes: Type.Array(Type.String(), { examples: [['openid', 'profile', 'email']] }),
  connected_at: DateTime,
});

export async function connectedAppRoutes(app: FastifyInstance, { deps }: { deps: Deps }): Promise<void> {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const auth = requireAuth(deps);

  r.get('/api/v1/account/connected-apps', {
    preHandler: auth,
    schema: { tags, summary: 'Applications you signed in to with OpenID Connect', description: 'Each with the scopes you granted; consent is remembered per application until you disconnect it.', security, response: { 200: Type.Array(AppSchema), ...problems(AUTH_PROBLEMS) } },
  }, async (request) => listConnectedApps(deps, authOf(request).userId));

  r.delete('/api/v1/account/connected-apps/:client_id', {
    preHandler: auth,
    schema: {
      tags,
      summary: 'Disconnect an application',
      description: 'Forgets the consent and ends every grant, access and refresh token the application holds for you; it must ask again. An application with a back-channel logout URI is told that your sign-in there ended.',
      security,
      params: Type.Object({ client_id: Type.String({ maxLength: 100, examples: ['wiki'] }) }),
      response: { 204: Type.Null({ description: 'Disconnected' }), ...problems(AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, URL_PROBLEMS, { 404: ['not_found'] }, VALIDATION_PROBLEMS) },
    },
  }, async (request, reply) => {
    const { userId } = authOf(request);
    const clientId = request.params.client_id;
    const sids = await disconnectApp(deps, userId, clientId, clientInfo(request));
    // The application's own sign-in ends too: a back-channel logout per provider session it was in,
    // sent after the answer (best effort, as when a session ends; a failure is logged).
    if (sids.length > 0) {
      void app.oidc.engine.get()
        .then(({ provider }) => sendBackchannelLogouts(deps, provider, userId, sids.map((sid) => ({ clientId, sid }))))
        .catch((err: unknown) => deps.logger.warn({ err, clientId }, 'oidc back-channel logout after a disconnect failed'));
    }
    return reply.code(204).send(null);
  });
}
