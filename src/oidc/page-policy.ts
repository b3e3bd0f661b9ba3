/**
 * The rules the provider's pages and the interaction routes share, apart from the engine itself: this
 * module does not load oidc-provider, so the interaction routes can be registered while the engine is
 * loaded on first use (mount.ts).
 */

/**
 * True when `acrValues` (the acr_values parameter) leaves nothing but aal2. acr_values is a voluntary
 * list in order of preference (OpenID Connect Core 3.1.2.1): "aal1 aal2" accepts an aal1 login, so
 * only a list of aal2 alone makes a second factor a requirement.
 */
export function acrValuesRequireAal2(acrValues: unknown): boolean {
  if (typeof acrValues !== 'string') return false;
  const values = acrValues.split(' ').filter(Boolean);
  return values.length > 0 && values.every((v) => v === 'aal2');
}

/**
 * The CSP source that lets a form lead to `uri` by redirect: its origin for http(s), its scheme for an
 * app's own (RFC 8252 7.1, `com.example.app:/cb`). Such a URL has no origin (`new URL(…).origin` is
 * "null", which is no source at all), so Chromium refused the native application's redirect.
 */
export function formActionSource(uri: string): string {
  const u = new URL(uri);
  return u.protocol === 'http:' || u.protocol === 'https:' ? u.origin : u.protocol;
}

/** Answers with a provider page: HTML, never cached (the engine's own pages, and the refusals in front of it in mount.ts). */
export function sendPage(ctx: { type: string; body: unknown; set(name: string, value: string): void }, body: string): void {
  ctx.type = 'html';
  ctx.set('Cache-Control', 'no-store');
  ctx.body = body;
}

/** Content-Security-Policy of a provider page whose form may lead (by redirect) to `origins` (see {@link formActionSource}). */
export function pageCsp(origins: readonly string[]): string {
  const formAction = ["'self'", ...new Set(origins)].join(' ');
  return `default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action ${formAction}; frame-ancestors 'none'; base-uri 'none'; object-src 'none'`;
}
