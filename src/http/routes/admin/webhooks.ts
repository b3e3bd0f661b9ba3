/**
 * /api/v1/admin/webhooks*: webhook endpoints of other services (issue 10). Behind the admin guard
 * (registered through ADMIN_ROUTE_PLUGINS); every change is audited as `admin.action`.
 */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Deps } from '../../../deps.ts';
import * as endpoints from '../../../services/events/endpoints.ts';
import { pageLimit } from '../../../services/audit/cursor.ts';
import { EVENT_TYPES } from '../../../services/events/publish.ts';
import { DateTime, URL_PROBLEMS, Uuid, VALIDATION_PROBLEMS, problems } from '../../schemas.ts';
import { adminContext } from './guard.ts';
import { ADMIN_PROBLEMS, ADMIN_WRITE_PROBLEMS, adminSecurity } from './schemas.ts';

const tags = ['Webhooks'];
const NullableDate = Type.Union([DateTime, Type.Null()]);
const IdParams = Type.Object({ id: Uuid });

const EndpointSchema = Type.Object({
  id: Uuid,
  url: Type.String({ examples: ['https://billing.example.com/hooks/twofold'] }),
  events: Type.Array(Type.String(), { description: 'Event types delivered, or `["*"]` for all', examples: [['session.revoked', 'user.deleted']] }),
  description: Type.String({ examples: ['Billing: drop cached sessions'] }),
  created_at: DateTime,
  status: Type.Union([Type.Literal('active'), Type.Literal('failing')], { description: '`failing` once deliveries have failed for a day without a success; back to `active` at the next success' }),
  failing_since: Type.Union([DateTime, Type.Null()], { description: 'First failure of the current run of failures' }),
});

const SecretField = Type.String({
  pattern: '^whsec_',
  description: 'The signing secret (Standard Webhooks, `whsec_<base64>`). Shown only in this answer; store it in the receiving service.',
  examples: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'],
});

const DeliverySchema = Type.Object({
  event_id: Uuid,
  type: Type.String({ examples: ['session.revoked'] }),
  status: Type.Union([Type.Literal('pending'), Type.Literal('delivered'), Type.Literal('failed')], { description: '`failed`: given up after WEBHOOK_MAX_AGE (retry brings it back)' }),
  attempts: Type.Integer({ examples: [1] }),
  last_status_code: Type.Union([Type.Integer(), Type.Null()], { examples: [204] }),
  last_error: Type.Union([Type.String(), Type.Null()], { examples: [null] }),
  delivered_at: NullableDate,
  created_at: DateTime,
  last_attempt_at: NullableDate,
  next_attempt_at: Type.Union([DateTime, Type.Null()], { description: 'When a pending delivery is tried next' }),
  failed_at: NullableDate,
});

export async function adminWebhookRoutes(app: FastifyInstance, { deps }: { deps: Deps }): Promise<void> {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.post('/api/v1/admin/webhooks', {
    schema: {
      tags,
      summary: 'Register a webhook endpoint',
      description:
        'The URL must be http(s) on a public address: private, loopback and link-local targets are refused (also after DNS resolution, here and at every delivery) unless `WEBHOOK_ALLOW_PRIVATE=true`. ' +
        `Event types: ${EVENT_TYPES.join(', ')}, or \`*\`. The answer carries the secret, shown this once.`,
      security: adminSecurity,
      body: Type.Object({
        url: Type.String({ minLength: 1, maxLength: 2048, examples: ['https://billing.example.com/hooks/twofold'] }),
        events: Type.Array(Type.String({ maxLength: 64 }), { minItems: 1, maxItems: 64, examples: [['session.revoked', 'user.deleted']] }),
        description: Type.Optional(Type.String({ maxLength: 500, examples: ['Billing: drop cached sessions'] })),
      }),
      response: { 201: Type.Object({ ...EndpointSchema.properties, secret: SecretField }), ...problems(ADMIN_WRITE_PROBLEMS, VALIDATION_PROBLEMS) },
    },
  }, async (request, reply) => {
    reply.code(201);
    return endpoints.createEndpoint(deps, adminContext(request), request.body);
  });

  r.get('/api/v1/admin/webhooks', {
    schema: { tags, summary: 'List webhook endpoints', description: 'Oldest first, without secrets.', security: adminSecurity, response: { 200: Type.Array(EndpointSchema), ...problems(ADMIN_PROBLEMS) } },
  }, async () => endpoints.listEndpoints(deps));

  r.delete('/api/v1/admin/webhooks/:id', {
    schema: { tags, summary: 'Delete a webhook endpoint', description: 'Its undelivered events are dropped with it.', security: adminSecurity, params: IdParams, response: { 204: Type.Null({ description: 'Deleted' }), ...problems(ADMIN_WRITE_PROBLEMS, URL_PROBLEMS, { 404: ['not_found'] }, VALIDATION_PROBLEMS) } },
  }, async (request, reply) => {
    await endpoints.deleteEndpoint(deps, adminContext(request), request.params.id);
    return reply.code(204).send(null);
  });

  r.post('/api/v1/admin/webhooks/:id/rotate-secret', {
    schema: {
      tags,
      summary: 'Rotate a webhook endpoint\'s secret',
      description: 'A new secret, shown once. Until `previous_secret_expires_at` (WEBHOOK_SECRET_GRACE, default 24 h) every delivery carries two `v1,` signatures, one per secret, so the receiver can switch at its own pace. Rotating again within that time keeps the earlier secrets signing too, each until the end its rotation announced.',
      security: adminSecurity,
      params: IdParams,
      response: { 200: Type.Object({ id: Uuid, secret: SecretField, previous_secret_expires_at: DateTime }), ...problems(ADMIN_WRITE_PROBLEMS, URL_PROBLEMS, { 404: ['not_found'] }, VALIDATION_PROBLEMS) },
    },
  }, async (request) => endpoints.rotateEndpointSecret(deps, adminContext(request), request.params.id));

  r.get('/api/v1/admin/webhooks/:id/deliveries', {
    schema: {
      tags,
      summary: 'The delivery log of a webhook endpoint',
      description: 'The latest deliveries, newest first: `limit` of them (1 to 100, default 100). An endpoint receives its events in the order they were numbered, one at a time.',
      security: adminSecurity,
      params: IdParams,
      querystring: Type.Object({ limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,3}$', description: 'How many, 1 to 100 (default 100)', examples: ['100'] })) }),
      response: { 200: Type.Array(DeliverySchema), ...problems(ADMIN_PROBLEMS, URL_PROBLEMS, { 404: ['not_found'] }, VALIDATION_PROBLEMS) },
    },
  }, async (request) => endpoints.listEndpointDeliveries(deps, request.params.id, pageLimit(request.query.limit, 100, 100)));

  r.post('/api/v1/admin/webhooks/:id/deliveries/:event_id/retry', {
    schema: {
      tags,
      summary: 'Retry one delivery',
      description: 'Makes a pending or given-up delivery due now, with a fresh WEBHOOK_MAX_AGE. An acknowledged delivery is never sent again (409 `already_delivered`).',
      security: adminSecurity,
      params: Type.Object({ id: Uuid, event_id: Uuid }),
      response: { 202: Type.Object({ status: Type.Literal('queued') }), ...problems(ADMIN_WRITE_PROBLEMS, URL_PROBLEMS, { 404: ['not_found'], 409: ['already_delivered'] }, VALIDATION_PROBLEMS) },
    },
  }, async (request, reply) => {
    await endpoints.retryDelivery(deps, adminContext(request), request.params.id, request.params.event_id);
    reply.code(202);
    return { status: 'queued' as const };
  });

  r.post('/api/v1/admin/webhooks/:id/retry', {
    schema: {
      tags,
      summary: 'Retry every undelivered delivery',
      description: 'Makes every pending or given-up delivery of the endpoint due now (after an outage of the receiver).',
      security: adminSecurity,
      params: IdParams,
      response: { 202: Type.Object({ requeued: Type.Integer({ examples: [12] }) }), ...problems(ADMIN_WRITE_PROBLEMS, URL_PROBLEMS, { 404: ['not_found'] }, VALIDATION_PROBLEMS) },
    },
  }, async (request, reply) => {
    const requeued = await endpoints.retryAllDeliveries(deps, adminContext(request), request.params.id);
    reply.code(202);
    return { requeued };
  });
}
