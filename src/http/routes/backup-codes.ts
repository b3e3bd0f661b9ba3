/** Backup codes: a new set (aal2) and the count of unused ones. */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.ts';
import { regenerateBackupCodes, remainingBackupCodes } from '../../services/backup-codes.ts';
import { authOf, clientInfo, requireAuth } from '../plugins/auth.ts';
import { AUTH_PROBLEMS, AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, BackupCodesSchema, problems } from '../schemas.ts';

const security: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { cookieAuth: [] }];

/** Routes under /api/v1/backup-codes. */
export async function backupCodesRoutes(app: FastifyInstance, { deps }: { deps: Deps }): Promise<void> {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const auth = requireAuth(deps);

  r.post('/api/v1/backup-codes', {
    onRequest: auth,
    schema: {
      tags: ['Second factors'],
      summary: 'Create a new set of backup codes',
      description:
        'Returns 10 new single-use codes (60 random bits each), shown only this once; every earlier code stops working and a notice is e-mailed. ' +
        'Needs an `aal2` session whose login is at most 10 minutes old (403 `step_up_required`: the codes pass as a second factor) and an active second factor (409 `mfa_not_enabled`, checked first since without a factor there is no way to step up). ' +
        'A code works at login as `backup_code` (one step) or with method `backup_code` at `/login/mfa`.',
      security,
      response: { 201: BackupCodesSchema, ...problems(AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, { 403: ['step_up_required'], 409: ['mfa_not_enabled'] }) },
    },
  }, async (request, reply) => {
    const codes = await regenerateBackupCodes(deps, authOf(request), clientInfo(request));
    return reply.code(201).header('Cache-Control', 'no-store').send({ backup_codes: codes });
  });

  r.get('/api/v1/backup-codes', {
    onRequest: auth,
    schema: {
      tags: ['Second factors'],
      summary: 'How many unused backup codes are left',
      security,
      response: { 200: Type.Object({ remaining: Type.Integer({ minimum: 0, examples: [9] }) }), ...problems(AUTH_PROBLEMS) },
    },
  }, async (request, reply) => {
    const remaining = await remainingBackupCodes(deps, authOf(request).userId);
    return reply.header('Cache-Control', 'no-store').send({ remaining });
  });
}
