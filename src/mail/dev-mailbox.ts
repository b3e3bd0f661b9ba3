/**
 * The development "transport" used when SMTP_URL is unset: it logs each mail and reports it
 * delivered. The mails themselves stay in the outbox table, which the /dev/mailbox page shows.
 */
import type { Logger } from 'pino';
import { isLoopbackHost, type Config } from '../config.ts';
import type { MailMessage, MailTransport } from './types.ts';

/**
 * The warning of a start without SMTP_URL (undefined with SMTP). The mailbox follows issue 7's rule
 * (a loopback PUBLIC_URL, or DEV_MAILBOX=true), but listening beyond loopback (HOST=0.0.0.0, in a
 * container or to try the pages from a phone) puts it, with every reset link and code, on the network:
 * the warning says so in as many words.
 */
export function noSmtpWarning(config: Pick<Config, 'smtpUrl' | 'devMailbox' | 'publicUrl' | 'host'>): string | undefined {
  if (config.smtpUrl) return undefined;
  if (!config.devMailbox) {
    return 'SMTP_URL is not set: no mail leaves this process and the development mailbox is off (PUBLIC_URL is not a loopback address; DEV_MAILBOX=true turns it on). Users get no verification, reset or code mails.';
  }
  const base = `SMTP_URL is not set: no mail leaves this process; mails are kept for the development mailbox at ${config.publicUrl}/dev/mailbox`;
  if (isLoopbackHost(config.host)) return base;
  return `${base}. HOST=${config.host} listens beyond this machine: anyone who can reach the port can read every reset link and code there. Set SMTP_URL, or DEV_MAILBOX=false, for an instance others can reach.`;
}

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
