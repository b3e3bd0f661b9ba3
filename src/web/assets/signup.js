// Sign-up page: creates the account through the API, then logs the new user in.
import { api, busy, byId, clearProblem, returnTo, say, showCodes, showEnrollment, showProblem, valueOf } from './common.js';

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
  if (login.problem?.code === 'mfa_enrollment_required') {
    // The service requires a second factor: go straight on to setting it up here, while the
    // password is still in this page's memory (it is never stored or passed to another page).
    const qr = await api('POST', '/api/v1/auth-totp/qrcode', { username: body.username, password: body.password1 });
    if (qr.ok) return startEnrollment(body.username, body.password1, qr.data);
  }
  form.hidden = true;
  byId('signup-links').hidden = true;
  const loginHref = `/login${returnTo() ? `?return_to=${encodeURIComponent(/** @type {string} */ (returnTo()))}` : ''}`;
  const text = login.problem?.code === 'mfa_enrollment_required'
    ? 'Your account is created. This service requires two-factor authentication: log in to set it up.'
    : 'Your account is created. Check your inbox and open the link we sent to verify your e-mail address.';
  say(statusEl, text, { href: loginHref, text: 'Log in' });
});

function welcome() {
  const next = returnTo();
  location.assign(`/account?welcome=1${next ? `&return_to=${encodeURIComponent(next)}` : ''}`);
}

/** Shows the QR code of the pending secret; the first login with a code from it turns TOTP on. */
function startEnrollment(username, password, enrollment) {
  form.closest('section')?.setAttribute('hidden', '');
  const screen = byId('signup-enroll-screen');
  showEnrollment(/** @type {HTMLImageElement} */ (byId('signup-enroll-qr')), byId('signup-enroll-secret'), enrollment);
  screen.hidden = false;
  byId('signup-enroll-code').focus();
  const enrollForm = /** @type {HTMLFormElement} */ (byId('signup-enroll-form'));
  const enrollAlert = byId('signup-enroll-alert');
  enrollForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearProblem(enrollForm, enrollAlert);
    const code = valueOf(enrollForm, 'security_code').replace(/\s+/g, '');
    const res = await busy(enrollForm.querySelector('button[type="submit"]'), () =>
      api('POST', '/api/v1/auth-jwt/login', { username, password, security_code: code }),
    );
    if (!res.ok) {
      showProblem(enrollForm, enrollAlert, res, {
        fields: { invalid_security_code: 'security_code' },
        messages: { invalid_security_code: 'That code is not right. Check the time on your phone and try the new code.' },
      });
      return;
    }
    const codes = Array.isArray(res.data?.backup_codes) ? res.data.backup_codes.map(String) : [];
    if (codes.length === 0) return welcome();
    screen.hidden = true;
    showCodes(byId('signup-codes'), codes);
    byId('signup-codes-screen').hidden = false;
    byId('signup-codes-title').focus();
  });
}

byId('signup-codes-continue').addEventListener('click', () => {
  byId('signup-codes').replaceChildren();
  welcome();
});
