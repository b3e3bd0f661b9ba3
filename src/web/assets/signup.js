// Sign-up page: creates the account through the API, then logs the new user in.
import { api, busy, byId, returnTo, say, showProblem, valueOf } from './common.js';

const form = /** @type {HTMLFormElement} */ (byId('signup-form'));
const alertEl = byId('signup-alert');
const statusEl = byId('signup-status');

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const body = {
    username: valueOf(form, 'username'),
    email: valueOf(form, 'email'),
    password1: valueOf(form, 'password1'),
    password2: valueOf(form, 'password2'),
  };
  const button = form.querySelector('button[type="submit"]');
  const created = await busy(button, () => api('POST', '/api/v1/user', body));
  if (!created.ok) {
    showProblem(form, alertEl, created, { fields: { username_taken: 'username', email_taken: 'email' } });
    return;
  }
  alertEl.replaceChildren();
  say(statusEl, 'Your account is created. Logging you in…');
  // Log straight in with the same credentials; where the service requires a verified address first
  // (or anything else stops the login) the user is told to check the inbox and log in later.
  const login = await busy(button, () => api('POST', '/api/v1/auth-jwt/login', { username: body.username, password: body.password1 }));
  if (login.ok) {
    const next = returnTo();
    location.assign(`/account?welcome=1${next ? `&return_to=${encodeURIComponent(next)}` : ''}`);
    return;
  }
  form.hidden = true;
  byId('signup-links').hidden = true;
  const loginHref = `/login${returnTo() ? `?return_to=${encodeURIComponent(/** @type {string} */ (returnTo()))}` : ''}`;
  const text = login.problem?.code === 'mfa_enrollment_required'
    ? 'Your account is created. This service requires two-factor authentication: log in to set it up.'
    : 'Your account is created. Check your inbox and open the link we sent to verify your e-mail address.';
  say(statusEl, text, { href: loginHref, text: 'Log in' });
});
