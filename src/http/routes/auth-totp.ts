/** TOTP enrolment by password (`/qrcode`), answered as PNG, SVG or JSON by content negotiation. */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import Negotiator from 'negotiator';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.ts';
import { AppError } from '../../errors.ts';
import { findUserByLogin } from '../../db/repositories/users.ts';
import { qrSvg, startTotpEnrollment, type TotpEnrollment } from '../../services/totp-enrollment.ts';
import { clientInfo } from '../plugins/auth.ts';
import { Password, TotpEnrollmentSchema, problems } from '../schemas.ts';

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
      description: 'Returns a fresh pending secret as a QR code (PNG by default; `Accept: image/svg+xml` or `application/json` for the other forms). Only while TOTP is not active; the first login with a `security_code` activates it.',
      body: Type.Object({ username: Type.String({ minLength: 1, maxLength: 254, examples: ['alice'] }), password: Password }),
      response: { 201: enrollmentResponse, ...problems(401, 406, 409, 422, 429) },
    },
  }, async (request, reply) => {
    const type = negotiateEnrollmentType(request);
    const login = request.body.username.trim();
    const user = await findUserByLogin(deps.db, login);
    const subject = { account: user ? user.id : `unknown:${login.toLowerCase()}`, ip: clientInfo(request).ip ?? 'unknown' };
    await deps.limiter.assertAllowed(subject);
    const ok = user ? await deps.passwords.verify(user.password_hash, request.body.password) : await deps.passwords.verifyDummy(request.body.password);
    if (!user || !ok) {
      await deps.limiter.recordFailure(subject);
      throw new AppError('invalid_credentials', { detail: 'Invalid username or password.' });
    }
    if (!user.is_active) throw new AppError('account_inactive');
    const enrollment = await deps.db.transaction((tx) => startTotpEnrollment(deps, tx, user, true));
    return sendEnrollment(reply, type, enrollment);
  });
}
