// Passkeys on the hosted pages: loads @simplewebauthn/browser (served as /assets/simplewebauthn-browser.js),
// runs the browser ceremonies and turns what can go wrong into sentences a person can act on.

/** @type {Promise<any> | null} */
let library = null;

/** The @simplewebauthn/browser bundle (a classic script that defines `SimpleWebAuthnBrowser`), loaded once. */
export function webauthnLibrary() {
  library ??= new Promise((resolve, reject) => {
    const w = /** @type {any} */ (window);
    if (w.SimpleWebAuthnBrowser) return resolve(w.SimpleWebAuthnBrowser);
    const script = document.createElement('script');
    script.src = '/assets/simplewebauthn-browser.js';
    script.onload = () => resolve(w.SimpleWebAuthnBrowser);
    script.onerror = () => reject(new Error('could not load the passkey library'));
    document.head.append(script);
  });
  return library;
}

/** The one origin passkeys work at (the server renders it into `<main data-passkey-origin>`). */
export function passkeyOrigin() {
  return document.getElementById('main')?.dataset.passkeyOrigin ?? location.origin;
}

/**
 * Why passkeys cannot be used on this page, or null when they can: the browser lacks WebAuthn, or the
 * page was opened at another address than the one passkeys are bound to (127.0.0.1 instead of localhost).
 * @returns {{ text: string, link?: { href: string, text: string } } | null}
 */
export function passkeyBlocker() {
  if (typeof window.PublicKeyCredential !== 'function') return { text: 'This browser does not support passkeys.' };
  const origin = passkeyOrigin();
  if (origin !== location.origin) {
    const href = origin + location.pathname + location.search;
    return { text: `Passkeys work only at ${origin}.`, link: { href, text: `Open ${origin}` } };
  }
  return null;
}

/** Whether the browser can offer passkeys in the username field's autofill (conditional mediation). */
export async function autofillSupported() {
  if (passkeyBlocker()) return false;
  const pkc = /** @type {any} */ (window.PublicKeyCredential);
  try {
    return typeof pkc.isConditionalMediationAvailable === 'function' && (await pkc.isConditionalMediationAvailable());
  } catch {
    return false;
  }
}

/**
 * A readable sentence for a failed browser ceremony, or null when it was our own abort (an autofill
 * request cancelled because the person clicked a button instead).
 * @param {any} err
 * @param {'register' | 'sign-in'} ceremony
 */
export function ceremonyMessage(err, ceremony) {
  const name = err?.cause?.name ?? err?.name;
  const code = err?.code;
  if (code === 'ERROR_CEREMONY_ABORTED' || name === 'AbortError') return null;
  if (name === 'NotAllowedError') {
    // The browser says the same for "cancelled" and "timed out" (it must not tell the page which).
    return ceremony === 'register'
      ? 'No passkey was created: the prompt was closed or timed out. Try again when you are ready.'
      : 'No passkey was used: the prompt was closed or timed out. Try again, or sign in with your password.';
  }
  if (name === 'InvalidStateError' || code === 'ERROR_AUTHENTICATOR_PREVIOUSLY_REGISTERED') {
    return 'This device already holds a passkey for your account. Use another device or security key, or remove the old passkey first.';
  }
  if (name === 'SecurityError') return `Passkeys do not work at this address. Open ${passkeyOrigin()} and try again.`;
  if (code === 'ERROR_AUTHENTICATOR_MISSING_USER_VERIFICATION_SUPPORT' || code === 'ERROR_AUTHENTICATOR_MISSING_DISCOVERABLE_CREDENTIAL_SUPPORT') {
    return 'This authenticator cannot hold a passkey with a PIN or fingerprint. Try your phone or another security key.';
  }
  return `The passkey did not work${err?.message ? ` (${err.message})` : ''}. Please try again.`;
}

/** The sentence for a passkey the service refused (401 invalid_passkey at a login). */
export const UNKNOWN_PASSKEY =
  'That passkey was not accepted. It may have been removed from your account or belong to another site; sign in with your password instead.';

/**
 * Creates a passkey for creation options from the API.
 * @returns {Promise<{ ok: true, credential: any } | { ok: false, message: string | null }>}
 */
export async function createPasskey(optionsJSON) {
  try {
    const lib = await webauthnLibrary();
    return { ok: true, credential: await lib.startRegistration({ optionsJSON }) };
  } catch (err) {
    return { ok: false, message: ceremonyMessage(err, 'register') };
  }
}

/**
 * Asks the browser for an assertion for request options from the API; `autofill` waits for the person
 * to pick a passkey in the username field's suggestions instead of opening a prompt.
 * @returns {Promise<{ ok: true, credential: any } | { ok: false, message: string | null }>}
 */
export async function getPasskey(optionsJSON, autofill = false) {
  try {
    const lib = await webauthnLibrary();
    return { ok: true, credential: await lib.startAuthentication({ optionsJSON, useBrowserAutofill: autofill }) };
  } catch (err) {
    return { ok: false, message: ceremonyMessage(err, 'sign-in') };
  }
}
