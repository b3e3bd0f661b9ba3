/** What the rest of the service knows about mail: templates are rendered, queued, then delivered by the worker. */

/** The kinds of mail Twofold sends. */
export type MailKind =
  | 'verify_email'
  | 'password_reset'
  | 'password_changed'
  | 'email_otp_login'
  | 'email_otp_enable'
  | 'factor_added'
  | 'factor_removed'
  | 'mfa_reset';

/** A rendered message ready to deliver. `id` is the outbox row id, used as a stable Message-ID. */
export interface MailMessage {
  id: string;
  kind: MailKind;
  to: string;
  subject: string;
  text: string;
  html: string;
}

/** Delivers one message or throws; the outbox worker retries on throw. */
export interface MailTransport {
  readonly name: string;
  send(message: MailMessage): Promise<void>;
  close(): Promise<void>;
}
