/** The login page (`/` and `/login`): password first, then a second screen for the security code. */
import { html } from '../html.ts';
import { alertBox, field, layout, loginEnrollment, statusBox } from './layout.ts';
import { returnToData, withReturnTo, type PageContext } from './common.ts';

/** The name shown in "to continue to …": the application's host when returning to one. */
function continueTo(ctx: PageContext): string {
  if (!ctx.returnTo) return ctx.config.productName;
  const url = new URL(ctx.returnTo);
  return url.origin === ctx.config.publicOrigin ? ctx.config.productName : url.host;
}

/**
 * Renders the login page. All three screens are in the document and the script switches between them:
 * password, second factor, and (under `MFA_POLICY=required`) enrolment of an authenticator app.
 */
export function loginPage(ctx: PageContext): string {
  const { productName } = ctx.config;
  const body = html`<section class="card" id="login-screen" aria-labelledby="login-title">
<h1 id="login-title">Log in</h1>
<p class="lead">to continue to ${continueTo(ctx)}</p>
${alertBox('login-alert')}
<form method="post" id="login-form" novalidate>
${field({ id: 'username', label: 'Username or email', autocomplete: 'username webauthn', autofocus: true })}
${field({ id: 'password', label: 'Password', type: 'password', autocomplete: 'current-password' })}
<button type="submit" class="primary">Log in</button>
</form>
<div id="passkey-signin" class="passkey-signin">
<p class="divider"><span>or</span></p>
<button type="button" id="passkey-login" class="secondary wide">Sign in with a passkey</button>
<p id="passkey-note" class="muted" hidden></p>
</div>
<p class="links"><a href="/forgot-password">Forgot your password?</a></p>
<p class="links">New here? <a href="${withReturnTo('/signup', ctx)}">Create an account</a></p>
</section>
<section class="card" id="mfa-screen" aria-labelledby="mfa-title" hidden>
<h1 id="mfa-title">Two-factor authentication</h1>
<p class="lead" id="mfa-hint">Enter the 6-digit code from your authenticator app.</p>
${alertBox('mfa-alert')}
${statusBox('mfa-status')}
<form method="post" id="mfa-form" novalidate>
${field({ id: 'code', name: 'code', label: 'Security code', autocomplete: 'one-time-code', inputmode: 'numeric' })}
<button type="submit" class="primary">Verify</button>
</form>
<div id="mfa-passkey" hidden>
<button type="button" class="primary" id="mfa-passkey-button">Use your passkey</button>
</div>
<div class="alt-methods">
<button type="button" class="link" id="use-passkey" hidden>Use a passkey</button>
<button type="button" class="link" id="use-totp" hidden>Use your authenticator app</button>
<button type="button" class="link" id="use-backup" hidden>Use a backup code</button>
<button type="button" class="link" id="use-email" hidden>Email me a code</button>
<button type="button" class="link" id="start-over">Start over</button>
</div>
</section>
<section class="card" id="enroll-screen" aria-labelledby="enroll-title" hidden>
<h1 id="enroll-title">Set up two-factor authentication</h1>
<p class="lead">${productName} requires a second factor for every account. Add it to an authenticator app to finish logging in.</p>
${alertBox('enroll-alert')}
${loginEnrollment(productName, 'enroll')}
<div class="alt-methods"><button type="button" class="link" id="enroll-start-over">Start over</button></div>
</section>
<section class="card" id="after-login-screen" aria-labelledby="after-login-title" hidden>
<h1 id="after-login-title" tabindex="-1">You are logged in</h1>
<p class="lead" id="after-login-text"></p>
<div id="login-codes-panel" class="panel codes-panel" hidden>
<p>Each code works once. Keep them somewhere safe: they are shown only now.</p>
<ol id="login-codes" class="codes" aria-labelledby="after-login-title"></ol>
</div>
<button type="button" class="primary" id="after-login-continue">Continue</button>
</section>`;
  return layout({ productName, title: 'Log in', body, script: 'login.js', needsScript: true, data: { ...returnToData(ctx), 'passkey-origin': ctx.config.webauthn.origin } });
}
