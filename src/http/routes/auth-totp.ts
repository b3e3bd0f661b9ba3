/**
 * TOTP enrolment by password (`/qrcode`), answered as PNG, SVG or JSON by content negotiation, and
 * TOTP management for logged-in users: enroll, confirm, remove.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import Negotiator from 'negotiator';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.ts';
import { AppError } from '../../errors.ts';
import { checkLoginPassword } from '../../services/password-check.ts';
import { hasActiveFactor, loadFactorState } from '../../services/second-factors.ts';
import { qrSvg, startTotpEnrollment, type TotpEnrollment } from '../../services/totp-enrollment.ts';
import { confirmTotp, enrollTotp, removeTotp } from '../../services/totp-management.ts';
import { authOf, clientInfo, requireAuth } from '../plugins/auth.ts';
import { AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, BackupCodesSchema, Password, RATE_LIMITED, SecurityCode, TotpEnrollmentSchema, VALIDATION_PROBLEMS, problems } from '../schemas.ts';
import { emptyBodyAsObject } from '../empty-body.ts';
import { assertMethodOffered } from '../../services/factor-changes.ts';

const security: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { cookieAuth: [] }];

const ENROLLMENT_TYPES = ['image/png', 'application/json', 'image/svg+xml'];

/** The response type the client asked for (PNG when it does not say), or 406. */
export function negotiateEnrollmentType(request: FastifyRequest): string {
  if (!request.headers.accept) return 'image/png';
  const type = new Negotiator({ headers: { accept: request.headers.accept } }).mediaType(ENROLLMENT_TYPES);
  if (!type) throw new AppError('not_acceptable', { detail: `Accept one of ${ENROLLMENT_TYPES.join(', ')}.` });
  return type;
}

/** Sends an enrolment in the negotiated form with status 201. */
export async function sendEnrollment(reply: FastifyReply, type: string, enrollment: TotpEnrollment): Promise<FastifyReply> {
  // The secret is in every form of this answer: nothing may cache it.
  reply.code(201).header('Cache-Control', 'no-store').header('Vary', 'Accept');
  if (type === 'application/json') return reply.type('application/json').send(enrollment);
  if (type === 'image/svg+xml') return reply.type('image/svg+xml').send(await qrSvg(enrollment.otpauth_uri));
  return reply.type('image/png').send(Buffer.from(enrollment.qr_code_png_base64, 'base64'));
}

export const enrollmentResponse = {
  content: {
    'image/png': { schema: Type.String({ format: 'binary', description: 'QR code of the otpauth URI' }) },
    'image/svg+xml': { schema: Type.String({ description: 'QR code as SVG' }) },
    'application/json': { schema: TotpEnrollmentSchema },
  },
};

export async function authTotpRoutes(app: FastifyInstance, { deps }: { deps: Deps }): Promise<void> {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.post('/api/v1/auth-totp/qrcode', {
    schema: {
      tags: ['Second factors'],
      summary: 'Start TOTP enrolment with username and password',
      description: 'Returns a fresh pending secret as a QR code (PNG by default; `Accept: image/svg+xml` or `application/json` for the other forms). Only while TOTP is not active; the first login with a `security_code` activates it. Every call makes a new pending secret and voids the previous one: fetch it once, in the form you need (JSON carries the secret, the otpauth URI and the PNG).',
      body: Type.Object({ username: Type.String({ minLength: 1, maxLength: 254, examples: ['alice'] }), password: Password }),
      response: {
        201: enrollmentResponse,
        ...problems(BODY_PROBLEMS, { 400: ['method_not_enabled'], 401: ['invalid_credentials'], 403: ['account_inactive'], 406: ['not_acceptable'], 409: ['totp_already_enabled'] }, VALIDATION_PROBLEMS, RATE_LIMITED),
      },
    },
  }, async (request, reply) => {
    assertMethodOffered(deps, 'totp');
    const type = negotiateEnrollmentType(request);
    const { user, attempt } = await checkLoginPassword(deps, request.body.username, request.body.password, clientInfo(request));
    // The password was right: its point goes back, but the account's count is not cleared (no login happened).
    await attempt.passed();
    if (!user.is_active) throw new AppError('account_inactive');
    // A password alone never binds an authenticator to an account that has any factor — also one
    // MFA_METHODS no longer offers (e-mailed codes switched off): that account enrols with aal2.
    if (hasActiveFactor(await loadFactorState(deps, user.id))) {
      throw new AppError('totp_already_enabled', { detail: 'This account already has a second factor. Log in with it and add TOTP from your account.' });
    }
    const enrollment = await deps.db.transaction((tx) => startTotpEnrollment(deps, tx, user, true));
    return sendEnrollment(reply, type, enrollment);
  });

  const auth = requireAuth(deps);

  r.post('/api/v1/auth-totp/enroll', {
    onRequest: auth,
    schema: {
      tags: ['Second factors'],
      summary: 'Start (or restart) TOTP enrolment for the logged-in user',
      description:
        'Returns a fresh pending secret in the same three forms as `/qrcode` (PNG by default; `Accept: image/svg+xml` or `application/json`). ' +
        'When the user already has an active second factor (TOTP or e-mailed codes) the session must be `aal2`, else 403 `step_up_required`. ' +
        'Any factor is bound only from a session whose login is at most 10 minutes old (else 403 `step_up_required`: log in again), checked here and at confirmation. ' +
        'An active TOTP secret stays in force until the new one is confirmed with `POST /api/v1/auth-totp/confirm`; enrolling again replaces only the pending secret. ' +
        '400 `method_not_enabled` when the operator does not offer TOTP (`MFA_METHODS`).',
      security,
      response: { 201: enrollmentResponse, ...problems(AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, { 400: ['method_not_enabled'], 403: ['step_up_required'], 406: ['not_acceptable'] }) },
    },
  }, async (request, reply) => {
    const type = negotiateEnrollmentType(request);
    const enrollment = await enrollTotp(deps, authOf(request));
    return sendEnrollment(reply, type, enrollment);
  });

  r.post('/api/v1/auth-totp/confirm', {
    onRequest: auth,
    schema: {
      tags: ['Second factors'],
      summary: 'Confirm the pending TOTP secret with a code from it',
      description:
        'The pending secret becomes the active one (replacing an earlier active secret), and a notice is e-mailed. ' +
        '`backup_codes` holds 10 new codes, shown only this once; codes the user held before (from another factor, or an earlier TOTP secret) stop working. ' +
        'Needs `aal2` when another factor is active, and a login at most 10 minutes old (403 `step_up_required`). 409 `totp_not_pending` when nothing is pending.',
      security,
      body: Type.Object({ security_code: SecurityCode }),
      response: {
        200: BackupCodesSchema,
        ...problems(AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, { 400: ['method_not_enabled'], 401: ['invalid_security_code'], 403: ['step_up_required'], 409: ['totp_not_pending'] }, VALIDATION_PROBLEMS),
      },
    },
  }, async (request, reply) => {
    const codes = await confirmTotp(deps, authOf(request), request.body.security_code, clientInfo(request));
    return reply.header('Cache-Control', 'no-store').send({ backup_codes: codes });
  });

  r.delete('/api/v1/auth-totp', {
    onRequest: auth,
    preValidation: emptyBodyAsObject,
    schema: {
      tags: ['Second factors'],
      summary: 'Turn TOTP off',
      description:
        'Needs an `aal2` session and, once more, a current TOTP code (`security_code`, not one already used) or the password. ' +
        'Removes the active and any pending secret and e-mails a notice. When no other second factor is left, the backup codes are deleted too: ' +
        'they are a fallback for a factor, and a forgotten old set must not come back to life when a factor is turned on again. ' +
        'Wrong proofs count towards the account lockout. 409 `totp_not_enabled` when TOTP is not active.',
      security,
      body: Type.Object({ security_code: Type.Optional(SecurityCode), password: Type.Optional(Password) }),
      response: {
        204: Type.Null(),
        ...problems(AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, { 401: ['invalid_security_code', 'invalid_credentials'], 403: ['step_up_required'], 409: ['totp_not_enabled'] }, VALIDATION_PROBLEMS, RATE_LIMITED),
      },
    },
  }, async (request, reply) => {
    await removeTotp(deps, authOf(request), request.body, clientInfo(request));
    return reply.code(204).send(null);
  });
}

