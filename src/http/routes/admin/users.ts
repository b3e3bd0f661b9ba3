/** /api/v1/admin/users: search, create, read, update, erase, end sessions, reset factors, unlock. */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Deps } from '../../../deps.ts';
import { createUserAsAdmin, getUserForAdmin, searchUsers } from '../../../services/admin/users.ts';
import { deleteUserAsAdmin, resetMfaAsAdmin, revokeUserSessionsAsAdmin, unlockUserAsAdmin, updateUserAsAdmin } from '../../../services/admin/user-changes.ts';
import { SIGN_UP_FIELDS, TotpEnrollmentSchema, URL_PROBLEMS, VALIDATION_PROBLEMS, problems, type ProblemCodes } from '../../schemas.ts';
import { adminContext } from './guard.ts';
import { ADMIN_PROBLEMS, ADMIN_WRITE_PROBLEMS, AdminSessionSchema, AdminUserSchema, Cursor, Limit, NextCursor, Roles, UserIdParams, adminSecurity } from './schemas.ts';

const tags = ['Administration'];
const security = adminSecurity;

export async function adminUserRoutes(app: FastifyInstance, { deps }: { deps: Deps }): Promise<void> {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.get('/api/v1/admin/users', {
    schema: {
      tags, security,
      summary: 'Search users',
      description:
        '`query` matches the start of the username or the e-mail address, case-insensitively (empty: every user). ' +
        'Username matches come first (by username), then e-mail-only matches (by address). Keyset pagination: pass `next_cursor` as `cursor`; ' +
        'each page is an index range scan, as fast at a million users as at ten, and users created meanwhile never make a page repeat or skip one.',
      querystring: Type.Object({ query: Type.Optional(Type.String({ maxLength: 254, examples: ['ali'] })), limit: Limit, cursor: Cursor }),
      response: { 200: Type.Object({ users: Type.Array(AdminUserSchema), next_cursor: NextCursor }), ...problems(ADMIN_PROBLEMS, URL_PROBLEMS, VALIDATION_PROBLEMS) },
    },
  }, async (request) => searchUsers(deps, request.query));

  r.post('/api/v1/admin/users', {
    schema: {
      tags, security,
      summary: 'Create a user',
      description: 'The sign-up body plus `roles` and `email_verified`. With `email_verified: true` no verification mail is sent and the account is active at once. Same password policy and uniqueness rules as sign-up.',
      body: Type.Object({
        ...SIGN_UP_FIELDS,
        roles: Type.Optional(Roles),
        email_verified: Type.Optional(Type.Boolean()),
      }),
      response: { 201: Type.Intersect([AdminUserSchema, Type.Object({ totp: Type.Optional(TotpEnrollmentSchema) })]), ...problems(ADMIN_WRITE_PROBLEMS, { 404: ['user_not_found'], 409: ['username_taken', 'email_taken'] }, VALIDATION_PROBLEMS) },
    },
  }, async (request, reply) => {
    const { user, totp } = await createUserAsAdmin(deps, request.body, adminContext(request));
    return reply.code(201).send({ ...user, ...(totp ? { totp } : {}) });
  });

  r.get('/api/v1/admin/users/:uuid', {
    schema: {
      tags, security,
      summary: 'Read a user, with live sessions (the newest MAX_SESSIONS_PER_USER)',
      params: UserIdParams,
      response: { 200: Type.Intersect([AdminUserSchema, Type.Object({ sessions: Type.Array(AdminSessionSchema) })]), ...problems(ADMIN_PROBLEMS, URL_PROBLEMS, { 404: ['user_not_found'] }) },
    },
  }, async (request) => getUserForAdmin(deps, request.params.uuid.toLowerCase()));

  r.patch('/api/v1/admin/users/:uuid', {
    schema: {
      tags, security,
      summary: 'Change roles, active, verified',
      description:
        'Deactivating (`is_active: false`) revokes every session at once: live access tokens are refused from the next request. ' +
        'A role change reaches the user\'s access tokens at their next token (login or refresh); the admin API itself checks stored roles, so removing `admin` closes it at once, and introspection answers only roles the user still holds. ' +
        'Without `ADMIN_API_KEY`, taking the admin role or activity from the last active admin is refused (409 `last_admin`). ' +
        'Vouching for the address (`email_verified: true`) also activates an account that was inactive only until verification (`REQUIRE_EMAIL_VERIFICATION`).',
      params: UserIdParams,
      body: Type.Object({ is_active: Type.Optional(Type.Boolean()), roles: Type.Optional(Roles), email_verified: Type.Optional(Type.Boolean()) }, { examples: [{ is_active: false }] }),
      response: { 200: Type.Intersect([AdminUserSchema, Type.Object({ sessions: Type.Array(AdminSessionSchema) })]), ...problems(ADMIN_WRITE_PROBLEMS, URL_PROBLEMS, { 404: ['user_not_found'], 409: ['last_admin'] }, VALIDATION_PROBLEMS) },
    },
  }, async (request) => {
    await updateUserAsAdmin(deps, request.params.uuid, request.body, adminContext(request));
    return getUserForAdmin(deps, request.params.uuid.toLowerCase());
  });

  r.delete('/api/v1/admin/users/:uuid', {
    schema: {
      tags, security,
      summary: 'Erase a user',
      description: 'Deletes the user with their factors, sessions, backup and e-mailed codes, link tokens and every mail still addressed to them. Audit entries keep the uuid. ' +
        'Each live session is recorded as revoked (`session.revoked`, reason `user_deleted`), and the OpenID provider sessions the user signed in to end with back-channel logouts. ' +
        'Without `ADMIN_API_KEY`, the last active admin cannot be deleted (409 `last_admin`).',
      params: UserIdParams,
      response: { 204: Type.Null({ description: 'Erased' }), ...problems(ADMIN_WRITE_PROBLEMS, URL_PROBLEMS, { 404: ['user_not_found'], 409: ['last_admin'] }) },
    },
  }, async (request, reply) => {
    await deleteUserAsAdmin(deps, request.params.uuid, adminContext(request));
    return reply.code(204).send(null);
  });

  // The three actions on a user: same shape, 204 on success.
  const actions: Array<{ method: 'DELETE' | 'POST'; url: string; run: (deps: Deps, userId: string, ctx: ReturnType<typeof adminContext>) => Promise<unknown>; summary: string; description: string; problems?: ProblemCodes }> = [
    {
      method: 'DELETE' as const, url: '/api/v1/admin/users/:uuid/sessions', run: revokeUserSessionsAsAdmin,
      summary: 'End every session of a user', description: 'Every session revoked; their access tokens are refused from the next request.',
    },
    {
      method: 'DELETE' as const, url: '/api/v1/admin/users/:uuid/mfa', run: resetMfaAsAdmin,
      summary: 'Remove every second factor (lost device)',
      description: 'Removes TOTP, e-mailed codes, passkeys and backup codes and ends open MFA challenges; the user is told by e-mail. Sessions stay: end them with `DELETE /sessions` when the device may be in other hands.',
    },
    {
      method: 'POST' as const, url: '/api/v1/admin/users/:uuid/unlock', run: unlockUserAsAdmin,
      summary: 'Clear login locks',
      description: 'Clears the failure counts and locks of the account under its username, its e-mail address and its id. The per-IP counts stay. With `REDIS_URL`, 503 `service_unavailable` when Redis cannot be reached or written: nothing is cleared or recorded; try again.',
      problems: { 503: ['service_unavailable'] },
    },
  ];
  for (const action of actions) {
    r.route({
      method: action.method,
      url: action.url,
      schema: { tags, security, summary: action.summary, description: action.description, params: UserIdParams, response: { 204: Type.Null({ description: 'Done' }), ...problems(ADMIN_WRITE_PROBLEMS, URL_PROBLEMS, { 404: ['user_not_found'] }, action.problems ?? {}) } },
      handler: async (request, reply) => {
        await action.run(deps, request.params.uuid, adminContext(request));
        return reply.code(204).send(null);
      },
    });
  }
}
