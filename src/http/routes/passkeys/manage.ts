/** Passkeys of the logged-in user: registration (options, verify), list, rename, remove. */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { RegistrationResponseJSON } from '@simplewebauthn/server';
import type { Deps } from '../../../deps.ts';
import { finishPasskeyRegistration, MAX_PASSKEYS_PER_USER, startPasskeyRegistration } from '../../../services/passkeys/registration.ts';
import { listOwnPasskeys, removeOwnPasskey, renameOwnPasskey } from '../../../services/passkeys/management.ts';
import { authOf, clientInfo, requireAuth } from '../../plugins/auth.ts';
import { AUTH_PROBLEMS, AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, RATE_LIMITED, URL_PROBLEMS, VALIDATION_PROBLEMS, problems } from '../../schemas.ts';
import { emptyBodyAsObject } from '../../empty-body.ts';
import { CreationOptionsSchema, PasskeyName, PasskeySchema, RegisteredPasskeySchema, RegistrationCredential } from './schemas.ts';
import { MAX_CREDENTIAL_ID_BYTES } from '../../../services/passkeys/relying-party.ts';

const security: Array<Record<string, string[]>> = [{ bearerAuth: [] }, { cookieAuth: [] }];
const tags = ['Passkeys'];

/** Routes under /api/v1/passkeys. */
export async function passkeyRoutes(app: FastifyInstance, { deps }: { deps: Deps }): Promise<void> {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const auth = requireAuth(deps);

  r.post('/api/v1/passkeys/registration/options', {
    onRequest: auth,
    preValidation: emptyBodyAsObject,
    schema: {
      tags,
      summary: 'Creation options for adding a passkey',
      description:
        'Pass `options` to `navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options) })` (or `startRegistration({ optionsJSON })` of @simplewebauthn/browser). ' +
        'The challenge is single use and lives 5 minutes. A discoverable credential (`residentKey: "required"`) and user verification are required; the user\'s passkeys are excluded. ' +
        '`user.id` is a random handle of this user, never the e-mail or username. When the user already has a second factor (TOTP, e-mailed codes or a passkey) the session must be `aal2` (403 `step_up_required`); its login must be at most 10 minutes old (403 `step_up_required`, also at verification). ' +
        `A user holds at most ${MAX_PASSKEYS_PER_USER} passkeys: 409 \`passkey_limit_reached\` at the limit (remove one first).`,
      security,
      body: Type.Object({}),
      response: { 200: CreationOptionsSchema, ...problems(AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, { 403: ['step_up_required'], 409: ['passkey_limit_reached'] }, VALIDATION_PROBLEMS, RATE_LIMITED) },
    },
  }, async (request, reply) => {
    const options = await startPasskeyRegistration(deps, authOf(request), clientInfo(request).ip ?? 'unknown');
    return reply.header('Cache-Control', 'no-store').send(options);
  });

  r.post('/api/v1/passkeys/registration/verify', {
    onRequest: auth,
    schema: {
      tags,
      summary: 'Register a passkey',
      description:
        'Send the browser\'s `RegistrationResponseJSON` as `credential`, and optionally a `name` (default "Passkey <date>"). Verified against the configured origin and RP ID, with user verification required; the challenge is spent whatever the outcome. ' +
        'The first factor of a user brings 10 `backup_codes` (shown once). Every added passkey is e-mailed to the user. ' +
        '400 `invalid_passkey`: bad attestation, wrong origin or RP ID, unknown, used, expired or another user\'s challenge, no user verification, or a credential id in the authenticator data that is not the reported `id` or is longer than ' +
        `${MAX_CREDENTIAL_ID_BYTES} bytes. 409 \`passkey_already_registered\`; 409 \`passkey_limit_reached\` when the user already holds ${MAX_PASSKEYS_PER_USER} passkeys.`,
      security,
      body: Type.Object({ credential: RegistrationCredential, name: Type.Optional(PasskeyName) }),
      response: {
        201: RegisteredPasskeySchema,
        ...problems(AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, { 400: ['invalid_passkey'], 403: ['step_up_required'], 409: ['passkey_already_registered', 'passkey_limit_reached'] }, VALIDATION_PROBLEMS),
      },
    },
  }, async (request, reply) => {
    const result = await finishPasskeyRegistration(deps, authOf(request), request.body.credential as RegistrationResponseJSON, request.body.name, clientInfo(request));
    return reply.code(201).header('Cache-Control', 'no-store').send(result);
  });

  r.get('/api/v1/passkeys', {
    onRequest: auth,
    schema: { tags, summary: 'The caller\'s passkeys', security, response: { 200: Type.Array(PasskeySchema), ...problems(AUTH_PROBLEMS) } },
  }, async (request) => listOwnPasskeys(deps, authOf(request)));

  r.patch('/api/v1/passkeys/:id', {
    onRequest: auth,
    schema: {
      tags,
      summary: 'Rename a passkey',
      security,
      params: Type.Object({ id: Type.String() }),
      body: Type.Object({ name: PasskeyName }),
      response: { 200: PasskeySchema, ...problems(AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, URL_PROBLEMS, { 404: ['passkey_not_found'] }, VALIDATION_PROBLEMS) },
    },
  }, async (request) => renameOwnPasskey(deps, authOf(request), request.params.id, request.body.name));

  r.delete('/api/v1/passkeys/:id', {
    onRequest: auth,
    schema: {
      tags,
      summary: 'Remove a passkey',
      description: 'Needs an `aal2` session whose login is at most 10 minutes old (403 `step_up_required`). A notice is e-mailed; when no second factor is left the backup codes are deleted too. 404 `passkey_not_found` for an id that is not one of the caller\'s passkeys.',
      security,
      params: Type.Object({ id: Type.String() }),
      response: { 204: Type.Null(), ...problems(AUTH_WRITE_PROBLEMS, BODY_PROBLEMS, URL_PROBLEMS, { 403: ['step_up_required'], 404: ['passkey_not_found'] }) },
    },
  }, async (request, reply) => {
    await removeOwnPasskey(deps, authOf(request), request.params.id, clientInfo(request));
    return reply.code(204).send(null);
  });
}
