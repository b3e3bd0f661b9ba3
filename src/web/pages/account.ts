/** The account page (`/account`): profile, second factors, backup codes, password, sessions, recent security activity, log out. */
import { html } from '../html.ts';
import { alertBox, enrollmentSteps, field, layout, statusBox } from './layout.ts';
import { returnToData, type PageContext } from './common.ts';

/** A link back to the application the user came from, when `return_to` names another origin. */
function continueLink(ctx: PageContext) {
  if (!ctx.returnTo) return '';
  const url = new URL(ctx.returnTo);
  if (url.origin === ctx.config.publicOrigin) return '';
  return html`<p class="continue"><a class="button primary" href="${url.href}">Continue to ${url.host}</a></p>`;
}

/** Renders the skeleton of the account page; the script fills it from `GET /api/v1/auth-jwt/user-info`. */
export function accountPage(ctx: PageContext, welcome: boolean): string {
  const { productName } = ctx.config;
  const welcomeText = welcome
    ? 'Welcome! Your account is ready. We sent you an e-mail: open the link in it to verify your address.'
    : undefined;
  const body = html`<div class="page-head">
<h1>Your account</h1>
<button type="button" id="logout" class="secondary">Log out</button>
</div>
${continueLink(ctx)}
${statusBox('account-status', welcomeText)}
${alertBox('account-alert')}
<div id="account-loading" class="loading" aria-live="polite">Loading your account…</div>
<div id="account-content" hidden>

<section class="card" aria-labelledby="profile-title">
<h2 id="profile-title">Profile</h2>
<dl class="profile">
<div><dt>Username</dt><dd id="profile-username"></dd></div>
<div><dt>Email</dt><dd><span id="profile-email"></span> <span id="profile-email-badge" class="badge"></span></dd></div>
<div><dt>Member since</dt><dd id="profile-created"></dd></div>
</dl>
<div id="verify-row" hidden>
<p>Your e-mail address is not verified yet. Verified addresses can receive sign-in codes and reset links.</p>
<button type="button" id="resend-verification" class="secondary">Resend verification e-mail</button>
</div>
</section>

<section class="card" aria-labelledby="mfa-title">
<h2 id="mfa-title" tabindex="-1">Two-factor authentication</h2>
<p id="mfa-summary"></p>
${alertBox('mfa-alert')}
${statusBox('mfa-status')}

<div class="factor">
<div class="factor-head">
<div><h3>Authenticator app</h3><p class="muted">Codes from an app such as Google Authenticator, 1Password or Aegis.</p></div>
<span id="totp-badge" class="badge"></span>
</div>
<div class="actions">
<button type="button" id="totp-enable" class="primary" hidden>Enable two-factor authentication</button>
<button type="button" id="totp-disable" class="secondary" hidden>Turn off authenticator app</button>
</div>
<div id="totp-enroll" class="panel" hidden>
${enrollmentSteps({
    productName,
    qrId: 'totp-qr',
    secretId: 'totp-secret',
    form: html`<form method="post" id="totp-confirm-form" novalidate>
${field({ id: 'totp-code', name: 'security_code', label: 'Security code', autocomplete: 'one-time-code', inputmode: 'numeric' })}
<div class="actions"><button type="submit" class="primary">Verify</button><button type="button" class="secondary" id="totp-cancel">Cancel</button></div>
</form>`,
  })}
</div>
<form method="post" id="totp-disable-form" class="panel" novalidate hidden>
<p>Confirm with your password to turn off the authenticator app.</p>
${field({ id: 'totp-disable-password', name: 'password', label: 'Your password', type: 'password', autocomplete: 'current-password' })}
<div class="actions"><button type="submit" class="danger">Turn off</button><button type="button" class="secondary" id="totp-disable-cancel">Cancel</button></div>
</form>
</div>

<div class="factor">
<div class="factor-head">
<div><h3>Codes by e-mail</h3><p class="muted">A one-time code sent to your verified e-mail address.</p></div>
<span id="email-otp-badge" class="badge"></span>
</div>
<div class="actions">
<button type="button" id="email-otp-enable" class="secondary" hidden>Enable e-mail codes</button>
<button type="button" id="email-otp-disable" class="secondary" hidden>Turn off e-mail codes</button>
</div>
<form method="post" id="email-otp-confirm-form" class="panel" novalidate hidden>
<p>We sent a code to your e-mail address. Enter it to turn on e-mail codes.</p>
${field({ id: 'email-otp-code', name: 'code', label: 'Code from the e-mail', autocomplete: 'one-time-code', inputmode: 'numeric' })}
<div class="actions"><button type="submit" class="primary">Verify code</button><button type="button" class="secondary" id="email-otp-cancel">Cancel</button></div>
</form>
</div>

<div class="factor" id="passkey-factor">
<div class="factor-head">
<div><h3>Passkeys</h3><p class="muted">Sign in with your fingerprint, face or screen lock instead of a code — and a passkey never works on a fake site.</p></div>
<span id="passkey-badge" class="badge"></span>
</div>
<ul id="passkeys" class="passkeys" aria-label="Your passkeys"></ul>
<p id="passkey-note" class="muted" hidden></p>
<div class="actions"><button type="button" id="passkey-add" class="secondary">Add a passkey</button></div>
</div>

<div class="factor" id="backup-factor">
<div class="factor-head">
<div><h3>Backup codes</h3><p class="muted">Single-use codes for when you cannot use your phone or e-mail.</p></div>
<span id="backup-badge" class="badge"></span>
</div>
<div class="actions"><button type="button" id="backup-regenerate" class="secondary" hidden>Generate new backup codes</button></div>
</div>

<div id="backup-codes-panel" class="panel codes-panel" hidden>
<h3 id="backup-codes-title" tabindex="-1">Save your backup codes</h3>
<p>Each code works once. Keep them somewhere safe: they are shown only now.</p>
<ol id="backup-codes" class="codes" aria-labelledby="backup-codes-title"></ol>
<div class="actions">
<button type="button" id="backup-copy" class="secondary">Copy</button>
<button type="button" id="backup-download" class="secondary">Download</button>
<button type="button" id="backup-done" class="primary">I have saved them</button>
</div>
${statusBox('backup-status')}
</div>
</section>

<section class="card" aria-labelledby="password-title">
<h2 id="password-title">Change password</h2>
${alertBox('password-alert')}
${statusBox('password-status')}
<form method="post" id="password-form" novalidate>
${field({ id: 'current_password', label: 'Current password', type: 'password', autocomplete: 'current-password' })}
${field({ id: 'new-password1', name: 'password1', label: 'New password', type: 'password', autocomplete: 'new-password' })}
${field({ id: 'new-password2', name: 'password2', label: 'Confirm new password', type: 'password', autocomplete: 'new-password' })}
<button type="submit" class="primary">Change password</button>
</form>
</section>

<section class="card" aria-labelledby="sessions-title">
<h2 id="sessions-title">Sessions</h2>
<p class="muted">Devices where you are logged in. Revoke any you do not recognise.</p>
${alertBox('sessions-alert')}
<ul id="sessions" class="sessions"></ul>
</section>

<section class="card" aria-labelledby="connected-apps-title">
<h2 id="connected-apps-title">Connected applications</h2>
<p class="muted">Applications you signed in to with your ${productName} account. Disconnecting one ends its access; it asks again next time.</p>
${alertBox('connected-apps-alert')}
<p id="connected-apps-none" class="muted" hidden>None yet.</p>
<ul id="connected-apps" class="sessions"></ul>
</section>

<section class="card" aria-labelledby="activity-title">
<h2 id="activity-title">Recent security activity</h2>
<p class="muted">Logins, failed attempts, second-factor and password changes on your account. Something you do not recognise? Change your password and end your other sessions.</p>
${alertBox('activity-alert')}
<ul id="activity" class="sessions activity"></ul>
<button type="button" id="activity-more" class="secondary" hidden>Show more</button>
</section>
</div>`;
  return layout({ productName, title: 'Your account', body, script: 'account.js', width: 'wide', needsScript: true, data: { ...returnToData(ctx), 'passkey-origin': ctx.config.webauthn.origin } });
}
