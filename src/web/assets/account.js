// Account page: profile, second factors, backup codes, password change, sessions and log out.
import { api, busy, byId, clearProblem, problemMessage, say, showCodes, showEnrollment, showProblem, valueOf } from './common.js';
import { loadSecurityActivity } from './security-activity.js';
import { loadConnectedApps } from './connected-apps.js';
import { createPasskey, passkeyBlocker } from './passkey.js';

const productName = document.querySelector('.brand span')?.textContent ?? 'Twofold';
const accountAlert = byId('account-alert');
const accountStatus = byId('account-status');
const mfaAlert = byId('mfa-alert');
const mfaStatus = byId('mfa-status');

const STEP_UP =
  'For your security this needs a fresh login: log out, log in again (with your code, if you have a second factor), then try again.';

/** 401 codes that mean "the session is gone", as opposed to a wrong password or code. */
const NOT_SESSION = new Set(['invalid_credentials', 'invalid_security_code']);

/** One refresh shared by the calls that fail together (the page loads several things at once). */
let refreshing = null;

function toLogin() {
  location.assign(`/login?return_to=${encodeURIComponent('/account')}`);
}

/**
 * Calls the API with the session cookies. When the access token is expired or gone, refreshes the
 * session once (the refresh cookie is scoped to /api/v1/auth-jwt) and retries; when that fails too,
 * goes to the login page.
 */
async function call(method, path, body) {
  let res = await api(method, path, body);
  if (res.status !== 401 || NOT_SESSION.has(res.problem?.code ?? '')) return res;
  refreshing ??= api('POST', '/api/v1/auth-jwt/refresh').finally(() => {
    setTimeout(() => {
      refreshing = null;
    }, 0);
  });
  const refreshed = await refreshing;
  if (refreshed.ok) res = await api(method, path, body);
  if (res.status === 401 && !NOT_SESSION.has(res.problem?.code ?? '')) {
    toLogin();
    return new Promise(() => {}); // the page is going away; nothing more to do
  }
  return res;
}

function formatDate(iso, withTime = true) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return withTime ? d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' }) : d.toLocaleDateString(undefined, { dateStyle: 'long' });
}

function badge(el, text, on) {
  el.textContent = text;
  el.classList.toggle('on', on);
}

// ---- profile and factor status ---------------------------------------------------------------

let user = null;

function render() {
  byId('profile-username').textContent = user.username;
  byId('profile-email').textContent = user.email;
  badge(byId('profile-email-badge'), user.email_verified ? 'Verified' : 'Not verified', Boolean(user.email_verified));
  byId('profile-email-badge').classList.toggle('warn', !user.email_verified);
  byId('profile-created').textContent = formatDate(user.created_at, false);
  byId('verify-row').hidden = Boolean(user.email_verified);

  const mfa = user.mfa ?? {};
  const anyFactor = Boolean(mfa.totp || mfa.email || Number(mfa.passkeys ?? 0) > 0);
  byId('mfa-summary').textContent = anyFactor
    ? 'Two-factor authentication is on: logging in needs your password and a second factor, or a passkey.'
    : 'Two-factor authentication is off. Turn it on so that a stolen password is not enough to get into your account.';
  badge(byId('totp-badge'), mfa.totp ? 'On' : 'Off', Boolean(mfa.totp));
  const enable = byId('totp-enable');
  enable.textContent = anyFactor ? 'Add an authenticator app' : 'Enable two-factor authentication';
  const enrolling = !byId('totp-enroll').hidden;
  enable.hidden = Boolean(mfa.totp) || enrolling;
  byId('totp-disable').hidden = !mfa.totp || !byId('totp-disable-form').hidden;
  badge(byId('email-otp-badge'), mfa.email ? 'On' : 'Off', Boolean(mfa.email));
  byId('email-otp-enable').hidden = Boolean(mfa.email) || !byId('email-otp-confirm-form').hidden;
  byId('email-otp-disable').hidden = !mfa.email;
  const passkeys = Number(mfa.passkeys ?? 0);
  badge(byId('passkey-badge'), passkeys === 0 ? 'None' : passkeys === 1 ? '1 passkey' : `${passkeys} passkeys`, passkeys > 0);
  const remaining = Number(mfa.backup_codes_remaining ?? 0);
  badge(byId('backup-badge'), anyFactor ? `${remaining} left` : 'None', anyFactor && remaining > 0);
  // Without backup codes, a lost phone means a locked account: make the gap visible.
  byId('backup-badge').classList.toggle('warn', anyFactor && remaining === 0);
  byId('backup-factor').hidden = !anyFactor && remaining === 0;
  byId('backup-regenerate').hidden = !anyFactor;
}

async function loadUser() {
  const res = await call('GET', '/api/v1/auth-jwt/user-info');
  if (!res.ok) {
    say(accountAlert, problemMessage(res));
    return false;
  }
  user = res.data;
  render();
  return true;
}

// ---- sessions --------------------------------------------------------------------------------

/** "Firefox on Linux" from a user agent; the raw string stays available as a tooltip. */
function describeAgent(ua) {
  if (!ua) return 'Unknown device';
  const browser = /Edg\//.test(ua) ? 'Edge' : /Firefox\//.test(ua) ? 'Firefox' : /Chrom(e|ium)\//.test(ua) ? 'Chrome'
    : /Safari\//.test(ua) ? 'Safari' : /curl\//.test(ua) ? 'curl' : null;
  const os = /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS' : /Windows/.test(ua) ? 'Windows'
    : /Mac OS X|Macintosh/.test(ua) ? 'macOS' : /Linux/.test(ua) ? 'Linux' : null;
  if (browser && os) return `${browser} on ${os}`;
  return browser ?? os ?? ua.slice(0, 60);
}

async function loadSessions() {
  const list = byId('sessions');
  const alertEl = byId('sessions-alert');
  const res = await call('GET', '/api/v1/auth-jwt/sessions');
  if (!res.ok) {
    say(alertEl, problemMessage(res));
    return;
  }
  alertEl.replaceChildren();
  const sessions = Array.isArray(res.data) ? res.data : Array.isArray(res.data?.sessions) ? res.data.sessions : [];
  sessions.sort((a, b) => Number(Boolean(b.current)) - Number(Boolean(a.current)));
  list.replaceChildren(
    ...sessions.map((s) => {
      const li = document.createElement('li');
      const info = document.createElement('div');
      const device = document.createElement('div');
      device.className = 'device';
      device.textContent = describeAgent(s.user_agent);
      if (s.user_agent) device.title = s.user_agent;
      const meta = document.createElement('div');
      meta.className = 'meta';
      meta.textContent = [s.ip, `signed in ${formatDate(s.created_at)}`, s.last_used_at ? `last active ${formatDate(s.last_used_at)}` : '']
        .filter(Boolean)
        .join(' · ');
      info.append(device, meta);
      li.append(info);
      if (s.current) {
        const b = document.createElement('span');
        b.className = 'badge on';
        b.textContent = 'This device';
        li.append(b);
      } else {
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'secondary';
        button.append('Revoke');
        const hidden = document.createElement('span');
        hidden.className = 'visually-hidden';
        hidden.textContent = ` session: ${device.textContent}${s.ip ? `, ${s.ip}` : ''}`;
        button.append(hidden);
        button.addEventListener('click', async () => {
          const del = await busy(button, () => call('DELETE', `/api/v1/auth-jwt/sessions/${encodeURIComponent(s.id)}`));
          if (!del.ok && del.status !== 404) return say(alertEl, problemMessage(del));
          say(accountStatus, `Session on ${device.textContent} revoked.`);
          await loadSessions();
        });
        li.append(button);
      }
      return li;
    }),
  );
}

// ---- backup codes ----------------------------------------------------------------------------

let shownCodes = [];

function showBackupCodes(codes) {
  shownCodes = codes.map(String);
  showCodes(byId('backup-codes'), shownCodes);
  byId('backup-status').replaceChildren();
  byId('backup-codes-panel').hidden = false;
  byId('backup-codes-title').focus();
}

byId('backup-copy').addEventListener('click', async () => {
  try {
    await navigator.clipboard.writeText(shownCodes.join('\n'));
    say(byId('backup-status'), 'Copied to the clipboard.');
  } catch {
    say(byId('backup-status'), 'Could not copy automatically: select the codes and copy them by hand.');
  }
});

byId('backup-download').addEventListener('click', () => {
  const text = `${productName} backup codes for ${user?.username ?? ''}\nGenerated ${new Date().toISOString()}\nEach code works once.\n\n${shownCodes.join('\n')}\n`;
  const url = URL.createObjectURL(new Blob([text], { type: 'text/plain' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = `${productName.toLowerCase().replace(/[^a-z0-9]+/g, '-')}-backup-codes.txt`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
  say(byId('backup-status'), 'Downloaded.');
});

byId('backup-done').addEventListener('click', () => {
  shownCodes = [];
  byId('backup-codes').replaceChildren();
  byId('backup-codes-panel').hidden = true;
  byId('mfa-title').focus();
});

byId('backup-regenerate').addEventListener('click', async (event) => {
  clearProblem(null, mfaAlert);
  mfaStatus.replaceChildren();
  const res = await busy(/** @type {HTMLElement} */ (event.currentTarget), () => call('POST', '/api/v1/backup-codes'));
  if (!res.ok) return showProblem(null, mfaAlert, res, { messages: { step_up_required: STEP_UP } });
  say(mfaStatus, 'New backup codes generated. Your earlier codes no longer work.');
  await loadUser();
  showBackupCodes(res.data?.backup_codes ?? []);
});

/** After a factor is confirmed: shows the first backup codes when the API returned some. */
async function factorTurnedOn(res, message) {
  say(mfaStatus, message);
  await loadUser();
  const codes = res.data?.backup_codes;
  if (Array.isArray(codes) && codes.length > 0) showBackupCodes(codes);
}

// ---- authenticator app (TOTP) ----------------------------------------------------------------

const totpConfirmForm = /** @type {HTMLFormElement} */ (byId('totp-confirm-form'));
const totpDisableForm = /** @type {HTMLFormElement} */ (byId('totp-disable-form'));

byId('totp-enable').addEventListener('click', async (event) => {
  clearProblem(null, mfaAlert);
  mfaStatus.replaceChildren();
  const res = await busy(/** @type {HTMLElement} */ (event.currentTarget), () => call('POST', '/api/v1/auth-totp/enroll'));
  if (!res.ok) return showProblem(null, mfaAlert, res, { messages: { step_up_required: STEP_UP } });
  showEnrollment(/** @type {HTMLImageElement} */ (byId('totp-qr')), byId('totp-secret'), res.data);
  clearProblem(totpConfirmForm, null);
  totpConfirmForm.reset();
  byId('totp-enroll').hidden = false;
  byId('totp-enable').hidden = true;
  byId('totp-code').focus();
});

byId('totp-cancel').addEventListener('click', () => {
  byId('totp-enroll').hidden = true;
  render();
  byId('totp-enable').focus();
});

totpConfirmForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearProblem(totpConfirmForm, mfaAlert);
  const body = { security_code: valueOf(totpConfirmForm, 'security_code').replace(/\s+/g, '') };
  const res = await busy(totpConfirmForm.querySelector('button[type="submit"]'), () => call('POST', '/api/v1/auth-totp/confirm', body));
  if (!res.ok) {
    return showProblem(totpConfirmForm, mfaAlert, res, {
      fields: { invalid_security_code: 'security_code' },
      messages: { invalid_security_code: 'That code is not right. Check the time on your phone and try the new code.' },
    });
  }
  byId('totp-enroll').hidden = true;
  /** @type {HTMLImageElement} */ (byId('totp-qr')).src = 'data:,';
  byId('totp-secret').textContent = '';
  await factorTurnedOn(res, 'Two-factor authentication is on. You will be asked for a code from your app when you log in. Save the new backup codes below: any you had before no longer work.');
});

byId('totp-disable').addEventListener('click', () => {
  clearProblem(totpDisableForm, mfaAlert);
  totpDisableForm.reset();
  totpDisableForm.hidden = false;
  byId('totp-disable').hidden = true;
  byId('totp-disable-password').focus();
});

byId('totp-disable-cancel').addEventListener('click', () => {
  totpDisableForm.hidden = true;
  render();
});

totpDisableForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const body = { password: valueOf(totpDisableForm, 'password') };
  const res = await busy(totpDisableForm.querySelector('button[type="submit"]'), () => call('DELETE', '/api/v1/auth-totp', body));
  if (!res.ok) {
    return showProblem(totpDisableForm, mfaAlert, res, {
      fields: { invalid_credentials: 'password' },
      messages: { invalid_credentials: 'That password is not correct.', step_up_required: STEP_UP },
    });
  }
  totpDisableForm.hidden = true;
  clearProblem(totpDisableForm, mfaAlert);
  say(mfaStatus, 'The authenticator app is turned off.');
  await loadUser();
});

// ---- passkeys ------------------------------------------------------------------------------------

/** One line about a passkey: when it was added and last used, and whether it is synced. */
function passkeyMeta(p) {
  const kind = p.backed_up ? 'Synced to your other devices' : p.device_type === 'multi_device' ? 'Can be synced, not yet backed up' : 'This device only';
  return [`Added ${formatDate(p.created_at)}`, p.last_used_at ? `last used ${formatDate(p.last_used_at)}` : 'never used', kind].join(' · ');
}

function smallButton(text, className, label) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = className;
  b.append(text);
  const hidden = document.createElement('span');
  hidden.className = 'visually-hidden';
  hidden.textContent = ` ${label}`;
  b.append(hidden);
  return b;
}

/** The rename form of a passkey's row. */
function renameForm(li, p) {
  const form = document.createElement('form');
  form.noValidate = true;
  const id = `passkey-name-${p.id}`;
  const label = document.createElement('label');
  label.htmlFor = id;
  label.className = 'visually-hidden';
  label.textContent = 'New name';
  const input = document.createElement('input');
  input.type = 'text';
  input.id = id;
  input.name = 'name';
  input.value = p.name;
  input.maxLength = 64;
  const save = document.createElement('button');
  save.type = 'submit';
  save.className = 'primary';
  save.textContent = 'Save';
  const cancel = document.createElement('button');
  cancel.type = 'button';
  cancel.className = 'secondary';
  cancel.textContent = 'Cancel';
  cancel.addEventListener('click', () => void loadPasskeys());
  form.append(label, input, save, cancel);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = input.value.trim();
    if (!name) return say(mfaAlert, 'Give the passkey a name.');
    const res = await busy(save, () => call('PATCH', `/api/v1/passkeys/${encodeURIComponent(p.id)}`, { name }));
    if (!res.ok) return showProblem(null, mfaAlert, res);
    say(mfaStatus, `Passkey renamed to “${name}”.`);
    await loadPasskeys();
  });
  li.replaceChildren(form);
  input.focus();
  input.select();
}

/** Asks once more before removing, in the row itself. */
function confirmRemoval(li, p) {
  const text = document.createElement('span');
  text.textContent = `Remove “${p.name}”? You will no longer be able to sign in with it.`;
  const yes = document.createElement('button');
  yes.type = 'button';
  yes.className = 'danger';
  yes.textContent = 'Remove';
  const no = document.createElement('button');
  no.type = 'button';
  no.className = 'secondary';
  no.textContent = 'Keep';
  no.addEventListener('click', () => void loadPasskeys());
  yes.addEventListener('click', async () => {
    const res = await busy(yes, () => call('DELETE', `/api/v1/passkeys/${encodeURIComponent(p.id)}`));
    if (!res.ok && res.status !== 404) return showProblem(null, mfaAlert, res, { messages: { step_up_required: STEP_UP } });
    say(mfaStatus, `Passkey “${p.name}” removed.`);
    await loadUser();
    await loadPasskeys();
  });
  const actions = document.createElement('div');
  actions.className = 'actions';
  actions.append(yes, no);
  li.replaceChildren(text, actions);
  no.focus();
}

async function loadPasskeys() {
  const list = byId('passkeys');
  const res = await call('GET', '/api/v1/passkeys');
  if (!res.ok) return say(mfaAlert, problemMessage(res));
  const passkeys = Array.isArray(res.data) ? res.data : [];
  list.hidden = passkeys.length === 0;
  list.replaceChildren(
    ...passkeys.map((p) => {
      const li = document.createElement('li');
      li.dataset.passkeyId = p.id;
      const info = document.createElement('div');
      const name = document.createElement('div');
      name.className = 'passkey-name';
      name.textContent = p.name;
      const meta = document.createElement('div');
      meta.className = 'meta';
      meta.textContent = passkeyMeta(p);
      info.append(name, meta);
      const rename = smallButton('Rename', 'secondary', `passkey ${p.name}`);
      rename.addEventListener('click', () => renameForm(li, p));
      const remove = smallButton('Remove', 'secondary', `passkey ${p.name}`);
      remove.addEventListener('click', () => confirmRemoval(li, p));
      const actions = document.createElement('div');
      actions.className = 'actions';
      actions.append(rename, remove);
      li.append(info, actions);
      return li;
    }),
  );
}

const passkeyBlocked = passkeyBlocker();
if (passkeyBlocked) {
  byId('passkey-add').hidden = true;
  const note = byId('passkey-note');
  say(note, passkeyBlocked.text, passkeyBlocked.link);
  note.hidden = false;
}

byId('passkey-add').addEventListener('click', async (event) => {
  clearProblem(null, mfaAlert);
  mfaStatus.replaceChildren();
  await busy(/** @type {HTMLElement} */ (event.currentTarget), async () => {
    const opts = await call('POST', '/api/v1/passkeys/registration/options', {});
    if (!opts.ok) return showProblem(null, mfaAlert, opts, { messages: { step_up_required: STEP_UP } });
    const created = await createPasskey(opts.data);
    if (!created.ok) return created.message ? say(mfaAlert, created.message) : undefined;
    // Named after this browser and system; the person can rename it.
    const res = await call('POST', '/api/v1/passkeys/registration/verify', { credential: created.credential, name: describeAgent(navigator.userAgent).slice(0, 64) });
    if (!res.ok) {
      return showProblem(null, mfaAlert, res, {
        messages: {
          step_up_required: STEP_UP,
          invalid_passkey: 'The passkey could not be added (it took too long, or came from another site). Please try again.',
          passkey_already_registered: 'That passkey is already registered.',
        },
      });
    }
    await factorTurnedOn(res, `Passkey “${res.data?.name ?? ''}” added. You can now sign in with it.`);
    await loadPasskeys();
  });
});

// ---- codes by e-mail ---------------------------------------------------------------------------

const emailConfirmForm = /** @type {HTMLFormElement} */ (byId('email-otp-confirm-form'));

byId('email-otp-enable').addEventListener('click', async (event) => {
  clearProblem(null, mfaAlert);
  mfaStatus.replaceChildren();
  const res = await busy(/** @type {HTMLElement} */ (event.currentTarget), () => call('POST', '/api/v1/auth-email-otp/enable'));
  if (!res.ok) {
    return showProblem(null, mfaAlert, res, {
      messages: { email_not_verified: 'Verify your e-mail address first: open the link we sent you, or resend it from the Profile section.' },
    });
  }
  emailConfirmForm.reset();
  emailConfirmForm.hidden = false;
  byId('email-otp-enable').hidden = true;
  byId('email-otp-code').focus();
});

byId('email-otp-cancel').addEventListener('click', () => {
  emailConfirmForm.hidden = true;
  clearProblem(emailConfirmForm, mfaAlert);
  render();
});

emailConfirmForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearProblem(emailConfirmForm, mfaAlert);
  const body = { code: valueOf(emailConfirmForm, 'code').replace(/\s+/g, '') };
  const res = await busy(emailConfirmForm.querySelector('button[type="submit"]'), () => call('POST', '/api/v1/auth-email-otp/confirm', body));
  if (!res.ok) return showProblem(emailConfirmForm, mfaAlert, res, { fields: { invalid_security_code: 'code' } });
  emailConfirmForm.hidden = true;
  await factorTurnedOn(res, 'Codes by e-mail are on.');
});

byId('email-otp-disable').addEventListener('click', async (event) => {
  clearProblem(null, mfaAlert);
  const res = await busy(/** @type {HTMLElement} */ (event.currentTarget), () => call('DELETE', '/api/v1/auth-email-otp'));
  if (!res.ok) return showProblem(null, mfaAlert, res, { messages: { step_up_required: STEP_UP } });
  say(mfaStatus, 'Codes by e-mail are turned off.');
  await loadUser();
});

// ---- profile actions, password, log out --------------------------------------------------------

byId('resend-verification').addEventListener('click', async (event) => {
  if (!user) return;
  const res = await busy(/** @type {HTMLElement} */ (event.currentTarget), () => call('POST', '/api/v1/user/email/verify/resend', { email: user.email }));
  if (!res.ok) return say(accountAlert, problemMessage(res));
  say(accountStatus, `We sent a new verification link to ${user.email}.`);
});

const passwordForm = /** @type {HTMLFormElement} */ (byId('password-form'));
passwordForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const passwordAlert = byId('password-alert');
  const passwordStatus = byId('password-status');
  passwordStatus.replaceChildren();
  const body = {
    current_password: valueOf(passwordForm, 'current_password'),
    password1: valueOf(passwordForm, 'password1'),
    password2: valueOf(passwordForm, 'password2'),
  };
  const res = await busy(passwordForm.querySelector('button[type="submit"]'), () => call('POST', '/api/v1/user/password/change', body));
  if (!res.ok) {
    return showProblem(passwordForm, passwordAlert, res, {
      fields: { invalid_credentials: 'current_password' },
      messages: { invalid_credentials: 'Your current password is not correct.' },
    });
  }
  clearProblem(passwordForm, passwordAlert);
  passwordForm.reset();
  say(passwordStatus, 'Your password has been changed. Your other sessions were logged out.');
  await loadSessions();
});

byId('logout').addEventListener('click', async (event) => {
  const res = await busy(/** @type {HTMLElement} */ (event.currentTarget), () => api('POST', '/api/v1/auth-jwt/logout'));
  // 204: logged out; 401: no session was left to end. Anything else (a refused request, an outage) leaves
  // the session and its cookies in place: say so, never pretend to have logged out.
  if (res.ok || res.status === 401) return location.assign('/login');
  say(accountAlert, `You are still logged in: ${problemMessage(res)}`);
});

// ---- start -----------------------------------------------------------------------------------

(async () => {
  const ok = await loadUser();
  byId('account-loading').hidden = true;
  if (!ok) return;
  byId('account-content').hidden = false;
  await Promise.all([loadPasskeys(), loadSessions(), loadConnectedApps(call), loadSecurityActivity(call)]);
})();
