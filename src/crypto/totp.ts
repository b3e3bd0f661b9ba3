/** RFC 6238 TOTP (SHA-1, 6 digits, 30 s) through `otpauth`; only the URI layout is ours (the contract fixes it). */
import { Secret, TOTP } from 'otpauth';

export const TOTP_PERIOD_SECONDS = 30;
export const TOTP_DIGITS = 6;

/** A fresh 160-bit secret, base32 (RFC 4226 recommends 160 bits). */
export function generateTotpSecret(): string {
  return new Secret({ size: 20 }).base32;
}

function totp(secretBase32: string, digits = TOTP_DIGITS): TOTP {
  return new TOTP({ secret: Secret.fromBase32(secretBase32), algorithm: 'SHA1', digits, period: TOTP_PERIOD_SECONDS });
}

/** The time step (counter) of `date`. */
export function totpStep(date: Date): number {
  return Math.floor(date.getTime() / 1000 / TOTP_PERIOD_SECONDS);
}

/** The code for `date` (tests and the enrolment page use it). */
export function totpCodeAt(secretBase32: string, date: Date, digits = TOTP_DIGITS): string {
  return totp(secretBase32, digits).generate({ timestamp: date.getTime() });
}

/**
 * The time step `code` belongs to, within ±`window` steps of `date`, or null. The caller must still
 * refuse a step not later than the last accepted one (replay), with a guarded update.
 */
export function matchTotpStep(secretBase32: string, code: string, date: Date, window = 1): number | null {
  if (!/^\d{6}$/.test(code)) return null;
  const delta = totp(secretBase32).validate({ token: code, timestamp: date.getTime(), window });
  return delta === null ? null : totpStep(date) + delta;
}

/** The `otpauth://` URI of the contract: `otpauth://totp/<ISSUER>:<username>?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`. */
export function totpUri(issuer: string, username: string, secretBase32: string): string {
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(username)}`;
  return `otpauth://totp/${label}?secret=${secretBase32}&issuer=${encodeURIComponent(issuer)}&algorithm=SHA1&digits=${TOTP_DIGITS}&period=${TOTP_PERIOD_SECONDS}`;
}
