/** The page the e-mail verification link lands on (`/verify-email?status=ok|invalid`). */
import { html } from '../html.ts';
import { alertBox, layout, statusBox } from './layout.ts';
import type { PageContext } from './common.ts';

/**
 * Renders the outcome of the verification. The API's link redirects here with `status`; a bare
 * `?token=` (no status) gets a button that verifies through the API, so link scanners that only
 * fetch pages never consume the token.
 */
export function verifyEmailPage(ctx: PageContext, status: string | undefined, token: string | undefined): string {
  const { productName } = ctx.config;
  let body;
  if (status === 'ok') {
    body = html`<section class="card" aria-labelledby="verify-title">
<p class="big-icon ok" aria-hidden="true">✓</p>
<h1 id="verify-title">Your e-mail address is verified</h1>
<p>Thank you. Your address is confirmed and can now receive sign-in codes and password reset links.</p>
<p class="links"><a class="button" href="/account">Go to your account</a></p>
</section>`;
  } else if (status === undefined && token) {
    body = html`<section class="card" aria-labelledby="verify-title">
<h1 id="verify-title">Verify your e-mail address</h1>
${alertBox('verify-alert')}
${statusBox('verify-status')}
<form method="post" id="verify-form" data-token="${token}">
<button type="submit" class="primary">Verify my e-mail address</button>
</form>
</section>`;
  } else {
    body = html`<section class="card" aria-labelledby="verify-title">
<p class="big-icon bad" aria-hidden="true">!</p>
<h1 id="verify-title">This verification link did not work</h1>
<p>The link is invalid, was already used, or has expired. Log in and ask for a new verification e-mail from your account page.</p>
<p class="links"><a class="button" href="/account">Go to your account</a></p>
</section>`;
  }
  const withScript = status === undefined && Boolean(token);
  return layout({ productName, title: 'Verify e-mail', body, script: withScript ? 'verify-email.js' : undefined, needsScript: withScript });
}
