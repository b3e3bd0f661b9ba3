/**
 * /api/v1/admin/oidc-clients*: OpenID clients registered at run time (issue 11). Behind the admin
 * guard (ADMIN_ROUTE_PLUGINS); the generated secret is in the 201 answer only.
 */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Deps } from '../../../deps.ts';
import { createClient, listAllClients, removeClient } from '../../../services/oidc/clients.ts';
import { loadClientsFile } from '../../../oidc/clients-file.ts';
import { AUTH_METHODS, GRANT_TYPES } from '../../../oidc/client-metadata.ts';
import { DateTime, URL_PROBLEMS, VALIDATION_PROBLEMS, problems } from '../../schemas.ts';
import { adminContext } from './guard.ts';
import { ADMIN_PROBLEMS, ADMIN_WRITE_PROBLEMS, adminSecurity } from './schemas.ts';

const tags = ['OpenID clients'];
const Url = Type.String({ maxLength: 2048, examples: ['https://wiki.example.com/callback'] });
const Metadata = {
  client_id: Type.String({ pattern: '^[A-Za-z0-9._~-]{1,100}$', examples: ['wiki'] }),
  redirect_uris: Type.Optional(Type.Array(Url, { maxItems: 20, description: 'Required with the authorization_code grant; absent for a client_credentials-only client. An app scheme (`com.example.app:/cb`) makes a native client, which must use PKCE; while PUBLIC_URL is https, http is accepted only on loopback hosts' })),
  post_logout_redirect_uris: Type.Optional(Type.Array(Url, { maxItems: 20, examples: [['https://wiki.example.com/']] })),
  grant_types: Type.Optional(Type.Array(Type.Union(GRANT_TYPES.map((g) => Type.Literal(g))), { minItems: 1, maxItems: 3, description: 'Default `["authorization_code"]`', examples: [['authorization_code', 'refresh_token']] })),
  token_endpoint_auth_method: Type.Optional(Type.Union(AUTH_METHODS.map((m) => Type.Literal(m)), { description: 'Default `client_secret_basic`; `none` = public client (PKCE S256 required)', examples: ['client_secret_basic'] })),
  scope: Type.Optional(Type.String({ maxLength: 200, description: 'Space-separated subset of `openid profile email offline_access` (default: all)', examples: ['openid profile email offline_access'] })),
  backchannel_logout_uri: Type.Optional(Type.String({ maxLength: 2048, description: 'Called with a logout token when a session of the user ends (even on a private address)', examples: ['https://wiki.example.com/backchannel-logout'] })),
  skip_consent: Type.Optional(Type.Boolean({ description: 'First-party client: no consent screen (native clients, with an app-scheme redirect URI, are still asked every time: another app may claim the scheme)', examples: [false] })),
  client_name: Type.Optional(Type.String({ maxLength: 100, description: 'Shown on the consent screen', examples: ['Team wiki'] })),
};
const ClientSchema = Type.Object({
  ...Metadata,
  redirect_uris: Type.Array(Url),
  grant_types: Type.Array(Type.String()),
  token_endpoint_auth_method: Type.String(),
  scope: Type.String(),
  skip_consent: Type.Boolean(),
  source: Type.Union([Type.Literal('file'), Type.Literal('api')], { description: '`file`: from OIDC_CLIENTS_FILE (read-only here)' }),
  created_at: Type.Union([DateTime, Type.Null()]),
});

export async function adminOidcClientRoutes(app: FastifyInstance, { deps }: { deps: Deps }): Promise<void> {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const fileClients = loadClientsFile(deps.config.oidc.clientsFile, deps.config.secureCookies);

  r.post('/api/v1/admin/oidc-clients', {
    schema: {
      tags,
      summary: 'Register an OpenID client',
      description: 'RFC 7591 metadata. A confidential client gets a generated `client_secret` (43 characters), returned only in this answer and stored sealed. A `client_id` in use (here or in OIDC_CLIENTS_FILE) is 422 on `client_id`.',
      security: adminSecurity,
      body: Type.Object(Metadata, { additionalProperties: true }),
      response: { 201: Type.Object({ ...ClientSchema.properties, client_secret: Type.Optional(Type.String({ description: 'Shown once', examples: ['q8V0m1Yg3o6cS8l2bR2S0E9jv0pJvXq5z4b7n6m5k3A'] })) }), ...problems(ADMIN_WRITE_PROBLEMS, VALIDATION_PROBLEMS) },
    },
  }, async (request, reply) => {
    reply.code(201).header('Cache-Control', 'no-store');
    return createClient(deps, adminContext(request), request.body, fileClients);
  });

  r.get('/api/v1/admin/oidc-clients', {
    schema: { tags, summary: 'List OpenID clients', description: 'Clients of OIDC_CLIENTS_FILE first, then registered ones, oldest first; never secrets.', security: adminSecurity, response: { 200: Type.Array(ClientSchema), ...problems(ADMIN_PROBLEMS) } },
  }, async () => listAllClients(deps, fileClients));

  r.delete('/api/v1/admin/oidc-clients/:client_id', {
    schema: {
      tags,
      summary: 'Delete a registered OpenID client',
      description: 'Its grants, codes, access and refresh tokens and remembered consents are deleted with it. Clients of OIDC_CLIENTS_FILE are removed from the file (422 here).',
      security: adminSecurity,
      params: Type.Object({ client_id: Type.String({ maxLength: 100, examples: ['wiki'] }) }),
      response: { 204: Type.Null({ description: 'Deleted' }), ...problems(ADMIN_WRITE_PROBLEMS, URL_PROBLEMS, { 404: ['not_found'] }, VALIDATION_PROBLEMS) },
    },
  }, async (request, reply) => {
    await removeClient(deps, adminContext(request), request.params.client_id, fileClients);
    return reply.code(204).send(null);
  });
}
