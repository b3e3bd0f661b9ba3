/** TypeBox schemas shared by routes: one source for validation and for the OpenAPI document. */
import { Type, type TSchema } from 'typebox';
import { USERNAME_PATTERN } from '../security/login-names.ts';
import type { ErrorCode } from '../errors.ts';
import { problemBody } from './problem.ts';

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
export function problemResponse(schema: TSchema = Problem, description = 'Problem details (RFC 9457)', example?: Record<string, unknown>): ProblemResponse {
  return { description, content: { 'application/problem+json': { schema, ...(example ? { example } : {}) } } };
}

type HeaderSchemas = Record<string, Record<string, unknown>>;
type ProblemResponse = { description: string; content: Record<string, { schema: TSchema; example?: Record<string, unknown> }>; headers?: HeaderSchemas };

/**
 * Response headers the document declares. @fastify/swagger turns a response's `headers` into the
 * operation's header objects; Fastify's serialiser does not read them, so an answer is never altered.
 */
export const RESPONSE_HEADERS = {
  retryAfter: { 'Retry-After': { type: 'integer', minimum: 0, description: 'Seconds to wait before trying again', examples: [60] } },
  noStore: { 'Cache-Control': { type: 'string', const: 'no-store', description: 'No cache may keep the answer (it carries tokens)' } },
  tokenCookies: {
    'Set-Cookie': {
      type: 'string',
      description: 'The HttpOnly cookies `access_token` (path `/`), `refresh_token` (path `/api/v1/auth-jwt`) and `twofold_browser_session` (which session the browser holds; no credential)',
      examples: ['access_token=eyJhbGciOiJSUzI1NiIs...; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax'],
    },
  },
  location: { Location: { type: 'string', format: 'uri-reference', description: 'Where to go next', examples: ['/verify-email?token=q3J8n0bXc2mU6yQk0C5tGdVf1wHs9pLzR4aE7iYoN2M'] } },
} satisfies Record<string, HeaderSchemas>;

/** `response` with these headers declared in the document (added to any it declares already). */
export function withHeaders<T extends object>(response: T, ...headers: HeaderSchemas[]): T & { headers: HeaderSchemas } {
  return { ...response, headers: Object.assign({}, (response as { headers?: HeaderSchemas }).headers, ...headers) };
}

/** A 200 that issues tokens: never cached, and the token cookies are set with it. */
export function tokenResponse<T extends TSchema>(schema: T) {
  return withHeaders(schema, RESPONSE_HEADERS.noStore, RESPONSE_HEADERS.tokenCookies);
}

/** The error codes a route can answer, per status (`{ 401: ['invalid_credentials'] }`). */
export type ProblemCodes = Readonly<Partial<Record<number, readonly ErrorCode[]>>>;

/**
 * A problem response that names its codes: the description lists them, `code` is an enum of them and
 * the example is the first one, with this status and its title. `base` is the schema to narrow (the
 * login's 403 keeps the MFA challenge's members). Only the error responses carry these enums: the
 * serialiser (fast-json-stringify) ignores `enum`, so an answer is never altered by them.
 */
export function codedProblem(status: number, codes: readonly ErrorCode[], base: TSchema = Problem, extraExample: Record<string, unknown> = {}) {
  // Built once per process for each (base, status, codes, example): every app registers every route
  // again (the test suites build hundreds), and building them for each cost ~15 ms per app.
  let byKey = coded.get(base);
  if (!byKey) coded.set(base, (byKey = new Map()));
  const key = `${status} ${codes.join(',')} ${JSON.stringify(extraExample)}`;
  let built = byKey.get(key);
  if (!built) byKey.set(key, (built = buildCodedProblem(status, codes, base, extraExample)));
  // A fresh wrapper each time, as problemResponse gives: only the schema and example are shared.
  const response = problemResponse(built.schema, built.description, built.example);
  // Every 429 says when to try again (the limiter sets the header: security/limiter-flexible.ts).
  return status === 429 ? withHeaders(response, RESPONSE_HEADERS.retryAfter) : response;
}

const coded = new WeakMap<TSchema, Map<string, { schema: TSchema; description: string; example: Record<string, unknown> }>>();

function buildCodedProblem(status: number, codes: readonly ErrorCode[], base: TSchema, extraExample: Record<string, unknown>) {
  const names = codes.map((c) => `\`${c}\``);
  const list = names.length > 1 ? `${names.slice(0, -1).join(', ')} or ${names.at(-1)}` : names[0];
  const description = `Problem details (RFC 9457) with code ${list}`;
  const first = codes[0]!;
  // The example says what the service really sends for the first code (problem.ts's problemBody).
  const example = { ...problemBody(first, status), ...extraExample };
  const properties = (base as unknown as { properties: Record<string, TSchema> }).properties;
  const schema = Type.Object(
    {
      ...properties,
      type: Type.String({ examples: [example.type] }),
      title: Type.String({ examples: [example.title] }),
      status: Type.Integer({ examples: [status] }),
      detail: Type.String({ examples: [example.detail] }),
      code: Type.String({ enum: [...codes], examples: [first] }),
    },
    { additionalProperties: true, description },
  );
  return { schema, description, example };
}

/**
 * Response map entries for problem documents, from maps of statuses to the codes the route answers
 * with them; maps are merged, codes of one status listed once each, in order:
 * `problems(BODY_PROBLEMS, { 400: ['invalid_or_expired_token'] })`.
 */
export function problems(...specs: ProblemCodes[]): Record<number, ProblemResponse> {
  const codes = new Map<number, ErrorCode[]>();
  for (const spec of specs) {
    for (const [status, list] of Object.entries(spec)) {
      const merged = codes.get(Number(status)) ?? [];
      for (const code of list ?? []) if (!merged.includes(code)) merged.push(code);
      codes.set(Number(status), merged);
    }
  }
  const out: Record<number, ProblemResponse> = {};
  for (const [status, list] of [...codes].sort(([a], [b]) => a - b)) out[status] = codedProblem(status, list);
  return out;
}

/** What any request body can be refused with before validation: not JSON (or forms), too large, another media type. */
export const BODY_PROBLEMS: ProblemCodes = { 400: ['malformed_request'], 413: ['payload_too_large'], 415: ['unsupported_media_type'] };
/**
 * The path and query of every request are checked for NUL characters and lone surrogates
 * (input-guard.ts). Routes with parameters name it; app.ts adds it to every operation without a 400.
 */
export const URL_PROBLEMS: ProblemCodes = { 400: ['malformed_request'] };
/** A body (or query, path) that does not match the route's schema. */
export const VALIDATION_PROBLEMS: ProblemCodes = { 422: ['validation_failed'] };
/**
 * Routes behind requireAuth (plugins/auth.ts): no or a bad token, a deactivated account; unsafe methods
 * also refuse a cross-site cookie-borne request.
 */
export const AUTH_PROBLEMS: ProblemCodes = { 401: ['authentication_required', 'invalid_token'], 403: ['account_inactive'] };
export const AUTH_WRITE_PROBLEMS: ProblemCodes = { 401: ['authentication_required', 'invalid_token'], 403: ['account_inactive', 'csrf_rejected'] };
/** The per-IP and per-account limits (security/limiter.ts), with Retry-After. */
export const RATE_LIMITED: ProblemCodes = { 429: ['too_many_requests'] };

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

/** The extra members of the login's 403 `mfa_required` example (its challenge). */
export const MFA_REQUIRED_EXAMPLE = { mfa_token: 'eyJhbGciOiJSUzI1NiIsInR5cCI6Im1mYStqd3QiLCJraWQiOiIuLi4ifQ...', mfa_methods: ['totp', 'backup_code'], mfa_expires_in: 300 };

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
