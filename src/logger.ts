/** pino logger with every secret redacted: passwords, tokens, codes, secrets, Authorization and cookies. */
import pino, { type Logger } from 'pino';
import type { Config } from './config.ts';

/** Paths pino blanks out wherever they appear in a logged object (bodies are never logged whole). */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  '*.password', '*.password1', '*.password2', '*.current_password',
  '*.token', '*.access_token', '*.refresh_token', '*.mfa_token',
  '*.code', '*.security_code', '*.backup_code', '*.secret',
  'password', 'token', 'code', 'secret',
];

/**
 * Error fields that hold a failed command's values: a query's bound values (PGlite and pg attach them:
 * password hashes, codes, e-mail addresses), ioredis' failed `command` with its arguments (the
 * password of `HELLO 3 AUTH default <password>` when Redis refuses it), and the `input` of Node's
 * ERR_INVALID_URL (a connection URL with its password, from a client library parsing a bad one).
 */
const QUERY_VALUE_FIELDS = ['params', 'parameters', 'values', 'queryOptions', 'detail', 'where', 'command', 'input'];

/** A PostgreSQL error (pg or PGlite): it carries a severity and a five-character SQLSTATE. */
function isDatabaseError(e: unknown): boolean {
  const o = e as { severity?: unknown; code?: unknown } | null;
  return !!o && typeof o.severity === 'string' && typeof o.code === 'string' && /^[0-9A-Z]{5}$/.test(o.code);
}

/** PostgreSQL quotes the offending value in its messages (`invalid input syntax for type integer: "…"`). */
function maskQuoted(text: unknown): unknown {
  return typeof text === 'string' ? text.replace(/"(?:[^"\\]|\\.)*"/g, '"…"') : text;
}

/** `scheme://user:password@host` → `scheme://***@host`, wherever a URL with credentials appears in a text. */
export function maskUrlCredentials(text: unknown): unknown {
  return typeof text === 'string' ? text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#]{0,512}@/gi, '$1***@') : text;
}

/**
 * pino's error serializer, minus every query's bound values — in the error, in its causes, and in the
 * messages PostgreSQL builds from them (these once put password hashes into error logs).
 */
export function serializeError(err: unknown): unknown {
  let fromDatabase = false;
  for (let e = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) fromDatabase ||= isDatabaseError(e);
  const out = pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>;
  let o: Record<string, unknown> | undefined = out;
  for (let depth = 0; o && typeof o === 'object' && depth < 8; depth++) {
    for (const f of QUERY_VALUE_FIELDS) delete o[f];
    // `*.code` is redacted (request bodies carry one-time codes there), which also blanked what an
    // operator reads first in an outage: ECONNREFUSED, ERR_…, a SQLSTATE. Those are kept apart.
    const code = o.code;
    if (typeof code === 'string' && (/^[A-Z][A-Z0-9_]{2,63}$/.test(code) || (fromDatabase && /^[0-9A-Z]{5}$/.test(code)))) o.errorCode = code;
    if (fromDatabase) {
      o.message = maskQuoted(o.message);
      o.stack = maskQuoted(o.stack);
    }
    // A library may name the URL it failed on (with its password) in its message.
    o.message = maskUrlCredentials(o.message);
    o.stack = maskUrlCredentials(o.stack);
    o = o.cause as Record<string, unknown> | undefined;
  }
  return out;
}

/** The process logger. Request URLs are logged without their query (e-mailed links carry tokens there). */
export function createLogger(config: Pick<Config, 'logLevel'>, destination?: pino.DestinationStream): Logger {
  return pino({
    level: config.logLevel,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      err: serializeError,
      req(req: { method: string; url: string; ip?: string; headers?: Record<string, unknown> }) {
        return { method: req.method, url: req.url.split('?')[0], ip: req.ip, userAgent: req.headers?.['user-agent'] };
      },
    },
  }, destination);
}
