/**
 * A webhook URL's path and query often are the receiver's secret (chat services' incoming hooks,
 * `?token=`). The log line of an endpoint marked failing and the audit entry of its creation name it
 * by origin only; the endpoint's own record (read by admins through the API) keeps the whole URL.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/config.ts';
import { SecretBox } from '../../src/crypto/secret-box.ts';
import type { Database } from '../../src/db/database.ts';
import { webhookLane } from '../../src/jobs/event-delivery.ts';
import { OutboxWorker } from '../../src/jobs/outbox-worker.ts';
import type { MailTransport } from '../../src/mail/types.ts';
import { SYSTEM_CONTEXT } from '../../src/services/audit/record.ts';
import * as endpoints from '../../src/services/events/endpoints.ts';
import { enqueueEvent } from '../../src/services/events/publish.ts';
import { urlForLogs } from '../../src/webhooks/send.ts';
import { withDatabases } from '../helpers/pg-database.ts';
import { startReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.ts';

const SECRET_PATH = '/services/T0AAA/B0BBB/Xq9hookpathsecret';
const SECRET_QUERY = '?token=Zq7querysecret';
const config = loadConfig({ NODE_ENV: 'test', WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_TIMEOUT: '10', WEBHOOK_MAX_AGE: '3d' });
const secretBox = new SecretBox([{ kid: 't', key: randomBytes(32) }]);
const noMail: MailTransport = { name: 'none', async send() {}, async close() {} };

test('urlForLogs keeps scheme, host and port, and hides any path or query', () => {
  assert.equal(urlForLogs(`https://hooks.example.com${SECRET_PATH}${SECRET_QUERY}`), 'https://hooks.example.com/…');
  assert.equal(urlForLogs('http://10.0.0.5:8080/?k=v'), 'http://10.0.0.5:8080/…');
  assert.equal(urlForLogs('https://receiver.example.com/'), 'https://receiver.example.com/');
  assert.equal(urlForLogs('not a url'), '(not a URL)');
});

withDatabases('webhook URLs in logs and audit entries', ({ open }) => {
  let db: Database;
  let receiver: WebhookReceiver;
  before(async () => {
    db = (await open()).db;
    receiver = await startReceiver();
  });
  after(() => receiver.close());

  test('the failing-endpoint log line and the creation audit entry carry the origin, never the path or query', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _enc, cb) => (lines.push(chunk.toString()), cb()) }));
    let now = Math.floor(Date.now() / 1000) * 1000;
    const clock = () => new Date(now);
    const deps = { config, db, clock, secretBox };
    receiver.mode = { kind: 'status', status: 503 };
    const url = `${receiver.url}${SECRET_PATH}${SECRET_QUERY}`;
    const ep = await endpoints.createEndpoint(deps, SYSTEM_CONTEXT, { url, events: ['*'] });
    await db.transaction((tx) => enqueueEvent(tx, deps, 'user.deleted', {}));
    const worker = new OutboxWorker({ db, clock, transport: noMail, logger, config, lanes: [webhookLane({ db, clock, logger, secretBox, config, random: () => 0.5 })] });
    await worker.drain();
    now += 86400_000;
    await worker.drain();

    const failing = lines.map((l) => JSON.parse(l) as { msg: string; url?: string }).find((l) => l.msg.includes('marked failing'));
    assert.ok(failing, 'the endpoint was marked failing after a day');
    assert.equal(failing.url, `${new URL(receiver.url).origin}/…`);
    const audit = await db.query<{ data: unknown }>("SELECT data FROM audit_log WHERE data->>'action' = 'webhook.created' AND data->>'webhook_id' = $1", [ep.id]);
    assert.equal(audit.rows.length, 1);
    assert.equal((audit.rows[0]!.data as { url: string }).url, `${new URL(receiver.url).origin}/…`);
    for (const secret of ['Xq9hookpathsecret', 'Zq7querysecret']) {
      assert.ok(!lines.join('').includes(secret), `no log line carries ${secret}`);
      assert.ok(!JSON.stringify(audit.rows).includes(secret), `the audit entry does not carry ${secret}`);
    }
    // The endpoint itself still delivers to, and shows admins, the whole URL.
    assert.ok(receiver.received.length >= 2, 'both attempts reached the receiver');
    assert.equal((await endpoints.listEndpoints(deps)).find((e) => e.id === ep.id)?.url, url);
  });
});
