/** E-mail verification and passwords: verify, resend, forgot, reset, change. */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.ts';
import { settleDeferred } from '../../services/deferred.ts';
import { VERIFY_EMAIL_PATH, resendVerification, verifyEmail } from '../../services/email-verification.ts';
import { changePassword, requestPasswordReset, resetPassword } from '../../services/passwords.ts';
import { authOf, clientInfo, requireAuth } from '../plugins/auth.ts';
import { AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, Email, Password, RATE_LIMITED, RESPONSE_HEADERS, URL_PROBLEMS, VALIDATION_PROBLEMS, problems, withHeaders } from '../schemas.ts';

/** The page of the verification link: a button that posts the token (link scanners only GET). */
const VERIFY_PAGE = '/verify-email';

const security: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { cookieAuth: [] }];

/** A link token as sent back to us: bounded, otherwise opaque (an unknown one is simply invalid). */
const LinkToken = Type.String({ minLength: 1, maxLength: 256, description: 'The token from the e-mailed link', examples: ['q3J8n0bXc2mU6yQk0C5tGdVf1wHs9pLzR4aE7iYoN2M'] });

const EmailVerified = Type.Object({ email_verified: Type.Literal(true) }, { description: 'The address is verified (and, when verification is required, the account active)' });

const Accepted = Type.Object(
  { detail: Type.String({ examples: ['If this address needs it, a message is on its way.'] }) },
  { description: 'Accepted. The same answer whether or not the address belongs to an account.' },
);

export async function accountRoutes(app: FastifyInstance, { deps }: { deps: Deps }): Promise<void> {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const auth = requireAuth(deps);
  // Work started after a 202 (forgot, resend) finishes before the app closes and the database goes.
  app.addHook('onClose', async () => settleDeferred(deps));

  r.post(VERIFY_EMAIL_PATH, {
    schema: {
      tags: ['Users'],
      summary: 'Verify an e-mail address',
      description: 'With the token of the link mailed at sign-up (or by `/email/verify/resend`). Single use; valid 24 hours (EMAIL_VERIFICATION_TTL). With REQUIRE_EMAIL_VERIFICATION=true this also activates the account; when the user chose `mfa: "email"` at sign-up, e-mailed codes become the second factor.',
      body: Type.Object({ token: LinkToken }),
      response: { 200: EmailVerified, ...problems(BODY_PROBLEMS, { 400: ['invalid_or_expired_token'] }, VALIDATION_PROBLEMS) },
    },
  }, async (request, reply) => {
    reply.header('Cache-Control', 'no-store');
    return verifyEmail(deps, request.body.token, clientInfo(request));
  });

  r.get(VERIFY_EMAIL_PATH, {
    schema: {
      tags: ['Users'],
      summary: 'The mailed verification link: on to the confirmation page',
      description:
        'Never spends the token. Mail scanners and link previews fetch links (GET, HEAD) before the person does; a GET that verified would ' +
        'let them use up the link. Every GET answers 303 to `/verify-email?token=…`, a page whose button sends the token to ' +
        '`POST /api/v1/user/email/verify` and then shows `/verify-email?status=ok` or `?status=invalid`. API clients POST the token themselves.',
      querystring: Type.Object({ token: Type.Optional(Type.String({ maxLength: 256 })) }),
      // No body: `Type.Null` keeps the document from declaring content for the 303, and redirect() sends none.
      response: { 303: withHeaders(Type.Null({ description: 'To the confirmation page (the token is not spent)' }), RESPONSE_HEADERS.location), ...problems(URL_PROBLEMS, VALIDATION_PROBLEMS) },
    },
  }, async (request, reply) => {
    // The URLs carry a one-time token: never cache them (helmet already sends Referrer-Policy: no-referrer).
    const token = request.query.token ?? '';
    const location = token ? `${VERIFY_PAGE}?token=${encodeURIComponent(token)}` : `${VERIFY_PAGE}?status=invalid`;
    return reply.header('Cache-Control', 'no-store').redirect(location, 303);
  });

  r.post(`${VERIFY_EMAIL_PATH}/resend`, {
    schema: {
      tags: ['Users'],
      summary: 'Send the verification e-mail again',
      description: 'Always 202 with the same body: whether the address has an account, or is verified already, is not revealed. A new link is mailed only to an unverified address of an account. Limited per IP and per address (429).',
      body: Type.Object({ email: Email }),
      response: { 202: Accepted, ...problems(BODY_PROBLEMS, VALIDATION_PROBLEMS, RATE_LIMITED) },
    },
  }, async (request, reply) => {
    await resendVerification(deps, request.body.email, clientInfo(request).ip ?? 'unknown');
    return reply.code(202).send({ detail: 'If this address belongs to an account that still needs to verify it, a new link is on its way.' });
  });

  r.post('/api/v1/user/password/forgot', {
    schema: {
      tags: ['Users'],
      summary: 'Ask for a password reset link',
      description: 'Always 202 with the same body, headers and timing, known address or not. An active account with this address is mailed a single-use link to `/reset-password?token=…`, valid 30 minutes (PASSWORD_RESET_TTL); a new link voids earlier ones. Limited per IP and per address (429).',
      body: Type.Object({ email: Email }),
      response: { 202: Accepted, ...problems(BODY_PROBLEMS, VALIDATION_PROBLEMS, RATE_LIMITED) },
    },
  }, async (request, reply) => {
    await requestPasswordReset(deps, request.body.email, clientInfo(request).ip ?? 'unknown');
    return reply.code(202).send({ detail: 'If an account uses this address, a link to reset its password is on its way.' });
  });

  r.post('/api/v1/user/password/reset', {
    schema: {
      tags: ['Users'],
      summary: 'Set a new password with a reset link',
      description: 'With the token of the mailed reset link. Single use. Every session of the user is revoked and the account\'s failed-login lock cleared; second factors stay, so the next login still needs one. A refused password (422) leaves the link usable.',
      body: Type.Object({ token: LinkToken, password1: Password, password2: Password }),
      response: { 204: Type.Null(), ...problems(BODY_PROBLEMS, { 400: ['invalid_or_expired_token'] }, VALIDATION_PROBLEMS) },
    },
  }, async (request, reply) => {
    await resetPassword(deps, request.body, clientInfo(request));
    return reply.code(204).send(null);
  });

  r.post('/api/v1/user/password/change', {
    onRequest: auth,
    schema: {
      tags: ['Users'],
      summary: 'Change the password',
      description: 'Needs the current password; a wrong one counts as a failed login (429 once the account is locked). Every other session of the user is revoked; this one stays.',
      security,
      body: Type.Object({ current_password: Password, password1: Password, password2: Password }),
      response: { 204: Type.Null(), ...problems(AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, { 401: ['invalid_credentials'] }, VALIDATION_PROBLEMS, RATE_LIMITED) },
    },
  }, async (request, reply) => {
    await changePassword(deps, authOf(request), request.body, clientInfo(request));
    return reply.code(204).send(null);
  });
}
