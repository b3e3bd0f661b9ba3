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

/** The process logger. Request URLs are logged without their query (e-mailed links carry tokens there). */
export function createLogger(config: Pick<Config, 'logLevel'>): Logger {
  return pino({
    level: config.logLevel,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      req(req: { method: string; url: string; ip?: string; headers?: Record<string, unknown> }) {
        return { method: req.method, url: req.url.split('?')[0], ip: req.ip, userAgent: req.headers?.['user-agent'] };
      },
    },
  });
}
