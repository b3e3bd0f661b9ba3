/** TypeBox schemas of the passkey endpoints: WebAuthn Level 3 JSON forms (binary fields base64url). */
import { Type } from 'typebox';
import { DateTime, Uuid } from '../../schemas.ts';
import { MAX_CREDENTIAL_ID_CHARS } from '../../../services/passkeys/relying-party.ts';

const B64url = (maxLength: number, example: string) => Type.String({ pattern: '^[A-Za-z0-9_-]*$', maxLength, examples: [example] });

/** A credential id (base64url): long enough for any id WebAuthn allows, so every passkey stored can sign in. */
const CredentialId = B64url(MAX_CREDENTIAL_ID_CHARS, 'hK3nQ4oVb2cLqW0tY9sZ1A');

const Extensions = Type.Optional(Type.Record(Type.String(), Type.Unknown()));

/** RegistrationResponseJSON, as `navigator.credentials.create()` → `toJSON()` (or @simplewebauthn/browser) gives it. */
export const RegistrationCredential = Type.Object({
  id: CredentialId,
  rawId: CredentialId,
  type: Type.Literal('public-key'),
  response: Type.Object({
    clientDataJSON: B64url(8192, 'eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIiwiY2hhbGxlbmdlIjoi'),
    attestationObject: B64url(32768, 'o2NmbXRkbm9uZWdhdHRTdG10oGhhdXRoRGF0YVjF'),
    transports: Type.Optional(Type.Array(Type.String({ maxLength: 32 }), { maxItems: 16 })),
    authenticatorData: Type.Optional(B64url(32768, 'SZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2NdAAAAAA')),
    publicKey: Type.Optional(B64url(32768, 'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE')),
    publicKeyAlgorithm: Type.Optional(Type.Integer()),
  }),
  authenticatorAttachment: Type.Optional(Type.String({ maxLength: 32 })),
  clientExtensionResults: Extensions,
});

/** AuthenticationResponseJSON, as `navigator.credentials.get()` → `toJSON()` gives it. */
export const AuthenticationCredential = Type.Object({
  id: CredentialId,
  rawId: CredentialId,
  type: Type.Literal('public-key'),
  response: Type.Object({
    clientDataJSON: B64url(8192, 'eyJ0eXBlIjoid2ViYXV0aG4uZ2V0IiwiY2hhbGxlbmdlIjoi'),
    authenticatorData: B64url(32768, 'SZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2MFAAAAAQ'),
    signature: B64url(8192, 'MEUCIQDx3k0'),
    userHandle: Type.Optional(Type.Union([B64url(128, 'q0Yb0oA9m3bqQ2oC0J0mVg1hQ6o1yWmB3c2j6Hc9kLs'), Type.Null()])),
  }),
  authenticatorAttachment: Type.Optional(Type.String({ maxLength: 32 })),
  clientExtensionResults: Extensions,
});

/** A passkey as listed. */
export const PasskeySchema = Type.Object({
  id: Uuid,
  name: Type.String({ examples: ['MacBook Touch ID'] }),
  created_at: DateTime,
  last_used_at: Type.Union([DateTime, Type.Null()]),
  backed_up: Type.Boolean({ description: 'Backed up (synced to the user\'s other devices) now' }),
  device_type: Type.Union([Type.Literal('multi_device'), Type.Literal('single_device')], { description: 'multi_device: may be synced; single_device: bound to one authenticator' }),
  transports: Type.Array(Type.String(), { examples: [['internal', 'hybrid']] }),
});

/** A passkey just registered, with the first backup codes when it was the user's first factor. */
export const RegisteredPasskeySchema = Type.Object({
  ...PasskeySchema.properties,
  backup_codes: Type.Optional(Type.Array(Type.String(), { description: 'Only with the first factor; shown once', examples: [['7K3D-9XQ2-M4TB']] })),
});

/**
 * One line of visible text: no control characters (a newline let a name write lines of its own into
 * the "second factor added" mail), no line separators or bidirectional overrides, and at least one
 * character that shows: not a space, a format character (zero-width space, soft hyphen), a combining
 * mark alone (a variation selector), a Hangul filler or the blank braille pattern (`\S` let each of
 * those through alone, and the name showed blank in the list and the mail).
 */
export const PasskeyName = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: '^(?=.*[^\\s\\p{Cf}\\p{M}\\u115F\\u1160\\u3164\\uFFA0\\u2800])[^\\p{Cc}\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069]+$',
  description: 'One line: no control characters, line separators or bidirectional overrides',
  examples: ['MacBook Touch ID'],
});

/** PublicKeyCredentialCreationOptionsJSON (what `PublicKeyCredential.parseCreationOptionsFromJSON` takes). */
export const CreationOptionsSchema = Type.Object(
  {
    rp: Type.Object({ id: Type.Optional(Type.String({ examples: ['localhost'] })), name: Type.String({ examples: ['Twofold'] }) }),
    user: Type.Object({
      id: Type.String({ description: 'The random user handle (base64url), never the e-mail or username', examples: ['q0Yb0oA9m3bqQ2oC0J0mVg1hQ6o1yWmB3c2j6Hc9kLs'] }),
      name: Type.String({ examples: ['alice'] }),
      displayName: Type.String({ examples: ['alice'] }),
    }),
    challenge: Type.String({ examples: ['Yq3dF1Xg0b2q2w6QvS9d8Yq3dF1Xg0b2q2w6QvS9d8c'] }),
    pubKeyCredParams: Type.Array(Type.Object({ alg: Type.Integer(), type: Type.String() }), { examples: [[{ alg: -7, type: 'public-key' }, { alg: -257, type: 'public-key' }]] }),
    timeout: Type.Optional(Type.Integer({ examples: [300000] })),
    excludeCredentials: Type.Optional(Type.Array(Type.Unknown())),
    authenticatorSelection: Type.Optional(Type.Unknown({ examples: [{ residentKey: 'required', requireResidentKey: true, userVerification: 'required' }] })),
    attestation: Type.Optional(Type.String({ examples: ['none'] })),
    extensions: Type.Optional(Type.Unknown()),
    hints: Type.Optional(Type.Array(Type.String())),
  },
  { additionalProperties: true },
);

/** PublicKeyCredentialRequestOptionsJSON (what `PublicKeyCredential.parseRequestOptionsFromJSON` takes). */
export const RequestOptionsSchema = Type.Object(
  {
    challenge: Type.String({ examples: ['Yq3dF1Xg0b2q2w6QvS9d8Yq3dF1Xg0b2q2w6QvS9d8c'] }),
    rpId: Type.Optional(Type.String({ examples: ['localhost'] })),
    timeout: Type.Optional(Type.Integer({ examples: [300000] })),
    allowCredentials: Type.Optional(Type.Array(Type.Object({ id: Type.String(), type: Type.String(), transports: Type.Optional(Type.Array(Type.String())) }))),
    userVerification: Type.Optional(Type.String({ examples: ['required'] })),
    extensions: Type.Optional(Type.Unknown()),
    hints: Type.Optional(Type.Array(Type.String())),
  },
  { additionalProperties: true },
);
