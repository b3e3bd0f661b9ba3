/**
 * The development "transport" used when SMTP_URL is unset: it logs each mail and reports it
 * delivered. The mails themselves stay in the outbox table, which the /dev/mailbox page shows.
 */
import type { Logger } from 'pino';
import type { MailMessage, MailTransport } from './types.ts';

/** The logger methods the development mailbox uses. */
export type DevMailboxLogger = Pick<Logger, 'info' | 'debug'>;

/** Creates the development transport: every mail is logged (its text body at debug only) and counts as delivered. */
export function createDevMailboxTransport(logger: DevMailboxLogger): MailTransport {
  return {
    name: 'dev-mailbox',
    async send(message: MailMessage): Promise<void> {
      // The text body carries codes and one-time links: never at info (log collectors keep info for
      // months); LOG_LEVEL=debug shows it to a developer who has no mailbox page.
      const mail = { id: message.id, kind: message.kind, to: message.to, subject: message.subject };
      logger.info({ mail }, 'mail not sent (no SMTP_URL)');
      logger.debug({ mail, body: message.text }, 'mail body (debug only)');
    },
    async close(): Promise<void> {},
  };
}
