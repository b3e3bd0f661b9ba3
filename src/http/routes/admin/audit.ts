/** GET /api/v1/admin/audit: the audit log, newest first, with filters and cursor pagination. */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Deps } from '../../../deps.ts';
import { listAuditEvents } from '../../../services/audit/list.ts';
import { URL_PROBLEMS, VALIDATION_PROBLEMS, problems } from '../../schemas.ts';
import { ADMIN_PROBLEMS, AuditEventSchema, Cursor, Limit, NextCursor, adminSecurity } from './schemas.ts';

export async function adminAuditRoutes(app: FastifyInstance, { deps }: { deps: Deps }): Promise<void> {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  r.get('/api/v1/admin/audit', {
    schema: {
      tags: ['Administration'],
      summary: 'Read the audit log',
      description:
        'Entries newest first. Filters: `user` (uuid, or a current username), `type` (one or several comma-separated, e.g. `login.failed,login.locked`), ' +
        '`since` (ISO 8601). Entries never hold a password, code, token or secret. Entries of deleted users keep their uuid.',
      security: adminSecurity,
      querystring: Type.Object({
        user: Type.Optional(Type.String({ maxLength: 254, examples: ['alice'] })),
        type: Type.Optional(Type.String({ maxLength: 512, examples: ['login.failed,login.locked'] })),
        since: Type.Optional(Type.String({ maxLength: 40, examples: ['2026-01-31T00:00:00Z'] })),
        limit: Limit,
        cursor: Cursor,
      }),
      response: { 200: Type.Object({ events: Type.Array(AuditEventSchema), next_cursor: NextCursor }), ...problems(ADMIN_PROBLEMS, URL_PROBLEMS, VALIDATION_PROBLEMS) },
    },
  }, async (request) => listAuditEvents(deps, request.query));
}
