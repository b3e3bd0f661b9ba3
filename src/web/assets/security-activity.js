// "Recent security activity" on the account page: the person's own audit entries, newest first.
import { byId, problemMessage, say } from './common.js';

const METHOD = { totp: 'authenticator app', email: 'e-mailed codes', passkey: 'passkey', backup_code: 'backup code' };

/** A sentence for one entry; unknown types are shown as they are. */
function describe(e) {
  const d = e.data ?? {};
  switch (e.type) {
    case 'user.created': return 'Account created';
    case 'user.updated': return 'Account settings changed';
    case 'login.succeeded': return d.aal === 'aal2' ? 'Logged in with a second factor' : 'Logged in';
    case 'login.failed': return d.reason === 'invalid_code' ? 'Wrong second-factor code entered' : 'Wrong password entered';
    case 'login.locked': return 'Logins paused after too many failed attempts';
    case 'mfa.enabled': return `Second factor turned on${d.method ? `: ${METHOD[d.method] ?? d.method}` : ''}`;
    case 'mfa.disabled': return d.reset ? 'Every second factor removed' : `Second factor turned off${d.method ? `: ${METHOD[d.method] ?? d.method}` : ''}`;
    case 'passkey.added': return 'Passkey added';
    case 'passkey.removed': return 'Passkey removed';
    case 'backup_codes.regenerated': return 'New backup codes created';
    case 'password.changed': return 'Password changed';
    case 'password.reset': return 'Password reset with an e-mailed link';
    case 'email.verified': return 'E-mail address verified';
    case 'session.revoked': return d.reason === 'logout' ? 'Logged out' : 'A session was ended';
    case 'refresh.reused': return 'An old session token was reused; that session was ended';
    case 'oidc.consent_granted': return `Allowed ${d.client_id ?? 'an application'} to sign you in`;
    case 'oidc.app_disconnected': return `Disconnected ${d.client_id ?? 'an application'}`;
    case 'admin.action': return d.action === 'unlock' ? 'Login lock lifted' : d.action === 'revoke_sessions' ? 'Every session ended' : 'Account maintenance';
    default: return e.type;
  }
}

const WHO = { admin: 'by an administrator', api_key: 'by an administrator', system: 'by the service' };

function formatDate(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/** Loads one page into the list (appending after `cursor`); `call` is the page's API caller (it refreshes tokens). */
export async function loadSecurityActivity(call, cursor = null) {
  const list = byId('activity');
  const alertEl = byId('activity-alert');
  const more = byId('activity-more');
  const res = await call('GET', `/api/v1/user/security-events?limit=20${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
  if (!res.ok) {
    say(alertEl, problemMessage(res));
    return;
  }
  alertEl.replaceChildren();
  const items = (res.data?.events ?? []).map((e) => {
    const li = document.createElement('li');
    const what = document.createElement('div');
    what.className = 'device';
    what.textContent = describe(e);
    const meta = document.createElement('div');
    meta.className = 'meta';
    meta.textContent = [formatDate(e.at), WHO[e.actor], e.ip].filter(Boolean).join(' · ');
    if (e.user_agent) meta.title = e.user_agent;
    li.append(what, meta);
    li.dataset.type = e.type;
    return li;
  });
  if (cursor) list.append(...items);
  else list.replaceChildren(...items);
  more.hidden = !res.data?.next_cursor;
  more.onclick = () => loadSecurityActivity(call, res.data.next_cursor);
}
