/** GET /api/v1/admin/outbox: the delivery state of mail (the original service showed it through Flower). */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Deps } from '../../../deps.ts';
import { listOutbox } from '../../../services/admin/outbox.ts';
import { DateTime, URL_PROBLEMS, Uuid, VALIDATION_PROBLEMS, problems } from '../../schemas.ts';
import { ADMIN_PROBLEMS, Cursor, Limit, NextCursor, adminSecurity } from './schemas.ts';

const Status = Type.Union([Type.Literal('queued'), Type.Literal('sending'), Type.Literal('retrying'), Type.Literal('delivered'), Type.Literal('failed')]);

const OutboxMessage = Type.Object({
  id: Uuid,
  kind: Type.String({ examples: ['password_reset'] }),
  status: Status,
  attempts: Type.Integer({ minimum: 0, examples: [1] }),
  last_error: Type.Union([Type.String(), Type.Null()], { examples: ['connect ECONNREFUSED 127.0.0.1:2525'] }),
  created_at: DateTime,
  next_attempt_at: Type.Union([DateTime, Type.Null()], { description: 'When the worker tries next (null once delivered or given up)' }),
  delivered_at: Type.Union([DateTime, Type.Null()]),
  failed_at: Type.Union([DateTime, Type.Null()], { description: 'When the worker gave up (OUTBOX_MAX_AGE reached)' }),
});

export async function adminOutboxRoutes(app: FastifyInstance, { deps }: { deps: Deps }): Promise<void> {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  r.get('/api/v1/admin/outbox', {
    schema: {
      tags: ['Administration'],
      security: adminSecurity,
      summary: 'Mail delivery status',
      description:
        'Every mail the service queued, newest first: `queued` (not tried yet), `sending` (a worker holds it), `retrying` (failed, waits for `next_attempt_at`), ' +
        '`delivered`, `failed` (given up). Never a body (they hold links and codes) or an address. Filter with `status`.',
      querystring: Type.Object({ status: Type.Optional(Type.String({ maxLength: 16, examples: ['retrying'] })), limit: Limit, cursor: Cursor }),
      response: { 200: Type.Object({ messages: Type.Array(OutboxMessage), next_cursor: NextCursor }), ...problems(ADMIN_PROBLEMS, URL_PROBLEMS, VALIDATION_PROBLEMS) },
    },
  }, async (request) => listOutbox(deps, request.query));
}
