/** Starting TOTP enrolment: a fresh 160-bit secret, sealed and stored as pending, shown as URI and QR code. */
import QRCode from 'qrcode';
import type { Deps } from '../deps.ts';
import type { Queryable } from '../db/database.ts';
import { AppError } from '../errors.ts';
import { generateTotpSecret, totpUri } from '../crypto/totp.ts';
import { setPendingSecret, setPendingSecretIfInactive } from '../db/repositories/totp-factors.ts';
import type { UserRow } from '../db/repositories/users.ts';

/** What a client needs to add the account to an authenticator app. */
export interface TotpEnrollment {
  otpauth_uri: string;
  secret: string;
  qr_code_png_base64: string;
}

/**
 * Stores a new pending secret for `user` and returns it. With `onlyIfInactive` (the password-only
 * `/qrcode` path) an active secret is never replaced: 409 totp_already_enabled.
 */
export async function startTotpEnrollment(deps: Deps, tx: Queryable, user: Pick<UserRow, 'id' | 'username'>, onlyIfInactive: boolean): Promise<TotpEnrollment> {
  const secret = generateTotpSecret();
  const sealed = deps.secretBox.seal(secret);
  const now = deps.clock();
  if (onlyIfInactive) {
    if (!(await setPendingSecretIfInactive(tx, user.id, sealed, now))) throw new AppError('totp_already_enabled');
  } else {
    await setPendingSecret(tx, user.id, sealed, now);
  }
  const uri = totpUri(deps.config.totpIssuer, user.username, secret);
  return { otpauth_uri: uri, secret, qr_code_png_base64: (await qrPng(uri)).toString('base64') };
}

/** The QR code of `uri` as PNG (error correction M: scans reliably from a screen). */
export function qrPng(uri: string): Promise<Buffer> {
  return QRCode.toBuffer(uri, { type: 'png', errorCorrectionLevel: 'M', margin: 2, width: 256 });
}

/** The QR code of `uri` as SVG. */
export function qrSvg(uri: string): Promise<string> {
  return QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
}
