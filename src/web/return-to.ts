/**
 * Validation of the `return_to` parameter of the hosted pages. Only URLs on the service's own origin
 * or on an origin listed in `TRUSTED_ORIGINS` are honoured, so the login page can never be used as an
 * open redirect (a classic phishing aid). The browser script repeats the same check before navigating.
 */

/** Longest `return_to` accepted; anything longer is ignored rather than truncated. */
export const RETURN_TO_MAX_LENGTH = 2048;

/**
 * Returns the absolute URL to send the user back to, or `undefined` when `raw` is absent or not allowed.
 * Relative values are resolved against `publicOrigin`; the result must be http(s), carry no
 * credentials, and its origin must equal one of `allowedOrigins` exactly.
 */
export function safeReturnTo(raw: unknown, publicOrigin: string, allowedOrigins: readonly string[]): string | undefined {
  if (typeof raw !== 'string' || raw === '' || raw.length > RETURN_TO_MAX_LENGTH) return undefined;
  let url: URL;
  try {
    url = new URL(raw, publicOrigin);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  // `https://app.example@evil.example/` style tricks are caught by the origin check; credentials on an
  // allowed origin are refused too, as no application needs them in a redirect.
  if (url.username !== '' || url.password !== '') return undefined;
  if (url.origin !== publicOrigin && !allowedOrigins.includes(url.origin)) return undefined;
  return url.href;
}

/** The origins a `return_to` may point at: the service's own and the trusted ones, without repeats. */
export function returnToOrigins(publicOrigin: string, trustedOrigins: readonly string[]): string[] {
  return [...new Set([publicOrigin, ...trustedOrigins])];
}
