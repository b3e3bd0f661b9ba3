// Forgot-password and reset-password pages.
import { api, busy, byId, say, showProblem, valueOf } from './common.js';

const forgotForm = /** @type {HTMLFormElement | null} */ (document.getElementById('forgot-form'));
const resetForm = /** @type {HTMLFormElement | null} */ (document.getElementById('reset-form'));

if (forgotForm) {
  const alertEl = byId('forgot-alert');
  const statusEl = byId('forgot-status');
  forgotForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const email = valueOf(forgotForm, 'email');
    const res = await busy(forgotForm.querySelector('button[type="submit"]'), () => api('POST', '/api/v1/user/password/forgot', { email }));
    if (!res.ok) return showProblem(forgotForm, alertEl, res);
    alertEl.replaceChildren();
    forgotForm.hidden = true;
    // The API answers the same for unknown addresses, so the page cannot say more than this.
    say(statusEl, `If an account exists for ${email}, we sent it a link to choose a new password. Check your inbox.`);
  });
}

if (resetForm) {
  const alertEl = byId('reset-alert');
  const statusEl = byId('reset-status');
  const token = resetForm.dataset.token ?? '';
  // Keep the one-time token out of the address bar, the history and anything copied from them.
  window.history.replaceState(null, '', '/reset-password');
  resetForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = { token, password1: valueOf(resetForm, 'password1'), password2: valueOf(resetForm, 'password2') };
    const res = await busy(resetForm.querySelector('button[type="submit"]'), () => api('POST', '/api/v1/user/password/reset', body));
    if (res.ok) {
      alertEl.replaceChildren();
      resetForm.hidden = true;
      byId('reset-links').hidden = true;
      say(statusEl, 'Your password has been changed and you were logged out everywhere.', { href: '/login', text: 'Log in with your new password' });
      return;
    }
    if (res.problem?.code === 'invalid_or_expired_token') {
      resetForm.hidden = true;
      say(alertEl, 'This reset link is invalid, was already used, or has expired.', { href: '/forgot-password', text: 'Request a new link' });
      return;
    }
    showProblem(resetForm, alertEl, res);
  });
}
