/**
 * The development "transport" used when SMTP_URL is unset: it logs each mail and reports it
 * delivered. The mails themselves stay in the outbox table, which the /dev/mailbox page shows.
 */
import type { Logger } from 'pino';
import type { MailMessage, MailTransport } from './types.ts';

/** The logger methods the development mailbox uses. */
export type DevMailboxLogger = Pick<Logger, 'info'>;

/** Creates the development transport: every mail is logged (text body included) and counts as delivered. */
export function createDevMailboxTransport(logger: DevMailboxLogger): MailTransport {
  return {
    name: 'dev-mailbox',
    async send(message: MailMessage): Promise<void> {
      // The text body carries codes and one-time links; logging it is the point of this transport,
      // which is never used in production (server.ts picks it only without SMTP_URL, outside production).
      logger.info(
        { mail: { id: message.id, kind: message.kind, to: message.to, subject: message.subject }, body: message.text },
        'development mailbox: mail not sent, shown at /dev/mailbox',
      );
    },
    async close(): Promise<void> {},
  };
}
