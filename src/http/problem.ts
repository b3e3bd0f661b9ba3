/** RFC 9457 problem details: the one place errors become HTTP. */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, ERROR_CODES, type ErrorCode, type FieldError } from '../errors.ts';
import { isDeletedUserReference } from '../db/deleted-user.ts';
import { DATABASE_RETRY_AFTER_SECONDS, isDatabaseUnavailable } from '../db/unavailable.ts';

/** The problem document of an error code. */
export function problemBody(code: ErrorCode, status: number, detail?: string, errors?: FieldError[], extra?: Record<string, unknown>) {
  return {
    type: `https://twofold.dev/problems/${code.replace(/_/g, '-')}`,
    title: ERROR_CODES[code].title,
    status,
    detail: detail ?? ERROR_CODES[code].title,
    code,
    ...(errors && errors.length ? { errors } : {}),
    ...(extra ?? {}),
  };
}

/** Sends an AppError as application/problem+json. */
export function sendProblem(reply: FastifyReply, err: AppError): FastifyReply {
  if (err.headers) reply.headers(err.headers);
  return reply
    .code(err.status)
    .type('application/problem+json')
    .send(problemBody(err.code, err.status, err.detail, err.errors, err.extra));
}

type AjvError = NonNullable<FastifyError['validation']>[number];

/** What a person should read for one Ajv error: plain language instead of schema vocabulary. */
function friendlyMessage(field: string, v: AjvError): string {
  const params = (v.params ?? {}) as { limit?: number; format?: string; type?: string; allowedValue?: unknown };
  switch (v.keyword) {
    case 'required':
      return 'is required';
    case 'minLength':
      return `must be at least ${params.limit} characters`;
    case 'maxLength':
      return `must be at most ${params.limit} characters`;
    case 'pattern':
      return field === 'username' ? 'may contain only letters, digits, "_", "." and "-" (3–32 characters)' : 'has an invalid format';
    case 'format':
      return params.format === 'email' ? 'must be a valid e-mail address' : `must be a valid ${params.format}`;
    case 'type':
      return `must be ${params.type === 'object' ? 'an object' : `a ${params.type}`}`;
    default:
      return v.message ?? 'is invalid';
  }
}

/** Turns an Ajv validation error list into contract field errors, one per field. */
function fieldErrors(error: FastifyError): FieldError[] {
  const byField = new Map<string, { messages: string[]; allowed: unknown[] }>();
  for (const v of error.validation ?? []) {
    const missing = (v.params as { missingProperty?: string } | undefined)?.missingProperty;
    const path = v.instancePath.replace(/^\//, '').replace(/\//g, '.');
    const field = (missing ?? path) || (error.validationContext ?? 'body');
    const entry = byField.get(field) ?? { messages: [], allowed: [] };
    if (v.keyword === 'const') entry.allowed.push((v.params as { allowedValue?: unknown }).allowedValue);
    else if (v.keyword !== 'anyOf') entry.messages.push(friendlyMessage(field, v));
    byField.set(field, entry);
  }
  // A union of literals (e.g. mfa: "totp" | "email") fails once per branch: say which values are allowed.
  return [...byField].map(([field, e]) => ({
    field,
    message: e.allowed.length ? `must be one of: ${e.allowed.join(', ')}` : [...new Set(e.messages)].join('; '),
  }));
}

/** Maps every error to a problem document; unexpected ones are logged and become a bare 500. */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | AppError, request: FastifyRequest, reply: FastifyReply) => {
    if (error instanceof AppError) {
      if (error.status >= 500) request.log.error({ err: error.cause ?? error, code: error.code }, 'request failed');
      else if (error.cause) request.log.debug({ err: error.cause, code: error.code }, 'request refused');
      return sendProblem(reply, error);
    }
    const fe = error as FastifyError;
    if (fe.validation) {
      const errors = fieldErrors(fe);
      return sendProblem(reply, new AppError('validation_failed', { detail: errors.map((e) => `${e.field}: ${e.message}`).join('; '), errors }));
    }
    switch (fe.code) {
      case 'FST_ERR_CTP_INVALID_JSON_BODY':
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
        return sendProblem(reply, new AppError('malformed_request', { detail: 'The request body is not valid JSON.' }));
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return sendProblem(reply, new AppError('payload_too_large', { detail: 'The request body is larger than 64 KiB.' }));
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      case 'FST_ERR_CTP_INVALID_TYPE':
        return sendProblem(reply, new AppError('unsupported_media_type', { detail: 'Send application/json.' }));
    }
    if (fe.statusCode === 413) return sendProblem(reply, new AppError('payload_too_large'));
    if (fe.statusCode === 415) return sendProblem(reply, new AppError('unsupported_media_type'));
    if (fe.statusCode === 429) return sendProblem(reply, new AppError('too_many_requests'));
    if (fe.statusCode !== undefined && fe.statusCode >= 400 && fe.statusCode < 500) {
      request.log.info({ err: fe }, 'client error');
      return sendProblem(reply, new AppError('malformed_request', { status: fe.statusCode, detail: 'The request could not be processed.' }));
    }
    if ((error as { code?: unknown }).code === '40P01') {
      // PostgreSQL broke a deadlock by aborting this transaction: nothing of it was committed, and the
      // same request sent again succeeds. Still logged as an error: every lock-order cycle is a bug.
      request.log.error({ err: error }, 'deadlock: the transaction was rolled back');
      return sendProblem(reply, new AppError('service_unavailable', { detail: 'A concurrent change got in the way; nothing was changed. Try again.', headers: { 'Retry-After': '1' } }));
    }
    if (isDatabaseUnavailable(error)) {
      // PostgreSQL refused or dropped the connection (down, restarting, failing over, out of
      // connections): an outage to wait out, not a bug. Unlike a deadlock, a connection lost around a
      // COMMIT may have committed it, so the answer promises nothing about what was changed.
      request.log.error({ err: error }, 'database unavailable: answered 503');
      return sendProblem(reply, new AppError('service_unavailable', { detail: 'The database cannot be reached right now. Try again in a few seconds.', headers: { 'Retry-After': DATABASE_RETRY_AFTER_SECONDS } }));
    }
    if (isDeletedUserReference(error)) {
      request.log.info({ err: error }, 'the account was deleted while the request was in flight');
      return sendProblem(reply, new AppError('invalid_token', { detail: 'The account no longer exists.' }));
    }
    // Anything else is our bug or an outage: log everything, say nothing about the cause.
    request.log.error({ err: error }, 'unhandled error');
    return sendProblem(reply, new AppError('internal_error', { detail: 'An unexpected error occurred.' }));
  });

  app.setNotFoundHandler((request, reply) => {
    return sendProblem(reply, new AppError('not_found', { detail: `No route ${request.method} ${request.url.split('?')[0]}.` }));
  });
}
