/**
 * The provider's hosted pages: consent ("Allow <app> to …"), RP-initiated logout confirmation, and the
 * error page the engine renders. Plain forms, no script: they work with JavaScript off.
 */
import { html, SafeHtml } from '../html.ts';
import { layout } from './layout.ts';

/** What each scope means to a person. */
const SCOPE_TEXT: Readonly<Record<string, string>> = {
  openid: 'Know who you are (your account id)',
  profile: 'See your username and name',
  email: 'See your e-mail address and whether it is verified',
  offline_access: 'Stay signed in when you are not using it (refresh tokens)',
};

export interface ConsentPageInput {
  productName: string;
  uid: string;
  clientName: string;
  clientHost: string;
  username: string;
  scopes: string[];
}

/** "Allow <app> to …": Allow posts to /confirm, Deny to /abort. */
export function consentPage(i: ConsentPageInput): string {
  const items = i.scopes.map((s) => html`<li>${SCOPE_TEXT[s] ?? s}</li>`);
  const body = html`<section class="card" aria-labelledby="consent-title">
<h1 id="consent-title">Allow ${i.clientName}?</h1>
<p class="lead">${i.clientName} (${i.clientHost}) asks to use your ${i.productName} account <strong>${i.username}</strong> to:</p>
<ul class="scopes">${items}</ul>
<form method="post" action="/oidc/interaction/${i.uid}/confirm"><button type="submit" class="primary" id="consent-allow">Allow</button></form>
<form method="post" action="/oidc/interaction/${i.uid}/abort"><button type="submit" class="link" id="consent-deny">Deny</button></form>
<p class="links">You can disconnect it at any time on your <a href="/account">account page</a>, under "Connected applications".</p>
</section>`;
  return layout({ productName: i.productName, title: `Allow ${i.clientName}`, body });
}

/** Whose sign-in a logout confirmation ends, and who the browser is signed in as now (when someone else). */
export interface LogoutAccounts {
  /** The account the provider session belongs to. */
  ending?: string;
  /** The browser's current Twofold account, when it is not `ending` (another user logged in since). */
  stayingSignedIn?: string;
}

/**
 * The logout confirmation: the engine's form (hidden xsrf field) and one button that submits it. It
 * names the account it logs out: on a shared computer, the person at the keyboard may be another
 * user who logged in since, whose own session this does not end.
 */
export function logoutPage(productName: string, engineForm: string, clientName: string | undefined, accounts: LogoutAccounts = {}): string {
  const whose = accounts.ending ? html` of <strong>${accounts.ending}</strong>` : html``;
  const other = accounts.stayingSignedIn
    ? html`<p>You are signed in here as <strong>${accounts.stayingSignedIn}</strong>: that stays. To end it too, log out on your <a href="/account">account page</a>.</p>`
    : html``;
  const body = html`<section class="card" aria-labelledby="logout-title">
<h1 id="logout-title">Log out?</h1>
<p class="lead">${clientName ? html`${clientName} asks to log you out of ${productName}.` : html`Log out of ${productName}?`} This ends the session${whose} here and in the applications signed in with it.</p>
${other}
${new SafeHtml(engineForm)}
<button type="submit" class="primary" form="op.logoutForm" name="logout" value="yes" id="logout-confirm">Log out</button>
<p class="links"><a href="/account">Stay logged in</a></p>
</section>`;
  return layout({ productName, title: 'Log out', body });
}

/** After a logout with no application to return to. */
export function loggedOutPage(productName: string): string {
  const body = html`<section class="card" aria-labelledby="out-title">
<h1 id="out-title">You are logged out</h1>
<p class="links"><a href="/login">Log in again</a></p>
</section>`;
  return layout({ productName, title: 'Logged out', body });
}

/** An error of the provider shown to a person (never a redirect to an unverified redirect_uri). */
export function oidcErrorPage(productName: string, error: string, description: string | undefined): string {
  const body = html`<section class="card" aria-labelledby="error-title">
<h1 id="error-title">Sign-in could not continue</h1>
<p class="notice error" role="alert"><code>${error}</code>${description ? html`: ${description}` : ''}</p>
<p class="links">Go back to the application and try again, or open your <a href="/account">account page</a>.</p>
</section>`;
  return layout({ productName, title: 'Sign-in error', body });
}
