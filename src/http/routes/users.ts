/** Sign-up and public profiles. */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.ts';
import { AppError } from '../../errors.ts';
import { findUserByUsername } from '../../db/repositories/users.ts';
import { privateUser, publicUser, registerUser } from '../../services/register-user.ts';
import { clientInfo } from '../plugins/auth.ts';
import { BODY_PROBLEMS, PrivateUser, problems, PublicUser, RATE_LIMITED, SIGN_UP_FIELDS, TotpEnrollmentSchema, URL_PROBLEMS, VALIDATION_PROBLEMS } from '../schemas.ts';

export async function userRoutes(app: FastifyInstance, { deps }: { deps: Deps }): Promise<void> {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.post('/api/v1/user', {
    schema: {
      tags: ['Users'],
      summary: 'Create a user',
      description: 'Creates an account and queues the verification e-mail. With `mfa: "totp"` the answer carries a pending TOTP secret, activated by the first login with a code.',
      body: Type.Object(SIGN_UP_FIELDS),
      response: {
        201: Type.Intersect([PrivateUser, Type.Object({ totp: Type.Optional(TotpEnrollmentSchema) })]),
        ...problems(BODY_PROBLEMS, VALIDATION_PROBLEMS, { 409: ['username_taken', 'email_taken'] }, RATE_LIMITED),
      },
    },
  }, async (request, reply) => {
    // With no address at all (its socket gone before it was accepted), counted as 'unknown', as login does.
    const client = clientInfo(request);
    await deps.limiter.consume('signup:ip', client.ip ?? 'unknown');
    const { user, totp } = await registerUser(deps, request.body, { actor: { kind: 'user' }, ...client });
    return reply.code(201).send({ ...privateUser(user), ...(totp ? { totp } : {}) });
  });

  r.get('/api/v1/user/:username', {
    schema: {
      tags: ['Users'],
      summary: 'Public profile of a user',
      params: Type.Object({ username: Type.String() }),
      response: { 200: PublicUser, ...problems(URL_PROBLEMS, { 404: ['user_not_found'] }) },
    },
  }, async (request) => {
    const user = await findUserByUsername(deps.db, request.params.username);
    if (!user) throw new AppError('user_not_found', { detail: 'No such user.' });
    return publicUser(user);
  });
}
