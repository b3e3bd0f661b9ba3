// Login page: username or e-mail and password, then, when the API asks for it, a second factor.
import { api, busy, byId, clearProblem, problemMessage, returnTo, say, showCodes, showEnrollment, showProblem, valueOf } from './common.js';
import { UNKNOWN_PASSKEY, autofillSupported, getPasskey, passkeyBlocker } from './passkey.js';

const loginScreen = byId('login-screen');
const loginForm = /** @type {HTMLFormElement} */ (byId('login-form'));
const loginAlert = byId('login-alert');
const mfaScreen = byId('mfa-screen');
const mfaForm = /** @type {HTMLFormElement} */ (byId('mfa-form'));
const mfaAlert = byId('mfa-alert');
const mfaStatus = byId('mfa-status');
const mfaHint = byId('mfa-hint');
const codeInput = /** @type {HTMLInputElement} */ (byId('code'));
const codeLabel = /** @type {HTMLLabelElement} */ (document.querySelector('label[for="code"]'));
const useTotp = byId('use-totp');
const usePasskey = byId('use-passkey');
const mfaPasskey = byId('mfa-passkey');
const useBackup = byId('use-backup');
const useEmail = byId('use-email');
const startOver = byId('start-over');
const enrollScreen = byId('enroll-screen');
const enrollForm = /** @type {HTMLFormElement} */ (byId('enroll-form'));
const enrollAlert = byId('enroll-alert');

/** How each second-factor method is asked for. */
const METHODS = {
  totp: {
    label: 'Security code',
    hint: 'Enter the 6-digit code from your authenticator app.',
    inputmode: 'numeric',
    autocomplete: 'one-time-code',
  },
  backup_code: {
    label: 'Backup code',
    hint: 'Enter one of the backup codes you saved when you turned on two-factor authentication. Each code works once.',
    inputmode: 'text',
    autocomplete: 'off',
  },
  email: {
    label: 'Code from the e-mail',
    hint: 'Enter the code we just sent to your e-mail address.',
    inputmode: 'numeric',
    autocomplete: 'one-time-code',
  },
  passkey: {
    label: '',
    hint: 'Use the passkey on this device, on your phone or on your security key.',
    inputmode: 'text',
    autocomplete: 'off',
  },
};

/** The pending challenge: its token and the methods the API offered. */
let challenge = null;
/** @type {'totp' | 'backup_code' | 'email' | 'passkey'} */
let method = 'totp';
/** Username and password, kept only while an enrolment required by the service is under way. */
let credentials = null;

function finish() {
  location.assign(returnTo() ?? '/account');
}

/**
 * After a successful login: when the answer carries the first backup codes (this login turned on
 * TOTP) they are shown once before going on; after a backup-code login the page says how many are
 * left. Otherwise straight on.
 */
function loggedIn(data) {
  const codes = Array.isArray(data?.backup_codes) ? data.backup_codes.map(String) : [];
  const remaining = typeof data?.backup_codes_remaining === 'number' ? data.backup_codes_remaining : null;
  if (codes.length === 0 && remaining === null) return finish();
  loginScreen.hidden = true;
  mfaScreen.hidden = true;
  enrollScreen.hidden = true;
  const title = byId('after-login-title');
  if (codes.length > 0) {
    title.textContent = 'Save your backup codes';
    byId('after-login-text').textContent = 'Two-factor authentication is on. If you lose your phone, one of these codes lets you log in.';
    showCodes(byId('login-codes'), codes);
    byId('login-codes-panel').hidden = false;
  } else {
    byId('after-login-text').textContent =
      remaining === 1 ? 'You used a backup code. You have 1 backup code left.' : `You used a backup code. You have ${remaining} backup codes left.`;
  }
  byId('after-login-screen').hidden = false;
  title.focus();
}

byId('after-login-continue').addEventListener('click', () => {
  byId('login-codes').replaceChildren();
  finish();
});

function showLogin(message) {
  challenge = null;
  credentials = null;
  mfaScreen.hidden = true;
  enrollScreen.hidden = true;
  loginScreen.hidden = false;
  clearProblem(loginForm, loginAlert);
  const password = /** @type {HTMLInputElement} */ (loginForm.elements.namedItem('password'));
  password.value = '';
  if (message) say(loginAlert, message);
  password.focus();
}

function setMethod(next) {
  method = next;
  const m = METHODS[next];
  codeLabel.textContent = m.label;
  mfaHint.textContent = m.hint;
  codeInput.setAttribute('inputmode', m.inputmode);
  codeInput.setAttribute('autocomplete', m.autocomplete);
  codeInput.value = '';
  const offered = challenge?.methods ?? [];
  // A passkey needs no code: its screen is one button.
  mfaForm.hidden = next === 'passkey';
  mfaPasskey.hidden = next !== 'passkey';
  usePasskey.hidden = next === 'passkey' || !offered.includes('passkey');
  useTotp.hidden = next === 'totp' || !offered.includes('totp');
  useBackup.hidden = next === 'backup_code' || !offered.includes('backup_code');
  useEmail.hidden = !offered.includes('email');
  useEmail.textContent = next === 'email' ? 'Send a new code' : 'Email me a code';
  clearProblem(mfaForm, mfaAlert);
  mfaStatus.replaceChildren();
  if (next === 'passkey') byId('mfa-passkey-button').focus();
  else codeInput.focus();
}

async function sendEmailCode() {
  if (!challenge) return;
  const res = await busy(useEmail, () => api('POST', '/api/v1/auth-jwt/login/mfa/email-code', { mfa_token: challenge.token }));
  if (res.ok) {
    setMethod('email');
    say(mfaStatus, 'We sent a code to your e-mail address. It may take a minute to arrive.');
    return;
  }
  if (res.problem?.code === 'invalid_token') return showLogin('Your sign-in expired. Please log in again.');
  showProblem(mfaForm, mfaAlert, res);
}

function startMfa(data) {
  const methods = Array.isArray(data?.mfa_methods) ? data.mfa_methods : ['totp'];
  challenge = { token: data?.mfa_token, methods };
  loginScreen.hidden = true;
  mfaScreen.hidden = false;
  // The phishing-resistant factor first, where this page can use it.
  if (methods.includes('passkey') && !passkeyBlocker()) setMethod('passkey');
  else if (methods.includes('totp')) setMethod('totp');
  else if (methods.includes('email')) {
    setMethod('email');
    void sendEmailCode();
  } else setMethod('backup_code');
}

/**
 * The service requires a second factor and the account has none: start an authenticator enrolment
 * with the password (`/auth-totp/qrcode`); the first login with a code from it activates it.
 */
async function startEnrollment(body) {
  const res = await api('POST', '/api/v1/auth-totp/qrcode', body);
  if (!res.ok) return showProblem(loginForm, loginAlert, res);
  credentials = body;
  showEnrollment(/** @type {HTMLImageElement} */ (byId('enroll-qr')), byId('enroll-secret'), res.data);
  loginScreen.hidden = true;
  enrollScreen.hidden = false;
  clearProblem(enrollForm, enrollAlert);
  byId('enroll-code').focus();
}

enrollForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (!credentials) return showLogin();
  clearProblem(enrollForm, enrollAlert);
  const body = { ...credentials, security_code: valueOf(enrollForm, 'security_code').replace(/\s+/g, '') };
  const res = await busy(enrollForm.querySelector('button[type="submit"]'), () => api('POST', '/api/v1/auth-jwt/login', body));
  if (res.ok) {
    credentials = null;
    return loggedIn(res.data);
  }
  showProblem(enrollForm, enrollAlert, res, {
    fields: { invalid_security_code: 'security_code' },
    messages: { invalid_security_code: 'That code is not right. Check the time on your phone and try the new code.' },
  });
});

loginForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearProblem(loginForm, loginAlert);
  const body = { username: valueOf(loginForm, 'username'), password: valueOf(loginForm, 'password') };
  const res = await busy(loginForm.querySelector('button[type="submit"]'), () => api('POST', '/api/v1/auth-jwt/login', body));
  if (res.ok) return loggedIn(res.data);
  if (res.status === 403 && res.problem?.code === 'mfa_required') return startMfa(res.data);
  if (res.status === 403 && res.problem?.code === 'mfa_enrollment_required') return startEnrollment(body);
  showProblem(loginForm, loginAlert, res);
  if (res.problem?.code === 'invalid_credentials') {
    const password = /** @type {HTMLInputElement} */ (loginForm.elements.namedItem('password'));
    password.select();
    password.focus();
  }
});

mfaForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (!challenge) return showLogin();
  clearProblem(mfaForm, mfaAlert);
  // Spaces are how people copy codes ("123 456"); they are never part of one.
  const code = method === 'backup_code' ? codeInput.value.trim() : codeInput.value.replace(/\s+/g, '');
  const body = { mfa_token: challenge.token, method, code };
  const res = await busy(mfaForm.querySelector('button[type="submit"]'), () => api('POST', '/api/v1/auth-jwt/login/mfa', body));
  if (res.ok) return loggedIn(res.data);
  if (res.status === 401 && res.problem?.code === 'invalid_token') {
    return showLogin('Your sign-in expired or had too many wrong codes. Please log in again.');
  }
  showProblem(mfaForm, mfaAlert, res, {
    messages: {
      invalid_security_code:
        method === 'backup_code' ? 'That backup code is not valid or was already used.' : 'That code is not right. Check it and try again.',
    },
  });
  codeInput.select();
  codeInput.focus();
});

// ---- passkeys --------------------------------------------------------------------------------

/** Sends a browser assertion to a login endpoint and finishes like any login; says what went wrong otherwise. */
async function passkeyLoggedIn(res, alertEl) {
  if (res.ok) return loggedIn(res.data);
  if (res.status === 401 && res.problem?.code === 'invalid_passkey') return say(alertEl, UNKNOWN_PASSKEY);
  say(alertEl, problemMessage(res));
}

/** Passwordless: request options (for the typed name, if any), the browser prompt or autofill, then the login. */
async function passkeySignIn(autofill) {
  const username = autofill ? '' : valueOf(loginForm, 'username').trim();
  const opts = await api('POST', '/api/v1/auth-jwt/login/passkey/options', username ? { username } : {});
  if (!opts.ok) return autofill ? undefined : say(loginAlert, problemMessage(opts));
  const got = await getPasskey(opts.data.options, autofill);
  if (!got.ok) {
    if (got.message) say(loginAlert, got.message);
    return;
  }
  clearProblem(loginForm, loginAlert);
  const res = await api('POST', '/api/v1/auth-jwt/login/passkey', { challenge_token: opts.data.challenge_token, credential: got.credential });
  await passkeyLoggedIn(res, loginAlert);
}

/** Offers passkeys in the username field's autofill while the page is open (conditional mediation). */
async function startAutofill() {
  if (await autofillSupported()) void passkeySignIn(true);
}

const blocker = passkeyBlocker();
if (blocker) {
  byId('passkey-login').hidden = true;
  const note = byId('passkey-note');
  say(note, blocker.text, blocker.link);
  note.hidden = false;
} else {
  void startAutofill();
}

byId('passkey-login').addEventListener('click', async (event) => {
  clearProblem(loginForm, loginAlert);
  // Starting this prompt cancels the autofill request; it is offered again afterwards.
  await busy(/** @type {HTMLElement} */ (event.currentTarget), () => passkeySignIn(false));
  if (!loginScreen.hidden) void startAutofill();
});

byId('mfa-passkey-button').addEventListener('click', async (event) => {
  if (!challenge) return showLogin();
  clearProblem(mfaForm, mfaAlert);
  const button = /** @type {HTMLElement} */ (event.currentTarget);
  await busy(button, async () => {
    const blocked = passkeyBlocker();
    if (blocked) return say(mfaAlert, blocked.text, blocked.link);
    const opts = await api('POST', '/api/v1/auth-jwt/login/mfa/passkey/options', { mfa_token: challenge.token });
    if (opts.status === 401 && opts.problem?.code === 'invalid_token') return showLogin('Your sign-in expired. Please log in again.');
    if (!opts.ok) return say(mfaAlert, problemMessage(opts));
    const got = await getPasskey(opts.data);
    if (!got.ok) return got.message ? say(mfaAlert, got.message) : undefined;
    const res = await api('POST', '/api/v1/auth-jwt/login/mfa', { mfa_token: challenge.token, method: 'passkey', credential: got.credential });
    if (res.status === 401 && res.problem?.code === 'invalid_token') return showLogin('Your sign-in expired or had too many failed attempts. Please log in again.');
    await passkeyLoggedIn(res, mfaAlert);
  });
});

usePasskey.addEventListener('click', () => setMethod('passkey'));
useTotp.addEventListener('click', () => setMethod('totp'));
useBackup.addEventListener('click', () => setMethod('backup_code'));
useEmail.addEventListener('click', () => void sendEmailCode());
startOver.addEventListener('click', () => showLogin());
byId('enroll-start-over').addEventListener('click', () => showLogin());

// Single sign-on for OpenID applications: /oidc/interaction sends a browser whose access token has
// expired here with sso=1 (never when the application asked for a fresh login); a live refresh token
// then renews the session and the browser goes straight back, without the form.
if (new URLSearchParams(location.search).get('sso') === '1' && returnTo()) {
  void api('POST', '/api/v1/auth-jwt/refresh').then((res) => {
    if (res.ok) finish();
  });
}
