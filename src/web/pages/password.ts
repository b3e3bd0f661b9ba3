/** The forgot-password (`/forgot-password`) and reset-password (`/reset-password?token=`) pages. */
import { html } from '../html.ts';
import { alertBox, field, layout, statusBox } from './layout.ts';
import type { PageContext } from './common.ts';

/** Renders the form that asks for a reset link by e-mail. */
export function forgotPasswordPage(ctx: PageContext): string {
  const { productName } = ctx.config;
  const body = html`<section class="card" aria-labelledby="forgot-title">
<h1 id="forgot-title">Forgot your password?</h1>
<p class="lead">Enter the e-mail address of your account and we will send you a link to choose a new password.</p>
${alertBox('forgot-alert')}
${statusBox('forgot-status')}
<form method="post" id="forgot-form" novalidate>
${field({ id: 'email', label: 'Email', type: 'email', autocomplete: 'email', inputmode: 'email', autofocus: true })}
<button type="submit" class="primary">Send reset link</button>
</form>
<p class="links"><a href="/login">Back to log in</a></p>
</section>`;
  return layout({ productName, title: 'Forgot password', body, script: 'password.js', needsScript: true });
}

/** Renders the form that sets a new password with the token of the e-mailed link. */
export function resetPasswordPage(ctx: PageContext, token: string | undefined): string {
  const { productName } = ctx.config;
  const body = token
    ? html`<section class="card" aria-labelledby="reset-title">
<h1 id="reset-title">Choose a new password</h1>
<p class="lead">Setting a new password logs you out everywhere.</p>
${alertBox('reset-alert')}
${statusBox('reset-status')}
<form method="post" id="reset-form" novalidate data-token="${token}">
${field({ id: 'password1', label: 'New password', type: 'password', autocomplete: 'new-password', autofocus: true, hint: 'At least 8 characters. Long passphrases are best.' })}
${field({ id: 'password2', label: 'Confirm new password', type: 'password', autocomplete: 'new-password' })}
<button type="submit" class="primary">Set new password</button>
</form>
<p class="links" id="reset-links"><a href="/login">Back to log in</a></p>
</section>`
    : html`<section class="card" aria-labelledby="reset-title">
<h1 id="reset-title">This link is incomplete</h1>
<p>The password reset link has no token. Open the link from the e-mail again, or ask for a new one.</p>
<p class="links"><a class="button" href="/forgot-password">Request a new link</a></p>
</section>`;
  return layout({ productName, title: 'Reset password', body, script: token ? 'password.js' : undefined, needsScript: Boolean(token) });
}
