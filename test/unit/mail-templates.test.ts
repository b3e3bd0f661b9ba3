import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { MailKind } from '../../src/mail/types.ts';
import { escapeHtml, renderMail, type MailRequest } from '../../src/mail/templates.ts';

const ctx = { productName: 'Acme Two-Step', publicUrl: 'https://auth.example.test' };
const evil = '<script>alert("x")</script>';
const link = 'https://auth.example.test/verify-email?token=AbC_12-xyz';

const CODE_RE = /\b\d{6}\b/;
const LINK_RE = /https?:\/\/\S+token=[A-Za-z0-9_-]+/;

/** One request of every kind, all with the hostile username. */
const every: MailRequest[] = [
  { kind: 'verify_email', to: 'a@example.test', data: { username: evil, link, expiresInHours: 24 } },
  { kind: 'password_reset', to: 'a@example.test', data: { username: evil, link, expiresInMinutes: 30 } },
  { kind: 'password_changed', to: 'a@example.test', data: { username: evil } },
  { kind: 'email_otp_login', to: 'a@example.test', data: { username: evil, code: '012345', expiresInMinutes: 10 } },
  { kind: 'email_otp_enable', to: 'a@example.test', data: { username: evil, code: '987654', expiresInMinutes: 10 } },
  { kind: 'factor_added', to: 'a@example.test', data: { username: evil, factor: 'totp' } },
  { kind: 'factor_added', to: 'a@example.test', data: { username: evil, factor: 'backup_codes' } },
  { kind: 'factor_removed', to: 'a@example.test', data: { username: evil, factor: 'email' } },
];

function render(m: MailRequest) {
  return renderMail(m.kind, m.data, ctx);
}

describe('mail templates', () => {
  test('every kind is covered by this suite', () => {
    const kinds = new Set<MailKind>(every.map((m) => m.kind));
    assert.equal(kinds.size, 7);
  });

  for (const m of every) {
    const label = `${m.kind}${'factor' in m.data ? ` (${m.data.factor})` : ''}`;

    test(`${label}: HTML escapes the username and never contains it raw`, () => {
      const r = render(m);
      assert.ok(!r.html.includes('<script>'), 'raw <script> in HTML');
      assert.ok(r.html.includes(escapeHtml(evil)), 'escaped username missing from HTML');
      // The plain-text body is not HTML: the username appears as typed.
      assert.ok(r.text.includes(evil));
    });

    test(`${label}: names the product and has a subject without the username`, () => {
      const r = render(m);
      assert.ok(r.subject.includes(ctx.productName));
      assert.ok(!r.subject.includes(evil));
      assert.ok(r.text.includes(ctx.productName));
      assert.ok(r.html.includes(ctx.productName));
      assert.ok(r.html.startsWith('<!DOCTYPE html>'));
      assert.ok(!/<style|<link|<script/i.test(r.html), 'mail HTML must use inline styles only');
    });
  }

  test('links appear in text and HTML and can be extracted from the text body', () => {
    for (const m of every.slice(0, 2)) {
      const r = render(m);
      assert.equal(LINK_RE.exec(r.text)?.[0], link);
      assert.ok(r.html.includes(`href="${link}"`));
      assert.equal(CODE_RE.exec(r.text), null, 'no stray six-digit number next to a link');
    }
  });

  test('codes appear in text and HTML and are the only six-digit number in the text', () => {
    for (const m of every.filter((x) => x.kind === 'email_otp_login' || x.kind === 'email_otp_enable')) {
      const code = (m.data as { code: string }).code;
      const r = render(m);
      const all = r.text.match(/\b\d{6}\b/g);
      assert.deepEqual(all, [code]);
      assert.ok(r.html.includes(`>${code}</p>`));
      assert.equal(LINK_RE.exec(r.text), null, 'no token link in a code mail');
    }
  });

  test('security notices say how to react, with the forgot-password link', () => {
    for (const m of every.filter((x) => x.kind !== 'verify_email' && x.kind !== 'password_reset')) {
      const r = render(m);
      if (m.kind === 'email_otp_login') assert.match(r.text, /If you didn't try to sign in, someone knows your password\. Reset it now/);
      else assert.match(r.text, /If this wasn't you, reset your password/);
      assert.ok(r.text.includes('https://auth.example.test/forgot-password'));
      assert.ok(r.html.includes('href="https://auth.example.test/forgot-password"'));
    }
  });

  test('expiry is stated with the right unit and number', () => {
    const v = renderMail('verify_email', { username: 'bob', link, expiresInHours: 1 }, ctx);
    assert.match(v.text, /expires in 1 hour\b/);
    const r = renderMail('password_reset', { username: 'bob', link, expiresInMinutes: 30 }, ctx);
    assert.match(r.text, /expires in 30 minutes/);
  });

  test('a product name and link with markup are escaped too', () => {
    const hostile = { productName: 'A&B <i>', publicUrl: 'https://x.test' };
    const r = renderMail('verify_email', { username: 'bob', link: 'https://x.test/v?token=a"onmouseover="x', expiresInHours: 24 }, hostile);
    assert.ok(!r.html.includes('<i>'));
    assert.ok(r.html.includes('A&amp;B &lt;i&gt;'));
    assert.ok(!r.html.includes('"onmouseover'), 'attribute break-out in href');
  });

  test('a link that is not http(s) is refused', () => {
    assert.throws(() => renderMail('password_reset', { username: 'bob', link: 'javascript:alert(1)', expiresInMinutes: 30 }, ctx), TypeError);
    assert.throws(() => renderMail('verify_email', { username: 'bob', link: '/relative?token=x', expiresInHours: 1 }, ctx), TypeError);
  });
});
