/**
 * Mail templates: one plain-text and one HTML version of every kind of mail Twofold sends.
 * Every interpolated value is HTML-escaped in the HTML version (usernames are user input), and the
 * HTML uses inline styles only, because most mail clients drop <style> blocks and external sheets.
 */
import type { MailKind } from './types.ts';
import { escapeHtml } from '../html-escape.ts';

/** A second factor that can be added to an account. */
export type AddedFactor = 'totp' | 'email' | 'backup_codes' | 'passkey';
/** A second factor that can be removed from an account. */
export type RemovedFactor = 'totp' | 'email' | 'passkey';

/** The data each kind of mail needs, keyed by kind. */
export interface MailDataByKind {
  verify_email: { username: string; link: string; expiresInHours: number };
  password_reset: { username: string; link: string; expiresInMinutes: number };
  password_changed: { username: string };
  email_otp_login: { username: string; code: string; expiresInMinutes: number };
  email_otp_enable: { username: string; code: string; expiresInMinutes: number };
  /** `passkeyName`: the name of the passkey added or removed, so the person can tell which one. */
  factor_added: { username: string; factor: AddedFactor; passkeyName?: string };
  factor_removed: { username: string; factor: RemovedFactor; passkeyName?: string };
  /** An administrator removed every second factor (lost-device recovery). */
  mfa_reset: { username: string };
}

/** The data of any kind of mail (use MailDataByKind[K] where the kind is known). */
export type MailData = MailDataByKind[MailKind];

/** A mail to send: kind and data together, discriminated on `kind`. */
export type MailRequest = { [K in MailKind]: { kind: K; to: string; data: MailDataByKind[K] } }[MailKind];

/** What every template needs besides its data. */
export interface MailContext {
  productName: string;
  /** Base of links, without trailing slash (config.publicUrl). */
  publicUrl: string;
}

/** A rendered mail. */
export interface RenderedMail {
  subject: string;
  text: string;
  html: string;
}

export { escapeHtml };

/**
 * Only absolute http(s) links go into a mail: a `javascript:` or relative link built by mistake
 * must fail loudly here instead of reaching an inbox.
 */
function checkLink(link: string): string {
  let u: URL;
  try {
    u = new URL(link);
  } catch {
    throw new TypeError('mail link must be an absolute URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError('mail link must be http or https');
  return link;
}

function plural(n: number, unit: string): string {
  return `${n} ${unit}${n === 1 ? '' : 's'}`;
}

const FACTOR_NAMES: Record<AddedFactor, string> = {
  totp: 'an authenticator app (TOTP)',
  email: 'sign-in codes by e-mail',
  backup_codes: 'backup codes',
  passkey: 'a passkey',
};

/** "A passkey ("Laptop")" or the factor's plain name. */
function factorName(factor: AddedFactor, passkeyName: string | undefined): string {
  // The name is the user's (or a thief's) words inside a security notice: on one line, with no
  // direction overrides, so it cannot write lines of its own into the mail (names stored before the
  // API refused such characters included).
  const name = passkeyName?.replace(/[\p{Cc}\u2028\u2029\u202A-\u202E\u2066-\u2069]+/gu, ' ');
  return factor === 'passkey' && name ? `a passkey ("${name}")` : FACTOR_NAMES[factor];
}

// ---- HTML building blocks (inline styles only) ----

const FONT = "-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif";

/** A paragraph; `html` must already be escaped. */
function p(html: string): string {
  return `<p style="margin:0 0 16px 0;">${html}</p>`;
}

function button(link: string, label: string): string {
  const href = escapeHtml(link);
  return (
    `<p style="margin:24px 0;"><a href="${href}" style="display:inline-block;background-color:#1d4ed8;color:#ffffff;` +
    `text-decoration:none;font-weight:600;padding:12px 22px;border-radius:6px;">${escapeHtml(label)}</a></p>` +
    p(
      `<span style="color:#52606d;font-size:13px;">If the button does not work, copy this link into your browser:<br>` +
        `<a href="${href}" style="color:#1d4ed8;word-break:break-all;">${escapeHtml(link)}</a></span>`,
    )
  );
}

function codeBlock(code: string): string {
  return (
    `<p style="margin:24px 0;font-family:'SFMono-Regular',Consolas,'Liberation Mono',Menlo,monospace;font-size:32px;` +
    `font-weight:700;letter-spacing:6px;color:#111827;background-color:#f3f4f6;border-radius:6px;padding:12px 16px;` +
    `text-align:center;">${escapeHtml(code)}</p>`
  );
}

function link(href: string, label: string): string {
  return `<a href="${escapeHtml(href)}" style="color:#1d4ed8;">${escapeHtml(label)}</a>`;
}

function layout(ctx: MailContext, subject: string, body: string): string {
  const product = escapeHtml(ctx.productName);
  return (
    `<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">` +
    `<meta name="viewport" content="width=device-width,initial-scale=1"><title>${escapeHtml(subject)}</title></head>` +
    `<body style="margin:0;padding:0;background-color:#f4f5f7;">` +
    `<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="background-color:#f4f5f7;">` +
    `<tr><td align="center" style="padding:24px 12px;">` +
    `<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="max-width:560px;background-color:#ffffff;` +
    `border-radius:8px;border:1px solid #e4e7eb;">` +
    `<tr><td style="padding:24px 32px 0 32px;font-family:${FONT};font-size:18px;font-weight:700;color:#111827;">${product}</td></tr>` +
    `<tr><td style="padding:16px 32px 24px 32px;font-family:${FONT};font-size:16px;line-height:1.5;color:#1f2933;">${body}</td></tr>` +
    `</table>` +
    `<p style="margin:16px 0 0 0;font-family:${FONT};font-size:12px;color:#7b8794;">` +
    `This is an automatic message from ${product} (${escapeHtml(ctx.publicUrl)}). Please do not reply.</p>` +
    `</td></tr></table></body></html>\n`
  );
}

function textFooter(ctx: MailContext): string {
  return `\n-- \nThis is an automatic message from ${ctx.productName} (${ctx.publicUrl}). Please do not reply.\n`;
}

/** Builds the mail from its parts; `lines` and `htmlBody` carry the same content. */
function compose(ctx: MailContext, subject: string, lines: string[], htmlBody: string): RenderedMail {
  return { subject, text: lines.join('\n') + '\n' + textFooter(ctx), html: layout(ctx, subject, htmlBody) };
}

function forgotPasswordUrl(ctx: MailContext): string {
  return `${ctx.publicUrl}/forgot-password`;
}

/** The warning every security notice carries, so a victim can act at once. */
function notYouText(ctx: MailContext): string {
  return `If this wasn't you, reset your password now: ${forgotPasswordUrl(ctx)}`;
}

function notYouHtml(ctx: MailContext): string {
  return p(`<strong>If this wasn't you, reset your password</strong> now: ${link(forgotPasswordUrl(ctx), forgotPasswordUrl(ctx))}`);
}

// ---- one renderer per kind ----

type Renderer<K extends MailKind> = (data: MailDataByKind[K], ctx: MailContext) => RenderedMail;

const renderers: { [K in MailKind]: Renderer<K> } = {
  verify_email(d, ctx) {
    const subject = `Confirm your e-mail address for ${ctx.productName}`;
    const expiry = `This link expires in ${plural(d.expiresInHours, 'hour')}.`;
    const url = checkLink(d.link);
    return compose(
      ctx,
      subject,
      [
        `Hello ${d.username},`,
        '',
        `Please confirm your e-mail address for ${ctx.productName} by opening this link:`,
        '',
        url,
        '',
        expiry,
        "If you didn't create an account, you can ignore this e-mail.",
      ],
      p(`Hello ${escapeHtml(d.username)},`) +
        p(`Please confirm your e-mail address for ${escapeHtml(ctx.productName)}.`) +
        button(url, 'Confirm e-mail address') +
        p(escapeHtml(expiry)) +
        p("If you didn't create an account, you can ignore this e-mail."),
    );
  },

  password_reset(d, ctx) {
    const subject = `Reset your ${ctx.productName} password`;
    const expiry = `This link expires in ${plural(d.expiresInMinutes, 'minute')} and works once.`;
    const url = checkLink(d.link);
    return compose(
      ctx,
      subject,
      [
        `Hello ${d.username},`,
        '',
        `Someone asked to reset the password of your ${ctx.productName} account. To choose a new password, open this link:`,
        '',
        url,
        '',
        expiry,
        "If you didn't ask for this, ignore this e-mail: your password stays as it is.",
      ],
      p(`Hello ${escapeHtml(d.username)},`) +
        p(`Someone asked to reset the password of your ${escapeHtml(ctx.productName)} account.`) +
        button(url, 'Choose a new password') +
        p(escapeHtml(expiry)) +
        p("If you didn't ask for this, ignore this e-mail: your password stays as it is."),
    );
  },

  password_changed(d, ctx) {
    const subject = `Your ${ctx.productName} password was changed`;
    return compose(
      ctx,
      subject,
      [
        `Hello ${d.username},`,
        '',
        `The password of your ${ctx.productName} account was just changed, and your other sessions were signed out.`,
        '',
        notYouText(ctx),
      ],
      p(`Hello ${escapeHtml(d.username)},`) +
        p(`The password of your ${escapeHtml(ctx.productName)} account was just changed, and your other sessions were signed out.`) +
        notYouHtml(ctx),
    );
  },

  email_otp_login(d, ctx) {
    const subject = `Your ${ctx.productName} sign-in code`;
    const expiry = `It expires in ${plural(d.expiresInMinutes, 'minute')} and works once.`;
    // Someone who asks for a sign-in code has passed the password step: tell the owner what that means.
    const warning = "If you didn't try to sign in, someone knows your password.";
    return compose(
      ctx,
      subject,
      [
        `Hello ${d.username},`,
        '',
        `Your ${ctx.productName} sign-in code is:`,
        '',
        `    ${d.code}`,
        '',
        expiry,
        'Never share this code.',
        `${warning} Reset it now: ${forgotPasswordUrl(ctx)}`,
      ],
      p(`Hello ${escapeHtml(d.username)},`) +
        p(`Your ${escapeHtml(ctx.productName)} sign-in code is:`) +
        codeBlock(d.code) +
        p(escapeHtml(expiry)) +
        p('Never share this code.') +
        p(`<strong>${escapeHtml(warning)}</strong> Reset it now: ${link(forgotPasswordUrl(ctx), forgotPasswordUrl(ctx))}`),
    );
  },

  email_otp_enable(d, ctx) {
    const subject = `Your code to turn on e-mail sign-in codes for ${ctx.productName}`;
    const expiry = `It expires in ${plural(d.expiresInMinutes, 'minute')} and works once.`;
    return compose(
      ctx,
      subject,
      [
        `Hello ${d.username},`,
        '',
        `To turn on sign-in codes by e-mail for your ${ctx.productName} account, enter this code:`,
        '',
        `    ${d.code}`,
        '',
        expiry,
        'Never share this code.',
        notYouText(ctx),
      ],
      p(`Hello ${escapeHtml(d.username)},`) +
        p(`To turn on sign-in codes by e-mail for your ${escapeHtml(ctx.productName)} account, enter this code:`) +
        codeBlock(d.code) +
        p(escapeHtml(expiry)) +
        p('Never share this code.') +
        notYouHtml(ctx),
    );
  },

  factor_added(d, ctx) {
    const subject = `A second factor was added to your ${ctx.productName} account`;
    const what =
      d.factor === 'backup_codes'
        ? `A new set of backup codes was created for your ${ctx.productName} account; any earlier backup codes no longer work.`
        : `${capitalise(factorName(d.factor, d.passkeyName))} was turned on as a second factor for your ${ctx.productName} account.`;
    return compose(
      ctx,
      subject,
      [`Hello ${d.username},`, '', what, '', notYouText(ctx)],
      p(`Hello ${escapeHtml(d.username)},`) + p(escapeHtml(what)) + notYouHtml(ctx),
    );
  },

  factor_removed(d, ctx) {
    const subject = `A second factor was removed from your ${ctx.productName} account`;
    const what = `${capitalise(factorName(d.factor, d.passkeyName))} was turned off as a second factor for your ${ctx.productName} account.`;
    return compose(
      ctx,
      subject,
      [`Hello ${d.username},`, '', what, '', notYouText(ctx)],
      p(`Hello ${escapeHtml(d.username)},`) + p(escapeHtml(what)) + notYouHtml(ctx),
    );
  },
  mfa_reset(d, ctx) {
    const subject = `The second factors of your ${ctx.productName} account were reset`;
    const what = `An administrator removed every second factor (authenticator app, e-mailed codes, passkeys, backup codes) from your ${ctx.productName} account, as asked when a device is lost. You can log in with your password alone now; set up a second factor again on your account page.`;
    return compose(
      ctx,
      subject,
      [`Hello ${d.username},`, '', what, '', notYouText(ctx)],
      p(`Hello ${escapeHtml(d.username)},`) + p(escapeHtml(what)) + notYouHtml(ctx),
    );
  },
};

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** Renders the subject, plain-text and HTML bodies of one mail. */
export function renderMail<K extends MailKind>(kind: K, data: MailDataByKind[K], ctx: MailContext): RenderedMail {
  const render: Renderer<K> = renderers[kind];
  return render(data, ctx);
}
