/** TypeBox schemas shared by routes: one source for validation and for the OpenAPI document. */
import { Type, type TSchema } from 'typebox';
import { USERNAME_PATTERN } from '../security/login-names.ts';

export const Username = Type.String({ pattern: USERNAME_PATTERN, minLength: 3, maxLength: 32, description: '3–32 of A-Za-z0-9_.-, case-insensitively unique', examples: ['alice'] });
export const Email = Type.String({ format: 'email', maxLength: 254, examples: ['alice@example.com'] });
/** Passwords are length-checked by the policy (8–256 characters); the schema only bounds the input. */
export const Password = Type.String({ minLength: 1, maxLength: 1024, examples: ['correct horse battery staple'] });
export const SecurityCode = Type.String({ minLength: 1, maxLength: 64, description: 'A 6-digit code', examples: ['123456'] });
export const DateTime = Type.String({ format: 'date-time', examples: ['2025-02-13T15:15:41.760Z'] });
/**
 * A uuid in its canonical 8-4-4-4-12 hex form (either case). The pattern, not only `format: 'uuid'`:
 * ajv's format also accepts `urn:uuid:<uuid>`, which PostgreSQL refuses (a 500 instead of the 422 of
 * any other malformed id).
 */
export const Uuid = Type.String({
  format: 'uuid',
  pattern: '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$', // UUID_PATTERN (crypto/random.ts), without the i flag JSON Schema lacks
  examples: ['01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e11'],
});

/** RFC 9457 problem details, with the contract's stable `code`. */
export const Problem = Type.Object(
  {
    type: Type.String({ examples: ['https://twofold.dev/problems/invalid-credentials'] }),
    title: Type.String({ examples: ['Invalid credentials'] }),
    status: Type.Integer({ examples: [401] }),
    detail: Type.String({ examples: ['Invalid username or password.'] }),
    code: Type.String({ examples: ['invalid_credentials'] }),
    errors: Type.Optional(Type.Array(Type.Object({ field: Type.String(), message: Type.String() }))),
  },
  { additionalProperties: true, description: 'RFC 9457 problem details (application/problem+json)' },
);

/** A response whose body is a problem document, declared (and serialised) as application/problem+json. */
export function problemResponse(schema: TSchema = Problem, description = 'Problem details (RFC 9457)') {
  return { description, content: { 'application/problem+json': { schema } } };
}

/** Response map entries for problem documents with the given statuses. */
export function problems(...statuses: number[]): Record<number, ReturnType<typeof problemResponse>> {
  const out: Record<number, ReturnType<typeof problemResponse>> = {};
  for (const s of statuses) out[s] = problemResponse();
  return out;
}

export const TokenPairSchema = Type.Object(
  {
    access_token: Type.String({ examples: ['eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6Ii4uLiJ9...'] }),
    refresh_token: Type.String({ examples: ['eyJhbGciOiJSUzI1NiIsInR5cCI6InJlZnJlc2gr...'] }),
    token_type: Type.Literal('Bearer'),
    expires_in: Type.Integer({ description: 'Seconds the access token lives', examples: [3600] }),
  },
  { description: 'Tokens; also set as HttpOnly cookies access_token and refresh_token' },
);

/** A login's 200: the tokens, plus backup-code facts when the login touched them (issue 7, item 13). */
export const LoginResultSchema = Type.Object(
  {
    ...TokenPairSchema.properties,
    backup_codes: Type.Optional(
      Type.Array(Type.String(), {
        description: 'Only when this login activated a pending TOTP secret (from `/qrcode` or sign-up `mfa: "totp"`) and the user had no backup codes: the 10 new codes, shown this once',
        examples: [['7K3D-9XQ2-M4TB', 'Q8WN-2HZR-5CVA']],
      }),
    ),
    backup_codes_remaining: Type.Optional(Type.Integer({ description: 'Only after a login with a backup code: unused codes left', examples: [9] })),
  },
  { description: 'Tokens; also set as HttpOnly cookies access_token and refresh_token' },
);

export const MfaRequired = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Literal(403),
    detail: Type.String(),
    code: Type.String({ examples: ['mfa_required'] }),
    mfa_token: Type.Optional(Type.String({ description: 'mfa+jwt for /login/mfa, valid 5 minutes' })),
    mfa_methods: Type.Optional(Type.Array(Type.String(), { examples: [['totp', 'backup_code']] })),
    mfa_expires_in: Type.Optional(Type.Integer({ examples: [300] })),
  },
  { additionalProperties: true, description: 'mfa_required (with a challenge), or another 403 problem' },
);

export const PublicUser = Type.Object({
  username: Type.String({ examples: ['alice'] }),
  is_active: Type.Boolean(),
  created_at: DateTime,
  updated_at: DateTime,
});

/** The fields of the sign-up body (POST /api/v1/user; the admin's create adds roles and email_verified). */
export const SIGN_UP_FIELDS = {
  username: Username,
  email: Email,
  password1: Password,
  password2: Password,
  full_name: Type.Optional(Type.String({ maxLength: 150, examples: ['Alice Liddell'] })),
  profile: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'Free JSON object, at most 4 KiB', examples: [{ locale: 'en' }] })),
  mfa: Type.Optional(Type.Union([Type.Literal('totp'), Type.Literal('email')], { description: 'Second factor chosen at sign-up' })),
};

export const PrivateUser = Type.Object({
  uuid: Uuid,
  username: Type.String({ examples: ['alice'] }),
  email: Type.String({ examples: ['alice@example.com'] }),
  email_verified: Type.Boolean(),
  is_active: Type.Boolean(),
  created_at: DateTime,
  updated_at: DateTime,
});

export const TotpEnrollmentSchema = Type.Object({
  otpauth_uri: Type.String({ examples: ['otpauth://totp/Twofold:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Twofold&algorithm=SHA1&digits=6&period=30'] }),
  secret: Type.String({ description: 'Base32, for manual entry', examples: ['JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP'] }),
  qr_code_png_base64: Type.String({ description: 'The QR code of otpauth_uri as a base64 PNG' }),
});

export const BackupCodesSchema = Type.Object({
  backup_codes: Type.Array(Type.String(), { description: 'Shown once; each works once', examples: [['7K3D-9XQ2-M4TB', 'P0WZ-1HVC-8RJN']] }),
});
