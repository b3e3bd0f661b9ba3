// E-mail verification by button, for links that carry the token to this page.
import { api, busy, byId, say } from './common.js';

const form = /** @type {HTMLFormElement} */ (byId('verify-form'));
const alertEl = byId('verify-alert');
const statusEl = byId('verify-status');
const token = form.dataset.token ?? '';
window.history.replaceState(null, '', '/verify-email');

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const res = await busy(form.querySelector('button'), () => api('POST', '/api/v1/user/email/verify', { token }));
  form.hidden = true;
  if (res.ok) {
    alertEl.replaceChildren();
    say(statusEl, 'Your e-mail address is verified.', { href: '/account', text: 'Go to your account' });
  } else {
    say(alertEl, 'This verification link is invalid, was already used, or has expired. Log in and ask for a new one from your account page.', {
      href: '/account',
      text: 'Go to your account',
    });
  }
});
