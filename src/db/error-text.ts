/**
 * The text a worker stores as a row's `last_error` (the mail outbox, event deliveries). It often
 * quotes the other side (a receiver's answer body, an SMTP server's reply), and PostgreSQL refuses a
 * NUL character in text: the failure could not be recorded, so the row got no backoff and was never
 * given up, sent again at every end of its lease. NUL becomes U+FFFD; the text is cut to a bound.
 */
const MAX_ERROR_LENGTH = 1000;

export function storedErrorText(s: string): string {
  const text = s.replaceAll('\u0000', '\uFFFD');
  return text.length > MAX_ERROR_LENGTH ? text.slice(0, MAX_ERROR_LENGTH - 1) + '…' : text;
}
