/** TypeBox schemas of the admin API (validation and OpenAPI from one source). */
import { Type } from 'typebox';
import { DEFAULT_PAGE, MAX_PAGE } from '../../../services/audit/list.ts';
import { BODY_PROBLEMS, DateTime, Uuid, type ProblemCodes } from '../../schemas.ts';

/** Both ways to call the admin API: ADMIN_API_KEY or an admin's aal2 access token as Bearer, or that token as cookie. */
export const adminSecurity: Array<Record<string, string[]>> = [{ adminApiKey: [] }, { bearerAuth: [] }, { cookieAuth: [] }];

/**
 * What the admin guard (guard.ts, services/admin/authorize.ts) answers before any admin route runs: 401
 * without credentials or with a bad token, 403 for anyone but an admin (or a deactivated one); a
 * change also re-checks the admin in its transaction (admin_required).
 */
export const ADMIN_PROBLEMS: ProblemCodes = { 401: ['authentication_required', 'invalid_token'], 403: ['admin_required', 'account_inactive'] };
/** The guard's answers for unsafe methods (a cookie-borne token is held to the CSRF rule), and those of any request body. */
export const ADMIN_WRITE_PROBLEMS: ProblemCodes = { ...BODY_PROBLEMS, 401: ['authentication_required', 'invalid_token'], 403: ['admin_required', 'account_inactive', 'csrf_rejected'] };

/**
 * A `limit` query parameter saying the listing's own default page size. Query strings are not
 * type-coerced (ajv coerceTypes is off): the page size is digits, checked by the service's pageLimit.
 */
export function limitParameter(defaultSize: number, max = MAX_PAGE) {
  return Type.Optional(Type.String({ pattern: '^[0-9]{1,3}$', description: `Page size, 1 to ${max} (default ${defaultSize})`, examples: [String(defaultSize)] }));
}
/** The page size of the admin listings. */
export const Limit = limitParameter(DEFAULT_PAGE);
export const Cursor = Type.Optional(Type.String({ maxLength: 512, description: 'The `next_cursor` of the previous page' }));
export const NextCursor = Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for the next page; null on the last page', examples: ['eyJiIjoiNDIifQ'] });

export const AuditActorSchema = Type.Object({
  kind: Type.Union([Type.Literal('user'), Type.Literal('admin'), Type.Literal('api_key'), Type.Literal('system')]),
  id: Type.Optional(Uuid),
});

export const AuditEventSchema = Type.Object({
  id: Type.String({ description: 'Increasing with insertion', examples: ['42'] }),
  type: Type.String({ examples: ['login.succeeded'] }),
  at: DateTime,
  user_id: Type.Union([Uuid, Type.Null()]),
  actor: AuditActorSchema,
  ip: Type.Union([Type.String(), Type.Null()], { examples: ['203.0.113.7'] }),
  user_agent: Type.Union([Type.String(), Type.Null()], { examples: ['Mozilla/5.0'] }),
  data: Type.Record(Type.String(), Type.Unknown(), { description: 'Non-secret facts of the event', examples: [{ sid: '01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e11', aal: 'aal2', amr: ['pwd', 'otp', 'mfa'] }] }),
});

const Role = Type.String({ pattern: '^[a-z][a-z0-9_.:-]{0,63}$', examples: ['admin'] });
export const Roles = Type.Array(Role, { maxItems: 32, description: 'Lower-case role names; the access token carries them in `roles` from the next token on', examples: [['admin']] });

export const AdminUserSchema = Type.Object({
  uuid: Uuid,
  username: Type.String({ examples: ['alice'] }),
  email: Type.String({ examples: ['alice@example.com'] }),
  full_name: Type.Union([Type.String(), Type.Null()], { examples: ['Alice Liddell'] }),
  email_verified: Type.Boolean(),
  is_active: Type.Boolean(),
  roles: Type.Array(Type.String(), { examples: [['admin']] }),
  mfa: Type.Object({ totp: Type.Boolean(), email: Type.Boolean(), passkeys: Type.Integer({ minimum: 0, examples: [1] }), backup_codes_remaining: Type.Integer({ minimum: 0, examples: [10] }) }),
  last_login_at: Type.Union([DateTime, Type.Null()]),
  locked_until: Type.Union([DateTime, Type.Null()], { description: 'End of the current login lock (any of the account\'s names); null when not locked' }),
  created_at: DateTime,
  updated_at: DateTime,
});

export const AdminSessionSchema = Type.Object({
  id: Uuid,
  created_at: DateTime,
  last_used_at: DateTime,
  expires_at: DateTime,
  user_agent: Type.Union([Type.String(), Type.Null()], { examples: ['Mozilla/5.0'] }),
  ip: Type.Union([Type.String(), Type.Null()], { examples: ['203.0.113.7'] }),
  aal: Type.String({ examples: ['aal2'] }),
  amr: Type.Array(Type.String(), { examples: [['pwd', 'otp', 'mfa']] }),
});

export const UserIdParams = Type.Object({ uuid: Type.String({ description: 'The user\'s uuid', examples: ['01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e11'] }) });
