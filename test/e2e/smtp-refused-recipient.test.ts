/**
 * An SMTP server that refuses a recipient quoting the address (as Postfix does: `550 5.1.1
 * <user@example.com>: Recipient address rejected`) must not put the address into the mail's
 * last_error, which GET /api/v1/admin/outbox shows and which promises never to show an address. The
 * rest of the reply stays for the admin. A real SMTP server (smtp-server, on loopback), the real SMTP
 * transport and the outbox worker; the worker's clock is the test's, moved by nobody.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OutboxWorker } from '../../src/jobs/outbox-worker.ts';
import { createSmtpTransport } from '../../src/mail/smtp-transport.ts';
import { startRefusingServer } from '../helpers/smtp-sink.ts';
import { createUser, describeWithApp, quietLogger, type TestApp } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';

async function storedError(ta: TestApp, to: string): Promise<string | null> {
  const r = await ta.deps.db.query<{ last_error: string | null }>('SELECT last_error FROM outbox WHERE to_address = $1', [to]);
  assert.equal(r.rows.length, 1);
  return r.rows[0]!.last_error;
}

function assertMasked(text: string | null, email: string): void {
  assert.ok(text, 'the failure is recorded');
  const lower = text.toLowerCase();
  assert.ok(!lower.includes(email.toLowerCase()) && !lower.includes(email.split('@')[0]!.toLowerCase()), `no address, nor its local part: ${text}`);
  assert.ok(text.includes('550') && text.includes('<address>: Recipient address rejected: User unknown in virtual mailbox table (<address>)'), `the rest of the reply kept: ${text}`);
}

describeWithApp('a recipient refused by the SMTP server', (suite) => {
  test('the address quoted in the reply is masked in the stored last_error and in GET /admin/outbox', async (t) => {
    const port = await startRefusingServer(t);
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const user = await createUser(ta.app);
    const transport = createSmtpTransport({ smtpUrl: `smtp://127.0.0.1:${port}`, mailFrom: 'Twofold <no-reply@example.com>', publicUrl: 'https://auth.example.test' });
    t.after(() => transport.close());
    const worker = new OutboxWorker({ db: ta.deps.db, clock: ta.clock, transport, logger: quietLogger(), config: ta.deps.config });
    await worker.drain();

    assertMasked(await storedError(ta, user.email), user.email);
    const listed = await adminCall(ta, 'GET', '/api/v1/admin/outbox?status=retrying');
    assert.equal(listed.statusCode, 200, listed.body);
    const messages = listed.json().messages as { last_error: string | null }[];
    assert.ok(messages.length > 0);
    for (const m of messages) assertMasked(m.last_error, user.email);
    assert.ok(!listed.body.toLowerCase().includes(user.email.toLowerCase()));
  });

  test('a last_error stored with an address before masking existed is shown masked', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const user = await createUser(ta.app);
    await ta.deps.db.query('UPDATE outbox SET attempts = 1, last_error = $2 WHERE to_address = $1', [
      user.email,
      `Can't send mail - all recipients were rejected: 550 5.1.1 <${user.email}>: Recipient address rejected: User unknown in virtual mailbox table (${user.email})`,
    ]);
    const listed = await adminCall(ta, 'GET', '/api/v1/admin/outbox');
    assert.equal(listed.statusCode, 200, listed.body);
    assert.ok(!listed.body.toLowerCase().includes(user.email.toLowerCase()), listed.body);
    // The suite's database is shared: the other test's refused mail is listed too.
    const withError = (listed.json().messages as { last_error: string | null }[]).filter((m) => m.last_error !== null);
    assert.ok(withError.length > 0);
    for (const m of withError) assertMasked(m.last_error, user.email);
  });
});
