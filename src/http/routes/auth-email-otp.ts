/** E-mailed one-time codes: turning them on and off, and mailing the code of a login challenge. */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.ts';
import { AppError } from '../../errors.ts';
import { confirmEmailOtp, disableEmailOtp, sendLoginEmailCode, startEmailOtpEnable } from '../../services/email-otp.ts';
import { authOf, bearerToken, clientInfo, requireAuth } from '../plugins/auth.ts';
import { AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, BackupCodesSchema, RATE_LIMITED, VALIDATION_PROBLEMS, problems } from '../schemas.ts';
import { emptyBodyAsObject } from '../empty-body.ts';

const security: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { cookieAuth: [] }];

const CodeSentSchema = Type.Object(
  { expires_in: Type.Integer({ description: 'Seconds the mailed code stays valid', examples: [600] }) },
  { description: 'A 6-digit code was e-mailed to the account\'s address' },
);

const EmailCode = Type.String({ minLength: 1, maxLength: 64, description: 'The 6-digit code from the e-mail', examples: ['042917'] });

/** Routes under /api/v1/auth-email-otp and POST /api/v1/auth-jwt/login/mfa/email-code. */
export async function authEmailOtpRoutes(app: FastifyInstance, { deps }: { deps: Deps }): Promise<void> {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const auth = requireAuth(deps);

  r.post('/api/v1/auth-email-otp/enable', {
    onRequest: auth,
    schema: {
      tags: ['Second factors'],
      summary: 'Ask to turn on e-mailed sign-in codes',
      description:
        'E-mails a 6-digit code (valid 10 minutes, 5 tries) to confirm with `POST /api/v1/auth-email-otp/confirm`. ' +
        'The e-mail address must be verified (422 `email_not_verified`). When TOTP is active the session must be `aal2`; its login must be at most 10 minutes old (403 `step_up_required`, also at confirmation). ' +
        'Sending is limited per user (a cooldown between codes and an hourly cap: 429 with `Retry-After`); a resend replaces the code but keeps its count of wrong tries. ' +
        'E-mail is a weaker channel than an authenticator app (NIST SP 800-63B-4 does not accept it for AAL2); operators can switch it off with `MFA_METHODS=totp` (400 `method_not_enabled`).',
      security,
      response: {
        202: CodeSentSchema,
        ...problems(AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, { 400: ['method_not_enabled'], 403: ['step_up_required'], 409: ['email_otp_already_enabled'], 422: ['email_not_verified'] }, RATE_LIMITED),
      },
    },
  }, async (request, reply) => {
    return reply.code(202).send(await startEmailOtpEnable(deps, authOf(request)));
  });

  r.post('/api/v1/auth-email-otp/confirm', {
    onRequest: auth,
    schema: {
      tags: ['Second factors'],
      summary: 'Turn on e-mailed sign-in codes with the mailed code',
      description:
        'From now on a login may be completed with an e-mailed code (`/login/mfa` with method `email`), and a notice is e-mailed. ' +
        '`backup_codes` holds 10 new codes when the user had none (their first factor), shown only this once; otherwise `[]`. ' +
        'A wrong code counts against the code even though the request fails; after 5 wrong tries the code is dead.',
      security,
      body: Type.Object({ code: EmailCode }),
      response: {
        200: BackupCodesSchema,
        ...problems(AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, { 400: ['method_not_enabled'], 401: ['invalid_security_code'], 403: ['step_up_required'], 409: ['email_otp_already_enabled'] }, VALIDATION_PROBLEMS),
      },
    },
  }, async (request, reply) => {
    const codes = await confirmEmailOtp(deps, authOf(request), request.body.code, clientInfo(request));
    return reply.header('Cache-Control', 'no-store').send({ backup_codes: codes });
  });

  r.delete('/api/v1/auth-email-otp', {
    onRequest: auth,
    schema: {
      tags: ['Second factors'],
      summary: 'Turn off e-mailed sign-in codes',
      description:
        'Needs an `aal2` session whose login is at most 10 minutes old (403 `step_up_required`). Codes already mailed stop working and a notice is e-mailed. When no other second factor is left, the backup codes are deleted too. ' +
        '409 `email_otp_not_enabled` when they are not on.',
      security,
      response: { 204: Type.Null(), ...problems(AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, { 403: ['step_up_required'], 409: ['email_otp_not_enabled'] }) },
    },
  }, async (request, reply) => {
    await disableEmailOtp(deps, authOf(request), clientInfo(request));
    return reply.code(204).send(null);
  });

  r.post('/api/v1/auth-jwt/login/mfa/email-code', {
    preValidation: emptyBodyAsObject,
    schema: {
      tags: ['Login and tokens'],
      summary: 'E-mail the code for a pending second-factor login',
      description:
        'Send the `mfa_token` from the 403 `mfa_required` answer (in the body or as the Bearer token); then complete with `POST /api/v1/auth-jwt/login/mfa`, method `email`. ' +
        'Does not use one of the challenge\'s 5 tries. A resend replaces the code but keeps its count of wrong tries. ' +
        '400 `method_not_enabled` when the account has no e-mailed codes (or the operator switched them off); 401 `invalid_token` for an expired, used or over-tried challenge; 429 with `Retry-After` within the cooldown (60 s) or over the hourly cap (5).',
      body: Type.Object({ mfa_token: Type.Optional(Type.String({ maxLength: 4096 })) }),
      response: {
        202: CodeSentSchema,
        ...problems(BODY_PROBLEMS, { 400: ['method_not_enabled'], 401: ['invalid_token'], 403: ['account_inactive'] }, VALIDATION_PROBLEMS, RATE_LIMITED),
      },
    },
  }, async (request, reply) => {
    const mfaToken = request.body.mfa_token ?? bearerToken(request);
    if (!mfaToken) throw new AppError('invalid_token', { detail: 'Send the mfa_token from the login answer.' });
    return reply.code(202).send(await sendLoginEmailCode(deps, mfaToken, clientInfo(request).ip ?? 'unknown'));
  });
}

