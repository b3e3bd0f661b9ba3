/**
 * What a username and an e-mail address may contain. Both are printable ASCII: the sign-up schemas
 * say so (the username pattern below, the `email` format), and the service checks it again for callers
 * that skip the schemas (the CLI). Lookups rely on it: PostgreSQL's lower() and JavaScript's
 * toLowerCase() agree on ASCII, but not beyond it (the dotted capital İ is "i" to the database and
 * "i̇", two characters, to JavaScript), and the limiter's account keys are folded in JavaScript.
 */

import { fullFormats } from 'ajv-formats/dist/formats.js';

/** 3–32 of A-Za-z0-9_.- (the route schema's pattern). */
export const USERNAME_PATTERN = '^[A-Za-z0-9_.-]{3,32}$';

/**
 * Usernames no account may take, compared lower-cased: fixed paths that sit where a public profile
 * would (`GET /api/v1/user/{username}`). A user named `security-events` signed up fine, and the
 * profile's canonical path answered the caller's own audit entries instead (or 401). A test checks
 * that every such GET route of the app is listed here.
 */
export const RESERVED_USERNAMES: ReadonlySet<string> = new Set(['security-events']);

/** True when `username` may not be taken (see {@link RESERVED_USERNAMES}). */
export function isReservedUsername(username: string): boolean {
  return RESERVED_USERNAMES.has(username.toLowerCase());
}

/**
 * True when `s` is an address the API's `email` format accepts (ajv-formats, the validator of the
 * route schemas), at most 254 characters. The service applies it for callers without the schemas (the
 * CLI): a looser rule let `x,attacker@evil.example` in, which the mailer sends to two recipients.
 */
export function isValidEmail(s: string): boolean {
  return s.length <= 254 && isPlainAscii(s) && (fullFormats.email as RegExp).test(s);
}

/** True when `s` is printable ASCII only (no spaces): the only names an account can have. */
export function isPlainAscii(s: string): boolean {
  return /^[\x21-\x7e]*$/.test(s);
}
