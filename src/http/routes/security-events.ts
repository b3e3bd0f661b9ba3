/** GET /api/v1/user/security-events: a person's own recent audit entries. */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.ts';
import { authOf, requireAuth } from '../plugins/auth.ts';
import { AUTH_PROBLEMS, DateTime, URL_PROBLEMS, VALIDATION_PROBLEMS, problems } from '../schemas.ts';
import { OWN_EVENTS_PAGE, listOwnSecurityEvents } from '../../services/audit/list.ts';
import { Cursor, NextCursor, limitParameter } from './admin/schemas.ts';

const security: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { cookieAuth: [] }];

const SecurityEvent = Type.Object({
  id: Type.String({ examples: ['42'] }),
  type: Type.String({ examples: ['login.succeeded'] }),
  at: DateTime,
  actor: Type.Union([Type.Literal('user'), Type.Literal('admin'), Type.Literal('api_key'), Type.Literal('system')], { description: 'Who acted: you, an administrator, an admin program, or the service' }),
  ip: Type.Union([Type.String(), Type.Null()], { description: 'Your client address (null when someone else acted)', examples: ['203.0.113.7'] }),
  user_agent: Type.Union([Type.String(), Type.Null()], { examples: ['Mozilla/5.0'] }),
  data: Type.Record(Type.String(), Type.Unknown(), { examples: [{ aal: 'aal2', amr: ['pwd', 'otp', 'mfa'] }] }),
});

export async function securityEventRoutes(app: FastifyInstance, { deps }: { deps: Deps }): Promise<void> {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  r.get('/api/v1/user/security-events', {
    onRequest: requireAuth(deps),
    schema: {
      tags: ['Users'],
      summary: 'Your recent security activity',
      description: 'Logins (also failed ones), second-factor and password changes, ended sessions on your account, newest first (default 20, at most 100 per page). When an administrator acted, `actor` says so without naming them.',
      security,
      querystring: Type.Object({ limit: limitParameter(OWN_EVENTS_PAGE), cursor: Cursor }),
      response: { 200: Type.Object({ events: Type.Array(SecurityEvent), next_cursor: NextCursor }), ...problems(AUTH_PROBLEMS, URL_PROBLEMS, VALIDATION_PROBLEMS) },
    },
  }, async (request) => listOwnSecurityEvents(deps, authOf(request).userId, request.query));
}
