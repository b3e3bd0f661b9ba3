/**
 * STARTTLS is required for an `smtp://` server that is not on this machine: a man in the middle who
 * strips the server's STARTTLS offer must not get the SMTP password and the reset links in clear.
 * The decision is tested on SMTP_URLs; the refusal against a real SMTP server that offers no
 * STARTTLS (what a stripped connection looks like), with the option the decision sets.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { createSmtpTransport, smtpRequiresTls } from '../../src/mail/smtp-transport.ts';
import type { MailMessage } from '../../src/mail/types.ts';
import { startSmtpSink } from '../helpers/smtp-sink.ts';

test('smtp:// to another host requires STARTTLS; loopback, smtps:// and an explicit requireTLS in the URL decide otherwise', () => {
  assert.equal(smtpRequiresTls('smtp://user:pass@smtp.example.com:587'), true);
  assert.equal(smtpRequiresTls('smtp://mailpit:1025'), true);
  assert.equal(smtpRequiresTls('smtp://127.0.0.1:2525'), false);
  assert.equal(smtpRequiresTls('smtp://localhost:25'), false);
  assert.equal(smtpRequiresTls('smtp://[::1]:25'), false);
  assert.equal(smtpRequiresTls('smtps://user:pass@smtp.example.com:465'), false, 'TLS from the first byte');
  assert.equal(smtpRequiresTls('smtp://relay.internal:25?requireTLS=false'), false, 'the operator said so');
  assert.equal(smtpRequiresTls('smtp://postfix:25?ignoreTLS=true'), false, "nodemailer's own opt-out, which requireTLS would override");
});

test('with STARTTLS required, a server that offers none gets no mail and no password; without, it gets both', async (t) => {
  const smtp = await startSmtpSink();
  t.after(() => smtp.close());
  const message: MailMessage = { id: '01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e13', kind: 'password_reset', to: 'victim@example.com', subject: 'Reset your password', text: 'https://auth.example.test/reset?token=secret', html: '<p>reset</p>' };
  const config = (query: string) => loadConfig({ NODE_ENV: 'test', PUBLIC_URL: 'https://auth.example.test', SMTP_URL: `smtp://127.0.0.1:${smtp.port}${query}`, MAIL_FROM: 'Twofold <no-reply@auth.example.test>' });
  const required = createSmtpTransport(config('?requireTLS=true'));
  t.after(() => required.close());
  await assert.rejects(required.send(message), /STARTTLS/i);
  assert.equal(smtp.received.length, 0);
  const plain = createSmtpTransport(config(''));
  t.after(() => plain.close());
  await plain.send(message);
  assert.equal(smtp.received.length, 1);
});
