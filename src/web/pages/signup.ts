/** The sign-up page (`/signup`). */
import { html } from '../html.ts';
import { alertBox, field, layout, loginEnrollment, statusBox } from './layout.ts';
import { returnToData, withReturnTo, type PageContext } from './common.ts';

/** Renders the sign-up form; every rule is the API's, errors come back as problem details. */
export function signupPage(ctx: PageContext): string {
  const { productName } = ctx.config;
  const body = html`<section class="card" aria-labelledby="signup-title">
<h1 id="signup-title">Create your account</h1>
<p class="lead">One account for every application behind ${productName}.</p>
${alertBox('signup-alert')}
${statusBox('signup-status')}
<form method="post" id="signup-form" novalidate>
${field({ id: 'username', label: 'Username', autocomplete: 'username', autofocus: true, hint: '3 to 32 letters, digits, dots, dashes or underscores.' })}
${field({ id: 'email', label: 'Email', type: 'email', autocomplete: 'email', inputmode: 'email' })}
${field({ id: 'password1', label: 'Password', type: 'password', autocomplete: 'new-password', hint: 'At least 8 characters. Long passphrases are best.' })}
${field({ id: 'password2', label: 'Confirm password', type: 'password', autocomplete: 'new-password' })}
<button type="submit" class="primary">Sign up</button>
</form>
<p class="links" id="signup-links">Already have an account? <a href="${withReturnTo('/login', ctx)}">Log in</a></p>
</section>
<section class="card" id="signup-enroll-screen" aria-labelledby="signup-enroll-title" hidden>
<h1 id="signup-enroll-title" tabindex="-1">Set up two-factor authentication</h1>
<p class="lead">Your account is created. ${productName} requires a second factor for every account: add it to an authenticator app to finish.</p>
${alertBox('signup-enroll-alert')}
${loginEnrollment(productName, 'signup-enroll')}
</section>
<section class="card" id="signup-codes-screen" aria-labelledby="signup-codes-title" hidden>
<h1 id="signup-codes-title" tabindex="-1">Save your backup codes</h1>
<p class="lead">Two-factor authentication is on. If you lose your phone, one of these codes lets you log in. Each code works once; they are shown only now.</p>
<ol id="signup-codes" class="codes" aria-labelledby="signup-codes-title"></ol>
<button type="button" class="primary" id="signup-codes-continue">Continue</button>
</section>`;
  return layout({ productName, title: 'Sign up', body, script: 'signup.js', needsScript: true, data: returnToData(ctx) });
}
