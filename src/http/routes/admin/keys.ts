/** GET /api/v1/admin/keys and POST /api/v1/admin/keys/rotate: the signing keys and their rotation. */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Deps } from '../../../deps.ts';
import { auditRotation, listKeys, rotateSigningKey } from '../../../services/signing-keys/rotate.ts';
import { DateTime, problems } from '../../schemas.ts';
import { adminContext } from './guard.ts';
import { ADMIN_PROBLEMS, ADMIN_WRITE_PROBLEMS, adminSecurity } from './schemas.ts';

const KID_EXAMPLE = 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs';

const SigningKeySchema = Type.Object({
  kid: Type.String({ description: 'RFC 7638 thumbprint of the public key; the `kid` of the tokens it signs', examples: [KID_EXAMPLE] }),
  alg: Type.String({ examples: ['RS256'] }),
  state: Type.Union([Type.Literal('next'), Type.Literal('current'), Type.Literal('previous')], {
    description: '`next`: published, signs from `activates_at`; `current`: signs; `previous`: replaced, still verifies until `retires_at`',
  }),
  created_at: DateTime,
  activates_at: { ...DateTime, description: 'When it becomes (or became) current' },
  retires_at: Type.Optional({ ...DateTime, description: 'Once a successor exists: when the last token this key can have signed expires; it is then no longer served and deleted' }),
});

export async function adminKeyRoutes(app: FastifyInstance, { deps }: { deps: Deps }): Promise<void> {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  r.get('/api/v1/admin/keys', {
    schema: {
      tags: ['Administration'],
      summary: 'List the signing keys',
      description: 'The keys the JWKS serves, newest first: `next` (published ahead of activation), `current` (the one that signs), `previous` (still verifying the tokens it signed).',
      security: adminSecurity,
      response: {
        200: Type.Object({ keys: Type.Array(SigningKeySchema) }, {
          examples: [{ keys: [
            { kid: 'd0fWw3kO2mQpZ5n3H1tY9s8Rk4cJ7vUe6aXbLqTzN1E', alg: 'RS256', state: 'next', created_at: '2026-06-01T12:00:00.000Z', activates_at: '2026-06-01T12:10:00.000Z' },
            { kid: KID_EXAMPLE, alg: 'RS256', state: 'current', created_at: '2026-03-01T09:00:00.000Z', activates_at: '2026-03-01T09:10:00.000Z', retires_at: '2026-07-31T12:15:00.000Z' },
          ] }],
        }),
        ...problems(ADMIN_PROBLEMS),
      },
    },
  }, async () => ({ keys: await listKeys(deps) }));

  r.post('/api/v1/admin/keys/rotate', {
    schema: {
      tags: ['Administration'],
      summary: 'Rotate the signing key',
      description:
        'Makes a new key in state `next`: published in the JWKS at once, it signs from `activates_at` (JWT_KEY_ACTIVATION_DELAY later) on every instance. ' +
        'The key it replaces stays `previous` until every token it signed has expired, so nobody is logged out. Recorded in the audit log as `admin.action`. No body.',
      security: adminSecurity,
      response: {
        201: { ...SigningKeySchema, examples: [{ kid: KID_EXAMPLE, alg: 'RS256', state: 'next', created_at: '2026-06-01T12:00:00.000Z', activates_at: '2026-06-01T12:10:00.000Z' }] },
        ...problems(ADMIN_WRITE_PROBLEMS),
      },
    },
  }, async (request, reply) => {
    const key = await rotateSigningKey(deps, { ring: deps.keys.ring, onCreated: auditRotation(adminContext(request), deps.clock) });
    return reply.code(201).send(key);
  });
}
