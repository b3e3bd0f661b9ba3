/** The one layout every hosted page shares: head, header with the product name, main, footer. */
import { html, type SafeHtml } from '../html.ts';

/** What a page hands to the layout. */
export interface LayoutOptions {
  /** Product name from the configuration, shown in the header and the title. */
  productName: string;
  /** Page title, before the product name in `<title>`. */
  title: string;
  /** Content of `<main>`. */
  body: SafeHtml;
  /** File name of the page's module script under `/assets/`, if the page needs one. */
  script?: string;
  /** `narrow` for the single-card pages (login, sign-up), `wide` for the account page. */
  width?: 'narrow' | 'wide';
  /** Extra `data-*` attributes for `<main>` (values are escaped), read by the page script. */
  data?: Record<string, string>;
  /** Whether the page cannot work without JavaScript (adds a `<noscript>` notice). */
  needsScript?: boolean;
}

/** Renders a complete HTML document. No inline script or style, to fit the Content-Security-Policy. */
export function layout(o: LayoutOptions): string {
  const dataAttrs = Object.entries(o.data ?? {}).map(([k, v]) => html` data-${k}="${v}"`);
  const doc = html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="referrer" content="no-referrer">
<title>${o.title} · ${o.productName}</title>
<link rel="icon" href="/assets/logo.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/style.css">
${o.script ? html`<script type="module" src="/assets/${o.script}"></script>` : ''}
</head>
<body>
<header class="site-header">
<a class="brand" href="/"><img src="/assets/logo.svg" alt="" width="28" height="28"><span>${o.productName}</span></a>
</header>
<main id="main" class="${o.width === 'wide' ? 'wide' : 'narrow'}"${dataAttrs}>
${o.needsScript ? html`<noscript><p class="notice warning">This page needs JavaScript: it talks to the ${o.productName} API from your browser. Please turn JavaScript on and reload.</p></noscript>` : ''}
${o.body}
</main>
<footer class="site-footer"><p>Secured by ${o.productName} · two-factor authentication</p></footer>
</body>
</html>
`;
  return doc.value;
}

/** A form field with its visible label, its input and a slot for an inline error. */
export interface FieldOptions {
  id: string;
  label: string;
  /** Name sent to the API; also the `field` of its problem-details errors. Defaults to `id`. */
  name?: string;
  type?: 'text' | 'email' | 'password';
  autocomplete?: string;
  inputmode?: 'numeric' | 'text' | 'email';
  autofocus?: boolean;
  required?: boolean;
  value?: string;
  hint?: string;
}

/** Renders one labelled input with its error slot (`#<id>-error`) wired through `aria-describedby`. */
export function field(f: FieldOptions): SafeHtml {
  const type = f.type ?? 'text';
  const describedBy = [f.hint ? `${f.id}-hint` : '', `${f.id}-error`].filter(Boolean).join(' ');
  const plain = type === 'text' || type === 'email';
  return html`<div class="field">
<label for="${f.id}">${f.label}</label>
${f.hint ? html`<p class="hint" id="${f.id}-hint">${f.hint}</p>` : ''}
<input id="${f.id}" name="${f.name ?? f.id}" type="${type}"${f.autocomplete ? html` autocomplete="${f.autocomplete}"` : ''}${f.inputmode ? html` inputmode="${f.inputmode}"` : ''}${plain ? html` autocapitalize="none" spellcheck="false"` : ''}${f.required === false ? '' : html` required`}${f.autofocus ? html` autofocus` : ''}${f.value !== undefined ? html` value="${f.value}"` : ''} aria-describedby="${describedBy}">
<p class="field-error" id="${f.id}-error"></p>
</div>`;
}

/** An empty live region for errors (`role="alert"`), hidden by CSS while empty. */
export function alertBox(id: string): SafeHtml {
  return html`<div class="alert" role="alert" id="${id}"></div>`;
}

/** A live region for confirmations (`role="status"`), hidden by CSS while empty. */
export function statusBox(id: string, text?: string): SafeHtml {
  return html`<div class="status" role="status" id="${id}">${text ?? ''}</div>`;
}

/**
 * The three steps of adding an authenticator app: the QR code (filled in by the script; its
 * accessible name says "QR code"), the key for typing by hand, and the form for the first code.
 */
export function enrollmentSteps(o: { productName: string; qrId: string; secretId: string; form: SafeHtml }): SafeHtml {
  return html`<ol class="steps">
<li><p>Scan this QR code with your authenticator app.</p>
<img id="${o.qrId}" class="qr" alt="QR code to add your ${o.productName} account to an authenticator app" width="200" height="200" src="data:,"></li>
<li><p>Or type this key into the app by hand:</p><p><code id="${o.secretId}" class="secret"></code></p></li>
<li><p>Enter the 6-digit code the app shows.</p>
${o.form}</li>
</ol>`;
}

/** The TOTP enrolment steps whose form verifies the first code and logs in (login and sign-up pages). */
export function loginEnrollment(productName: string, prefix: string): SafeHtml {
  return enrollmentSteps({
    productName,
    qrId: `${prefix}-qr`,
    secretId: `${prefix}-secret`,
    form: html`<form method="post" id="${prefix}-form" novalidate>
${field({ id: `${prefix}-code`, name: 'security_code', label: 'Code from the app', autocomplete: 'one-time-code', inputmode: 'numeric' })}
<button type="submit" class="primary">Verify and log in</button>
</form>`,
  });
}
