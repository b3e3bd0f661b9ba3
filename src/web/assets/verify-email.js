// E-mail verification by button: the mailed link only shows this page (a GET never spends the token,
// so mail scanners cannot use it up); the person's click POSTs it.
import { api, busy, byId, say } from './common.js';

const form = /** @type {HTMLFormElement} */ (byId('verify-form'));
const alertEl = byId('verify-alert');
const token = form.dataset.token ?? '';
window.history.replaceState(null, '', '/verify-email');

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const res = await busy(form.querySelector('button'), () => api('POST', '/api/v1/user/email/verify', { token }));
  form.hidden = true;
  if (res.ok || res.status === 400) {
    // The outcome pages; the token is spent (or was never good), so nothing is lost by leaving.
    window.location.replace(res.ok ? '/verify-email?status=ok' : '/verify-email?status=invalid');
    return;
  }
  alertEl.replaceChildren();
  say(alertEl, 'The address could not be verified just now. Try the button again in a moment.');
  form.hidden = false;
});
