/** Delivery through an SMTP server (nodemailer), configured by SMTP_URL and MAIL_FROM. */
import nodemailer from 'nodemailer';
import { isLoopbackHost, type Config } from '../config.ts';
import type { MailMessage, MailTransport } from './types.ts';

/**
 * Timeouts for connecting, the greeting and each later reply. Nodemailer's defaults (2 min, 30 s,
 * 10 min) would let an SMTP outage hold a claimed batch for minutes; failing fast lets the worker
 * record the failure and back off well within its lease.
 */
const SMTP_TIMEOUT_MS = 10_000;

/**
 * Whether an `smtp://` server must upgrade the connection with STARTTLS before anything is sent.
 * Nodemailer uses STARTTLS only when the server offers it, so a man in the middle who strips the
 * offer got the SMTP password and every reset link in clear. Required unless the server is on this
 * machine (a loopback catcher), or SMTP_URL says `?requireTLS=false` (or nodemailer's
 * `?ignoreTLS=true`) itself (a trusted internal relay without TLS); `smtps://` is TLS from the first byte.
 */
export function smtpRequiresTls(smtpUrl: string): boolean {
  const url = new URL(smtpUrl);
  // nodemailer's own opt-outs in the URL (`ignoreTLS`) are the operator's word too: requireTLS would override them.
  if (url.protocol !== 'smtp:' || url.searchParams.has('requireTLS') || url.searchParams.get('ignoreTLS') === 'true') return false;
  return !isLoopbackHost(url.hostname);
}

/** Creates the SMTP transport; throws when config.smtpUrl is not set. */
export function createSmtpTransport(config: Pick<Config, 'smtpUrl' | 'mailFrom' | 'publicUrl'>): MailTransport {
  if (!config.smtpUrl) throw new Error('createSmtpTransport needs SMTP_URL');
  // A Message-ID derived from the outbox id: a retry after a crash between the server's acceptance
  // and our recording of it carries the same Message-ID, so the receiving side can drop the duplicate.
  const messageIdHost = new URL(config.publicUrl).hostname;
  // One connection per message (no pool): the worker sends rarely and in small batches, and a fresh
  // connection never trips over a pooled one the server has quietly closed during an outage.
  const transporter = nodemailer.createTransport({
    url: config.smtpUrl,
    ...(smtpRequiresTls(config.smtpUrl) ? { requireTLS: true } : {}),
    connectionTimeout: SMTP_TIMEOUT_MS,
    greetingTimeout: SMTP_TIMEOUT_MS,
    socketTimeout: SMTP_TIMEOUT_MS,
    dnsTimeout: SMTP_TIMEOUT_MS,
  });
  return {
    name: 'smtp',
    async send(message: MailMessage): Promise<void> {
      await transporter.sendMail({
        from: config.mailFrom,
        to: message.to,
        subject: message.subject,
        text: message.text,
        html: message.html,
        messageId: `<${message.id}@${messageIdHost}>`,
        // RFC 3834: tells auto-responders (out-of-office, vacation) not to answer.
        headers: { 'Auto-Submitted': 'auto-generated' },
      });
    },
    async close(): Promise<void> {
      transporter.close();
    },
  };
}
