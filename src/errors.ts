/**
 * The closed list of error codes a client can see, each with its HTTP status and public title.
 * Code switches on `code`, never on a message. The internal cause of an error is logged, never sent.
 */
export const ERROR_CODES = {
  // request shape
  malformed_request: { status: 400, title: 'Malformed request' },
  validation_failed: { status: 422, title: 'Validation failed' },
  payload_too_large: { status: 413, title: 'Payload too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported media type' },
  not_acceptable: { status: 406, title: 'Not acceptable' },
  not_found: { status: 404, title: 'Not found' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  // An Expect header other than 100-continue (RFC 9110 §10.1.1), answered before any route.
  expectation_failed: { status: 417, title: 'Expectation failed' },
  // users
  username_taken: { status: 409, title: 'Username taken' },
  email_taken: { status: 409, title: 'E-mail address taken' },
  user_not_found: { status: 404, title: 'User not found' },
  invalid_or_expired_token: { status: 400, title: 'Invalid or expired token' },
  // authentication
  authentication_required: { status: 401, title: 'Authentication required' },
  invalid_credentials: { status: 401, title: 'Invalid credentials' },
  invalid_token: { status: 401, title: 'Invalid token' },
  refresh_token_reused: { status: 401, title: 'Refresh token reused' },
  invalid_security_code: { status: 401, title: 'Invalid security code' },
  invalid_client: { status: 401, title: 'Invalid client credentials' },
  mfa_required: { status: 403, title: 'Second factor required' },
  account_inactive: { status: 403, title: 'Account inactive' },
  email_not_verified: { status: 403, title: 'E-mail address not verified' },
  step_up_required: { status: 403, title: 'Step-up authentication required' },
  csrf_rejected: { status: 403, title: 'Cross-site request rejected' },
  mfa_enrollment_required: { status: 403, title: 'Second factor enrolment required' },
  admin_required: { status: 403, title: 'Administrator required' },
  last_admin: { status: 409, title: 'Last administrator' },
  // second factors
  method_not_enabled: { status: 400, title: 'Method not enabled' },
  totp_already_enabled: { status: 409, title: 'TOTP already enabled' },
  totp_not_pending: { status: 409, title: 'No TOTP enrolment pending' },
  totp_not_enabled: { status: 409, title: 'TOTP not enabled' },
  email_otp_already_enabled: { status: 409, title: 'E-mail codes already enabled' },
  email_otp_not_enabled: { status: 409, title: 'E-mail codes not enabled' },
  mfa_not_enabled: { status: 409, title: 'No second factor enabled' },
  session_not_found: { status: 404, title: 'Session not found' },
  // events
  already_delivered: { status: 409, title: 'Already delivered' },
  // passkeys (400 at registration; logins answer it with 401, see services/passkeys/)
  invalid_passkey: { status: 400, title: 'Invalid passkey' },
  passkey_already_registered: { status: 409, title: 'Passkey already registered' },
  passkey_not_found: { status: 404, title: 'Passkey not found' },
  passkey_limit_reached: { status: 409, title: 'Passkey limit reached' },
  // limits and the server
  too_many_requests: { status: 429, title: 'Too many requests' },
  internal_error: { status: 500, title: 'Internal server error' },
  service_unavailable: { status: 503, title: 'Service unavailable' },
} as const satisfies Record<string, { status: number; title: string }>;

/** A stable, machine-readable error code of the contract. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** One field-level validation problem. */
export interface FieldError {
  field: string;
  message: string;
}

export interface AppErrorOptions {
  /** Public, human-readable detail. Never secrets, SQL or internals. */
  detail?: string;
  /** Internal cause: logged, never serialised. */
  cause?: unknown;
  errors?: FieldError[];
  /** Extra public members of the problem document (e.g. `mfa_token`). */
  extra?: Record<string, unknown>;
  headers?: Record<string, string>;
  /** Override of the code's usual status, where the contract gives one code two statuses. */
  status?: number;
}

/** The only error type services throw for expected failures. */
export class AppError extends Error {
  override name = 'AppError';
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: string | undefined;
  readonly errors: FieldError[] | undefined;
  readonly extra: Record<string, unknown> | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(code: ErrorCode, options: AppErrorOptions = {}) {
    super(code, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status ?? ERROR_CODES[code].status;
    this.detail = options.detail;
    this.errors = options.errors;
    this.extra = options.extra;
    this.headers = options.headers;
  }
}

/** Shorthand for a 422 with one field error. */
export function validationError(field: string, message: string): AppError {
  return new AppError('validation_failed', { detail: message, errors: [{ field, message }] });
}

/** True for an AppError with the given code. */
export function isAppError(e: unknown, code?: ErrorCode): e is AppError {
  return e instanceof AppError && (code === undefined || e.code === code);
}
