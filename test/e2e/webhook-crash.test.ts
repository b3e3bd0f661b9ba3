/**
 * A crash between sending a webhook and recording it (issue 10): the real service process is killed
 * with SIGKILL while the receiver holds the request it got; after a restart on the same data
 * directory the event is sent again, with the same webhook-id (so the receiver can de-duplicate),
 * once the dead process's lease has run out, and is then recorded as delivered.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort } from '../helpers/net.ts';
import { startService, stopService } from '../helpers/service-process.ts';
import { startReceiver } from '../helpers/webhook-receiver.ts';

const ADMIN_KEY = 'crash-test-admin-key-0123456789abcdefghij';

test('SIGKILL between send and record: after a restart the event is resent with the same webhook-id and recorded once acknowledged', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'twofold-crash-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const receiver = await startReceiver();
  t.after(() => receiver.close());
  receiver.mode = { kind: 'hang' };
  const port = String(await freePort());
  const env = {
    PORT: port, HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'warn', NODE_ENV: 'development', DATABASE_URL: '', SMTP_URL: '', REDIS_URL: '', EVENTS_AMQP_URL: '',
    ADMIN_API_KEY: ADMIN_KEY, WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_TIMEOUT: '1', OUTBOX_POLL_INTERVAL_MS: '100',
  };
  const base = `http://127.0.0.1:${port}`;
  const admin = { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' };

  const { child: first } = await startService(env, t);
  const ep = await (await fetch(`${base}/api/v1/admin/webhooks`, { method: 'POST', headers: admin, body: JSON.stringify({ url: receiver.url, events: ['user.created'] }) })).json() as { id: string; secret: string };
  receiver.secrets = [ep.secret];
  const password = 'a long and unusual passphrase 7';
  const signUp = await fetch(`${base}/api/v1/user`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'crashy', email: 'crashy@example.com', password1: password, password2: password }) });
  assert.equal(signUp.status, 201);
  const user = await signUp.json() as { uuid: string };

  // The service has sent the event; the receiver holds the answer; the process dies before it can record anything.
  await receiver.waitFor(1);
  await stopService(first, 'SIGKILL');
  const sent = receiver.received[0]!;
  assert.equal(sent.verified?.type, 'user.created');
  assert.equal(sent.verified?.data.user_id, user.uuid);

  receiver.mode = { kind: 'status', status: 200 };
  await startService(env, t);
  // Resent once the dead process's lease (2 × WEBHOOK_TIMEOUT + 10 s) has run out.
  await receiver.waitFor(2);
  const resent = receiver.received[1]!;
  assert.equal(resent.id, sent.id, 'the same webhook-id: the receiver can drop the duplicate');
  assert.deepEqual(resent.verified, sent.verified, 'the same event, verified again');

  let log: Array<{ event_id: string; status: string; attempts: number }> = [];
  for (let i = 0; i < 100; i++) {
    log = await (await fetch(`${base}/api/v1/admin/webhooks/${ep.id}/deliveries`, { headers: admin })).json() as typeof log;
    if (log[0]?.status === 'delivered') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(log.map((d) => [d.event_id, d.status, d.attempts]), [[sent.id, 'delivered', 2]]);
  // Acknowledged: never sent again.
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(receiver.received.length, 2);
});
