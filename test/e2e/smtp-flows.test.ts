/**
 * The account flows through a real SMTP server (smtp-server in this process, random port): the app's
 * mail goes out through the SMTP transport and the outbox worker, and the links are taken from the
 * messages as a user would take them from their inbox.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildApp } from '../../src/app.ts';
import type { Deps } from '../../src/deps.ts';
import { OutboxWorker } from '../../src/jobs/outbox-worker.ts';
import { createSmtpTransport } from '../../src/mail/smtp-transport.ts';
import { settleDeferred } from '../../src/services/deferred.ts';
import { PASSWORD, bearer, buildTestApp, login, uniqueName } from '../helpers/app.ts';
import { createTestDatabase } from '../helpers/pg-database.ts';
import { startSmtpSink, tokenLink } from '../helpers/smtp-sink.ts';

const NEW_PASSWORD = 'plum orchard under winter rain';

test('sign-up → verification mail over SMTP → link → verified; forgot → reset mail → reset → login with the new password', async (t) => {
  const smtp = await startSmtpSink();
  t.after(() => smtp.close());
  const database = await createTestDatabase('pglite');
  t.after(() => database.cleanup());

  // The test app's deps (keys, clock, limiter…), with mail going out through SMTP instead of a capture.
  const base = await buildTestApp(t, database.db, { env: { SMTP_URL: `smtp://127.0.0.1:${smtp.port}`, MAIL_FROM: 'Twofold <no-reply@auth.example.test>' } });
  const transport = createSmtpTransport(base.deps.config);
  t.after(() => transport.close());
  const deps: Deps = { ...base.deps, mailTransport: transport };
  const app = await buildApp(deps);
  t.after(() => app.close());
  const worker = new OutboxWorker({ db: deps.db, clock: deps.clock, transport: deps.mailTransport, logger: deps.logger, config: deps.config });
  const deliver = async () => {
    await settleDeferred(deps);
    return worker.drain();
  };

  const username = uniqueName('smtp');
  const email = `${username}@example.test`;
  const signup = await app.inject({ method: 'POST', url: '/api/v1/user', payload: { username, email, password1: PASSWORD, password2: PASSWORD } });
  assert.equal(signup.statusCode, 201);
  assert.equal(await deliver(), 1);

  const [verification] = smtp.to(email);
  assert.ok(verification);
  assert.equal(verification.mail.subject, 'Confirm your e-mail address for Twofold');
  const verifyUrl = tokenLink(verification.mail.text);
  assert.equal(`${verifyUrl.origin}${verifyUrl.pathname}`, 'http://127.0.0.1:8000/api/v1/user/email/verify');
  assert.ok(verification.mail.html && verification.mail.html.includes(verifyUrl.search.replace(/&/g, '&amp;')), 'the HTML part carries the same link');

  // Opening the link shows a confirmation page (a GET never spends the token); its button POSTs it.
  const opened = await app.inject({ method: 'GET', url: `${verifyUrl.pathname}${verifyUrl.search}`, headers: { accept: 'text/html' } });
  assert.equal(opened.statusCode, 303);
  const clicked = await app.inject({ method: 'POST', url: verifyUrl.pathname, payload: { token: verifyUrl.searchParams.get('token') } });
  assert.equal(clicked.statusCode, 200);
  const first = await login(app, { username, password: PASSWORD });
  assert.equal(first.statusCode, 200);
  const info = await app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(first.json().access_token) });
  assert.equal(info.json().email_verified, true);

  const forgot = await app.inject({ method: 'POST', url: '/api/v1/user/password/forgot', payload: { email } });
  assert.equal(forgot.statusCode, 202);
  assert.equal(await deliver(), 1);
  const reset = smtp.to(email).find((r) => r.mail.subject === 'Reset your Twofold password');
  assert.ok(reset, 'reset mail received');
  const resetUrl = tokenLink(reset.mail.text);
  assert.equal(`${resetUrl.origin}${resetUrl.pathname}`, 'http://127.0.0.1:8000/reset-password');
  const token = resetUrl.searchParams.get('token');
  assert.ok(token);

  const done = await app.inject({ method: 'POST', url: '/api/v1/user/password/reset', payload: { token, password1: NEW_PASSWORD, password2: NEW_PASSWORD } });
  assert.equal(done.statusCode, 204);
  assert.equal((await login(app, { username, password: PASSWORD })).statusCode, 401);
  assert.equal((await login(app, { username, password: NEW_PASSWORD })).statusCode, 200);
  const revoked = await app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(first.json().access_token) });
  assert.equal(revoked.statusCode, 401, 'the session from before the reset is gone');

  assert.equal(await deliver(), 1);
  const subjects = smtp.to(email).map((r) => r.mail.subject);
  assert.deepEqual(subjects, ['Confirm your e-mail address for Twofold', 'Reset your Twofold password', 'Your Twofold password was changed']);
  assert.equal(new Set(smtp.to(email).map((r) => r.mail.messageId)).size, 3);
});
