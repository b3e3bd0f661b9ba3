/** Test helpers for the account lifecycle: the links in delivered mail, and waiting for deferred work. */
import type { MailKind, MailMessage } from '../../src/mail/types.ts';
import { settleDeferred } from '../../src/services/deferred.ts';
import type { TestApp } from './app.ts';

/** Waits for work started after a response (forgot, resend), then delivers every due mail. */
export async function settleAndDeliver(t: TestApp): Promise<MailMessage[]> {
  await settleDeferred(t.deps);
  return t.deliverMail();
}

/** Delivered mails of `kind` to `address` (case-insensitive), oldest first. */
export function mailsTo(t: TestApp, address: string, kind?: MailKind): MailMessage[] {
  return t.mail.sent.filter((m) => m.to.toLowerCase() === address.toLowerCase() && (kind === undefined || m.kind === kind));
}

const LINK = /(https?:\/\/[^\s"<>]+[?&]token=([A-Za-z0-9_%-]+))/;

/** The link and its token in a mail's text; throws when there is none. */
export function linkOf(mail: MailMessage): { url: string; token: string } {
  const m = LINK.exec(mail.text);
  if (!m) throw new Error(`no link with a token in mail "${mail.subject}"`);
  return { url: m[1]!, token: decodeURIComponent(m[2]!) };
}

/** Settles, delivers, and returns the token of the newest mail of `kind` to `address`. */
export async function latestToken(t: TestApp, address: string, kind: 'verify_email' | 'password_reset'): Promise<string> {
  await settleAndDeliver(t);
  const mails = mailsTo(t, address, kind);
  const last = mails[mails.length - 1];
  if (!last) throw new Error(`no ${kind} mail to ${address}`);
  return linkOf(last).token;
}
