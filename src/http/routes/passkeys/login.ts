/** Passkey sign-in: passwordless (options + login) and the second step's options (`/login/mfa` takes the answer). */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { AuthenticationResponseJSON } from '@simplewebauthn/server';
import type { Deps } from '../../../deps.ts';
import { AppError } from '../../../errors.ts';
import { loginWithPasskey, mfaPasskeyOptions, passkeyLoginOptions } from '../../../services/passkeys/login.ts';
import { setTokenCookies } from '../../cookies.ts';
import { followLoginInBrowser } from '../../browser-session.ts';
import { bearerToken, clientInfo } from '../../plugins/auth.ts';
import { BODY_PROBLEMS, RATE_LIMITED, TokenPairSchema, VALIDATION_PROBLEMS, problems, tokenResponse } from '../../schemas.ts';
import { emptyBodyAsObject } from '../../empty-body.ts';
import { AuthenticationCredential, RequestOptionsSchema } from './schemas.ts';

const tags = ['Login and tokens'];

/** Routes under /api/v1/auth-jwt/login/passkey and /login/mfa/passkey. */
export async function passkeyLoginRoutes(app: FastifyInstance, { deps }: { deps: Deps }): Promise<void> {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.post('/api/v1/auth-jwt/login/passkey/options', {
    preValidation: emptyBodyAsObject,
    schema: {
      tags,
      summary: 'Request options for a passwordless passkey login',
      description:
        'Without `username`, `allowCredentials` is empty: the browser offers the user\'s discoverable passkeys (also as autofill with `mediation: "conditional"`). ' +
        'With a `username` (or e-mail) it lists that user\'s passkeys; a name without passkeys, known or not, gets an answer of the same shape. ' +
        'Send `challenge_token` back with the answer to `/login/passkey`; it is single use and lives 5 minutes.',
      body: Type.Object({ username: Type.Optional(Type.String({ maxLength: 254, examples: ['alice'] })) }),
      response: {
        200: Type.Object({ challenge_token: Type.String({ examples: ['d3Vx0c1m2VxkXz1Wm4d9cQ7o2qj1c8n0a5b6e7f8g9h'] }), options: RequestOptionsSchema }),
        ...problems(BODY_PROBLEMS, VALIDATION_PROBLEMS, RATE_LIMITED),
      },
    },
  }, async (request, reply) => {
    const answer = await passkeyLoginOptions(deps, request.body.username, clientInfo(request).ip ?? 'unknown');
    return reply.header('Cache-Control', 'no-store').send(answer);
  });

  r.post('/api/v1/auth-jwt/login/passkey', {
    schema: {
      tags,
      summary: 'Log in with a passkey (passwordless)',
      description:
        'Send the `challenge_token` from `/login/passkey/options` and the browser\'s `AuthenticationResponseJSON` as `credential`. Answers tokens (and cookies) like a password login; ' +
        'the session is `aal2` with `amr` `["hwk" | "swk", "user", "mfa"]` (`swk` for a passkey that may be synced). ' +
        '401 `invalid_passkey` for anything wrong (unknown passkey, used or expired challenge, wrong origin or RP ID, no user verification, a signature counter that went back); failures count towards the account lockout and the per-IP limit.',
      body: Type.Object({ challenge_token: Type.String({ minLength: 1, maxLength: 128 }), credential: AuthenticationCredential }),
      response: { 200: tokenResponse(TokenPairSchema), ...problems(BODY_PROBLEMS, { 401: ['invalid_passkey'], 403: ['account_inactive', 'email_not_verified'] }, VALIDATION_PROBLEMS, RATE_LIMITED) },
    },
  }, async (request, reply) => {
    const tokens = await loginWithPasskey(deps, { challenge_token: request.body.challenge_token, credential: request.body.credential as AuthenticationResponseJSON }, clientInfo(request));
    await followLoginInBrowser(deps, request, tokens);
    setTokenCookies(reply, deps, tokens);
    return reply.header('Cache-Control', 'no-store').send(tokens);
  });

  r.post('/api/v1/auth-jwt/login/mfa/passkey/options', {
    preValidation: emptyBodyAsObject,
    schema: {
      tags,
      summary: 'Request options for a passkey as the second step',
      description: 'For a live MFA challenge (`mfa_token` from the 403 `mfa_required`, or as Bearer): request options limited to that user\'s passkeys. Then `POST /login/mfa` with `method: "passkey"` and the `credential`. 400 `method_not_enabled` when the user has no passkey.',
      body: Type.Object({ mfa_token: Type.Optional(Type.String({ maxLength: 4096 })) }),
      response: { 200: RequestOptionsSchema, ...problems(BODY_PROBLEMS, { 400: ['method_not_enabled'], 401: ['invalid_token'] }, VALIDATION_PROBLEMS, RATE_LIMITED) },
    },
  }, async (request, reply) => {
    const mfaToken = request.body.mfa_token ?? bearerToken(request);
    if (!mfaToken) throw new AppError('invalid_token', { detail: 'Send the mfa_token from the login answer.' });
    const options = await mfaPasskeyOptions(deps, mfaToken, clientInfo(request).ip ?? 'unknown');
    return reply.header('Cache-Control', 'no-store').send(options);
  });
}
