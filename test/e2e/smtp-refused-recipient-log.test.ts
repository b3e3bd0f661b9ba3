/**
 * The outbox worker's log lines about a failed delivery carry the same masked text as last_error: an
 * SMTP server refusing a recipient quotes the address, and logs (shipped, kept, read widely) must not
 * collect addresses. The SMTP error code and reply code stay, as fields, and so does the server's
 * reason. A real SMTP server on loopback, the real SMTP transport, the process's logger (with its
 * redaction) writing into the test, on the retry (warn) and the giving up (error).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OutboxWorker } from '../../src/jobs/outbox-worker.ts';
import { createLogger } from '../../src/logger.ts';
import { createSmtpTransport } from '../../src/mail/smtp-transport.ts';
import { startRefusingServer } from '../helpers/smtp-sink.ts';
import { createUser, describeWithApp } from '../helpers/app.ts';

describeWithApp('log lines of a recipient refused by the SMTP server', (suite) => {
  test('the retry (warn) and the giving up (error) log the reply with the address masked, and the codes', async (t) => {
    const port = await startRefusingServer(t);
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const lines: string[] = [];
    const logger = createLogger({ logLevel: 'info' }, { write: (s: string) => void lines.push(s) });
    const transport = createSmtpTransport({ smtpUrl: `smtp://127.0.0.1:${port}`, mailFrom: 'Twofold <no-reply@example.com>', publicUrl: 'https://auth.example.test' });
    t.after(() => transport.close());
    const worker = new OutboxWorker({ db: ta.deps.db, clock: ta.clock, transport, logger, config: ta.deps.config });

    await worker.drain();
    // Past the mail's age limit: the next attempt is the last, and the worker gives up.
    ta.clock.advance(ta.deps.config.outbox.maxAgeSeconds + 1);
    await worker.drain();

    const entries = lines.map((l) => JSON.parse(l) as { level: number; msg: string; error?: string; errorCode?: string; responseCode?: number; mailId?: string });
    const ours = await ta.deps.db.query<{ id: string; last_error: string | null; failed_at: Date | null }>('SELECT id, last_error, failed_at FROM outbox WHERE to_address = $1', [user.email]);
    assert.equal(ours.rows.length, 1);
    const mailId = ours.rows[0]!.id;
    assert.ok(ours.rows[0]!.failed_at, 'given up');
    const retry = entries.find((e) => e.mailId === mailId && e.level === 40);
    const givenUp = entries.find((e) => e.mailId === mailId && e.level === 50);
    assert.ok(retry && givenUp, lines.join('\n'));
    for (const e of [retry, givenUp]) {
      assert.match(e.error ?? '', /550 5\.1\.1 <address>: Recipient address rejected: User unknown in virtual mailbox table \(<address>\)/, e.error);
      assert.equal(e.errorCode, 'EENVELOPE');
      assert.equal(e.responseCode, 550);
    }
    assert.equal(givenUp.error, ours.rows[0]!.last_error, 'the log says what last_error says');
    const text = lines.join('\n').toLowerCase();
    assert.ok(!text.includes(user.email.toLowerCase()), 'no address in the log');
    assert.ok(!text.includes(user.email.split('@')[0]!.toLowerCase()), 'nor its local part');
  });
});
