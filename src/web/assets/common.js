// Shared helpers of the Twofold hosted pages: calls to the JSON API, problem details shown as
// accessible errors, busy buttons and the client-side re-check of return_to.

/**
 * @typedef {{ type?: string, title?: string, status?: number, detail?: string, code?: string,
 *   errors?: { field: string, message: string }[] }} Problem
 * @typedef {{ ok: boolean, status: number, data: any, problem: Problem | null, retryAfter: string | null }} ApiResult
 */

/** Returns the element with the given id (every id the scripts use is rendered by the server). */
export function byId(id) {
  return /** @type {HTMLElement} */ (document.getElementById(id));
}

/**
 * Calls the JSON API on the same origin. Cookies carry the session; the browser adds an Origin header
 * to unsafe requests, which is what the service's CSRF check looks at. Never throws.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<ApiResult>}
 */
export async function api(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = { Accept: 'application/json' };
  /** @type {RequestInit} */
  const init = { method, credentials: 'same-origin', headers, cache: 'no-store' };
  // A POST without a body must not claim a JSON content type: an empty JSON body is a 400.
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    return {
      ok: false,
      status: 0,
      data: null,
      problem: { title: 'Network error', detail: 'Could not reach the server. Check your connection and try again.' },
      retryAfter: null,
    };
  }
  let data = null;
  const text = await res.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  const problem = res.ok ? null : data && typeof data === 'object' ? data : { title: res.statusText, status: res.status };
  return { ok: res.ok, status: res.status, data, problem, retryAfter: res.headers.get('Retry-After') };
}

/** Readable words for codes whose problem document might carry no detail. */
const DEFAULT_MESSAGES = {
  invalid_credentials: 'Incorrect username or password.',
  invalid_security_code: 'That code is not right. Check it and try again.',
  account_inactive: 'This account is disabled. Contact your administrator.',
  email_not_verified: 'Please verify your e-mail address first: open the link we sent you.',
  csrf_rejected: 'The request was refused because it did not come from this site. Reload the page and try again.',
  internal_error: 'Something went wrong on our side. Please try again in a moment.',
  service_unavailable: 'The service is unavailable right now. Please try again in a moment.',
};

/** "42 seconds", "3 minutes" from a Retry-After value in seconds. */
function waitText(retryAfter) {
  const s = Number(retryAfter);
  if (!Number.isFinite(s) || s <= 0) return 'a moment';
  if (s < 90) return `${Math.ceil(s)} second${Math.ceil(s) === 1 ? '' : 's'}`;
  const m = Math.ceil(s / 60);
  return `${m} minute${m === 1 ? '' : 's'}`;
}

/**
 * The sentence to show for a failed call: a page's own wording for the code, else the API's `detail`,
 * else a default for the code, else the `title`.
 * @param {ApiResult} res
 * @param {Record<string, string>} [messages] page-specific wording by error code
 */
export function problemMessage(res, messages = {}) {
  const p = res.problem ?? {};
  if (res.status === 429) return `Too many attempts. Please wait ${waitText(res.retryAfter)} and try again.`;
  if (p.code && messages[p.code]) return messages[p.code];
  if (p.detail) return p.detail;
  if (p.code && DEFAULT_MESSAGES[p.code]) return DEFAULT_MESSAGES[p.code];
  return p.title || `Something went wrong (HTTP ${res.status}). Please try again.`;
}

/** The input a problem field (`password1`, `/password1`, `body.password1`) refers to, if any. */
function inputFor(form, field) {
  if (!form || !field) return null;
  const name = String(field).split(/[./]/).filter(Boolean).pop();
  const el = name ? form.elements.namedItem(name) : null;
  return el && 'setAttribute' in el && el.id ? el : null;
}

/**
 * Removes the errors a previous `showProblem` left in the alert and next to the inputs.
 * @param {HTMLFormElement | null} form
 * @param {HTMLElement | null} alertEl
 */
export function clearProblem(form, alertEl) {
  if (alertEl) alertEl.replaceChildren();
  if (!form) return;
  for (const input of form.querySelectorAll('[aria-invalid]')) {
    input.removeAttribute('aria-invalid');
    const slot = document.getElementById(`${input.id}-error`);
    if (slot) slot.textContent = '';
  }
}

/**
 * Shows a failed call: the message in the `role="alert"` box, and each field error of the problem
 * next to its input (marked `aria-invalid`). Focuses the first invalid input.
 * @param {HTMLFormElement | null} form
 * @param {HTMLElement} alertEl
 * @param {ApiResult} res
 * @param {{ messages?: Record<string, string>, fields?: Record<string, string> }} [options]
 *   `messages`: wording by code; `fields`: the input a code without field errors belongs to
 */
export function showProblem(form, alertEl, res, options = {}) {
  clearProblem(form, alertEl);
  const p = res.problem ?? {};
  const message = problemMessage(res, options.messages);
  const fieldErrors = Array.isArray(p.errors) ? [...p.errors] : [];
  const codeField = p.code && options.fields ? options.fields[p.code] : undefined;
  if (codeField && fieldErrors.length === 0) fieldErrors.push({ field: codeField, message });

  const unmatched = [];
  let first = null;
  for (const e of fieldErrors) {
    const input = inputFor(form, e.field);
    if (!input) {
      if (e.message) unmatched.push(e.message);
      continue;
    }
    input.setAttribute('aria-invalid', 'true');
    const slot = document.getElementById(`${input.id}-error`);
    if (slot) slot.textContent = slot.textContent ? `${slot.textContent}; ${e.message}` : e.message;
    first ??= input;
  }

  const summary = document.createElement('p');
  summary.className = 'alert-text';
  summary.textContent = p.code === 'validation_failed' && first && unmatched.length === 0
    ? 'Please correct the fields marked below.'
    : message;
  alertEl.append(summary);
  if (unmatched.length > 0 && !(unmatched.length === 1 && unmatched[0] === message)) {
    const list = document.createElement('ul');
    for (const m of unmatched) {
      const li = document.createElement('li');
      li.textContent = m;
      list.append(li);
    }
    alertEl.append(list);
  }
  if (first) first.focus();
}

/**
 * Shows a plain message in an alert or status box, optionally followed by a link.
 * @param {HTMLElement} el
 * @param {string} text
 * @param {{ href: string, text: string }} [link]
 */
export function say(el, text, link) {
  el.replaceChildren();
  const p = document.createElement('p');
  p.className = 'alert-text';
  p.textContent = text;
  if (link) {
    const a = document.createElement('a');
    a.href = link.href;
    a.textContent = link.text;
    p.append(' ', a);
  }
  el.append(p);
}

/**
 * Runs `fn` with `button` disabled and marked busy, so a double click sends one request.
 * @template T
 * @param {HTMLElement | null} button
 * @param {() => Promise<T>} fn
 * @returns {Promise<T>}
 */
export async function busy(button, fn) {
  if (button) {
    button.setAttribute('disabled', '');
    button.setAttribute('aria-busy', 'true');
  }
  try {
    return await fn();
  } finally {
    if (button) {
      button.removeAttribute('disabled');
      button.removeAttribute('aria-busy');
    }
  }
}

/**
 * The validated `return_to` the server rendered into `<main data-return-to>`, checked once more here
 * (http/https, no credentials, origin is this site or one of `data-allowed-origins`), or null.
 * @returns {string | null}
 */
export function returnTo() {
  const main = document.getElementById('main');
  const value = main?.dataset.returnTo;
  if (!value) return null;
  const allowed = (main.dataset.allowedOrigins ?? '').split(' ').filter(Boolean);
  let url;
  try {
    url = new URL(value, location.origin);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  if (url.username || url.password) return null;
  if (url.origin !== location.origin && !allowed.includes(url.origin)) return null;
  return url.href;
}

/** The value of a named input of a form. */
export function valueOf(form, name) {
  const el = form.elements.namedItem(name);
  return el && 'value' in el ? String(el.value) : '';
}

/**
 * Shows a TOTP enrolment answer (`{qr_code_png_base64, secret}`) in a QR image and a key element.
 * The key is grouped by four characters, easier to type; authenticator apps ignore the spaces.
 * @param {HTMLImageElement} img
 * @param {HTMLElement} secretEl
 * @param {any} data
 */
export function showEnrollment(img, secretEl, data) {
  const png = String(data?.qr_code_png_base64 ?? '');
  img.src = png.startsWith('data:') ? png : `data:image/png;base64,${png}`;
  secretEl.textContent = String(data?.secret ?? '').replace(/(.{4})(?=.)/g, '$1 ');
}

/** Fills the ordered list `list` with backup codes, one item each (text only, never HTML). */
export function showCodes(list, codes) {
  list.replaceChildren(
    ...codes.map((c) => {
      const li = document.createElement('li');
      li.textContent = String(c);
      return li;
    }),
  );
}
