/**
 * Mail through a real SMTP server (smtp-server, in this process, on loopback): delivery, and an outage
 * that lasts across a restart of the service, after which the mail arrives exactly once.
 * The worker's clock is moved by hand; nothing here depends on wall-clock time.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { AddressObject } from 'mailparser';
import pino from 'pino';
import { loadConfig } from '../../src/config.ts';
import type { Database } from '../../src/db/database.ts';
import { migrate } from '../../src/db/migrate.ts';
import { openPglite } from '../../src/db/pglite.ts';
import * as outbox from '../../src/db/repositories/outbox.ts';
import { OutboxWorker } from '../../src/jobs/outbox-worker.ts';
import { enqueueMail } from '../../src/mail/outbox.ts';
import { createSmtpTransport } from '../../src/mail/smtp-transport.ts';
import { openTestPglite } from '../helpers/pglite-template.ts';
import { freePort, startSmtpSink } from '../helpers/smtp-sink.ts';

const logger = pino({ level: 'silent' });

function configFor(port: number) {
  return loadConfig({
    NODE_ENV: 'test',
    PUBLIC_URL: 'https://auth.example.test',
    SMTP_URL: `smtp://127.0.0.1:${port}`,
    MAIL_FROM: 'Twofold <no-reply@auth.example.test>',
    PRODUCT_NAME: 'Twofold',
  });
}

function movableClock() {
  let now = new Date('2030-01-01T12:00:00.000Z').getTime();
  return { clock: () => new Date(now), advance: (s: number) => (now += s * 1000) };
}

function addresses(a: AddressObject | AddressObject[] | undefined): string[] {
  return (Array.isArray(a) ? a : a ? [a] : []).flatMap((x) => x.value.map((v) => v.address ?? ''));
}

async function openDb(dir?: string): Promise<Database> {
  if (!dir) return openTestPglite();
  const db = await openPglite(dir);
  await migrate(db);
  return db;
}

test('a queued mail is delivered over SMTP with its recipient, subject, bodies and a stable Message-ID', async (t) => {
  const smtp = await startSmtpSink();
  t.after(() => smtp.close());
  const config = configFor(smtp.port);
  const db = await openDb();
  t.after(() => db.close());
  const transport = createSmtpTransport(config);
  t.after(() => transport.close());
  const { clock } = movableClock();

  const link = 'https://auth.example.test/verify-email?token=Zm9vYmFy_-1';
  const id = await db.transaction((tx) =>
    enqueueMail(tx, { config, clock }, { kind: 'verify_email', to: 'alice@example.test', data: { username: 'alice', link, expiresInHours: 24 } }),
  );
  const worker = new OutboxWorker({ db, clock, transport, logger, config });
  assert.equal(await worker.drain(), 1);

  assert.equal(smtp.received.length, 1);
  const [got] = smtp.received;
  assert.ok(got);
  assert.deepEqual(got.rcptTo, ['alice@example.test']);
  assert.deepEqual(addresses(got.mail.to), ['alice@example.test']);
  assert.deepEqual(addresses(got.mail.from), ['no-reply@auth.example.test']);
  assert.equal(got.mail.subject, 'Confirm your e-mail address for Twofold');
  assert.equal(got.mail.messageId, `<${id}@auth.example.test>`);
  assert.equal(got.mail.headers.get('auto-submitted'), 'auto-generated');
  assert.equal(/https?:\/\/\S+token=[A-Za-z0-9_-]+/.exec(got.mail.text ?? '')?.[0], link);
  assert.ok(typeof got.mail.html === 'string' && got.mail.html.includes(`href="${link}"`));

  const row = await outbox.findById(db, id);
  assert.ok(row?.sent_at);
  assert.equal(await worker.drain(), 0);
  assert.equal(smtp.received.length, 1);
});

test('SMTP down across a restart: sign-up mail is queued at once, retried, and delivered exactly once', async (t) => {
  const port = await freePort();
  const config = configFor(port);
  const dir = mkdtempSync(join(tmpdir(), 'twofold-smtp-e2e-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const time = movableClock();
  const { clock } = time;

  // First life of the service: the mail is committed with the change, although SMTP is unreachable.
  let db = await openDb(dir);
  const id = await db.transaction((tx) =>
    enqueueMail(tx, { config, clock }, { kind: 'email_otp_login', to: 'bob@example.test', data: { username: 'bob', code: '424242', expiresInMinutes: 10 } }),
  );
  let transport = createSmtpTransport(config);
  let worker = new OutboxWorker({ db, clock, transport, logger, config });
  assert.equal(await worker.drain(), 0, 'nothing listens: nothing is sent');
  const failed = await outbox.findById(db, id);
  assert.ok(failed);
  assert.equal(failed.attempts, 1);
  assert.equal(failed.sent_at, null);
  assert.equal(failed.failed_at, null);
  assert.equal(failed.locked_until, null);
  assert.ok(failed.next_attempt_at.getTime() > clock().getTime(), 'a retry is scheduled');
  assert.match(failed.last_error ?? '', /ECONNREFUSED|ESOCKET|connect/i);

  // The service goes down.
  await worker.stop();
  await transport.close();
  await db.close();

  // SMTP comes back on the same port, the service restarts on the same data, and time passes.
  const smtp = await startSmtpSink(port);
  t.after(() => smtp.close());
  db = await openDb(dir);
  t.after(() => db.close());
  transport = createSmtpTransport(config);
  t.after(() => transport.close());
  worker = new OutboxWorker({ db, clock, transport, logger, config });
  time.advance(config.outbox.maxBackoffSeconds);

  assert.equal(await worker.drain(), 1);
  assert.equal(await worker.drain(), 0, 'a further drain sends nothing more');
  time.advance(3600);
  assert.equal(await worker.drain(), 0);

  assert.equal(smtp.received.length, 1);
  const [got] = smtp.received;
  assert.ok(got);
  assert.deepEqual(got.rcptTo, ['bob@example.test']);
  assert.equal(got.mail.messageId, `<${id}@auth.example.test>`);
  assert.deepEqual((got.mail.text ?? '').match(/\b\d{6}\b/g), ['424242']);
  const sent = await outbox.findById(db, id);
  assert.ok(sent?.sent_at);
  assert.equal(sent.attempts, 2);
});
