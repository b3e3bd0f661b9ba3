// "Connected applications" on the account page: OpenID clients the person consented to; disconnect one.
import { busy, byId, problemMessage, say } from './common.js';

const SCOPE = { openid: 'your account id', profile: 'username and name', email: 'e-mail address', offline_access: 'access while you are away' };

/** Lists the connected applications through `call` (the page's API caller, which refreshes the session). */
export async function loadConnectedApps(call) {
  const list = byId('connected-apps');
  const alertEl = byId('connected-apps-alert');
  const res = await call('GET', '/api/v1/account/connected-apps');
  if (!res.ok) return say(alertEl, problemMessage(res));
  alertEl.replaceChildren();
  const apps = Array.isArray(res.data) ? res.data : [];
  byId('connected-apps-none').hidden = apps.length > 0;
  list.replaceChildren(...apps.map((a) => {
    const li = document.createElement('li');
    const info = document.createElement('div');
    const name = document.createElement('div');
    name.className = 'device';
    name.textContent = a.client_id;
    const meta = document.createElement('div');
    meta.className = 'meta';
    meta.textContent = `Can see: ${a.scopes.map((s) => SCOPE[s] ?? s).join(', ')} · connected ${new Date(a.connected_at).toLocaleDateString()}`;
    info.append(name, meta);
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'secondary';
    button.textContent = 'Disconnect';
    button.setAttribute('aria-label', `Disconnect ${a.client_id}`);
    button.addEventListener('click', async () => {
      const del = await busy(button, () => call('DELETE', `/api/v1/account/connected-apps/${encodeURIComponent(a.client_id)}`));
      if (!del.ok && del.status !== 404) return say(alertEl, problemMessage(del));
      await loadConnectedApps(call);
    });
    li.append(info, button);
    return li;
  }));
}
