/**
 * The events' lanes when the database fails to record an acknowledged delivery for a few seconds (a
 * restart, a connection ended): the recording is tried again within the lease, so the receiver gets
 * the event once, not again when the lease ends. PGlite, and PostgreSQL with DATABASE_URL. The
 * database's failures are a wrapper around it; the lanes' waits between tries move the test clock.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, beforeEach, test } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/config.ts';
import { SecretBox } from '../../src/crypto/secret-box.ts';
import type { Database } from '../../src/db/database.ts';
import { amqpLane, webhookLane } from '../../src/jobs/event-delivery.ts';
import { OutboxWorker } from '../../src/jobs/outbox-worker.ts';
import type { MailTransport } from '../../src/mail/types.ts';
import { SYSTEM_CONTEXT } from '../../src/services/audit/record.ts';
import * as endpoints from '../../src/services/events/endpoints.ts';
import { enqueueEvent } from '../../src/services/events/publish.ts';
import { withDatabases } from '../helpers/pg-database.ts';
import { startReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.ts';

// WEBHOOK_TIMEOUT 10 s: the webhook lease is 30 s. The broker URL is never dialled (the publisher is a fake).
const config = loadConfig({ NODE_ENV: 'test', WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_TIMEOUT: '10', EVENTS_AMQP_URL: 'amqp://127.0.0.1:1' });
const WEBHOOK_LEASE_SECONDS = 30;
const AMQP_LEASE_SECONDS = 60;
const noMail: MailTransport = { name: 'none', async send() {}, async close() {} };
const silent = pino({ level: 'silent' });
const secretBox = new SecretBox([{ kid: 't', key: randomBytes(32) }]);

withDatabases('events: recording an acknowledged delivery while the database fails', ({ open }) => {
  let db: Database;
  let receiver: WebhookReceiver;
  // Real time (whole seconds): the receiver verifies webhook-timestamp against its own clock.
  let now = 0;
  const clock = () => new Date(now);
  const sleep = async (ms: number) => {
    now += ms;
    await new Promise((r) => setImmediate(r));
  };

  before(async () => {
    db = (await open()).db;
    receiver = await startReceiver();
  });
  after(async () => {
    await receiver.close();
  });
  beforeEach(async () => {
    await db.query('DELETE FROM events');
    await db.query('DELETE FROM webhook_endpoints');
    receiver.received.length = 0;
    now = Math.floor(Date.now() / 1000) * 1000;
  });

  /** The database as the lanes see it: statements matching `recording` fail for `seconds` from the first of them on. */
  function failingRecording(recording: RegExp, seconds: number) {
    const state = {
      failures: 0,
      db: {
        ...db,
        query: async (sql: string, params?: readonly unknown[]) => {
          if (recording.test(sql)) {
            until ??= now + seconds * 1000;
            if (now < until) {
              state.failures++;
              throw new Error('Connection terminated unexpectedly');
            }
          }
          return db.query(sql, params);
        },
      } as Database,
    };
    let until: number | undefined;
    return state;
  }

  const deps = () => ({ config, db, clock, secretBox });

  async function emit() {
    return db.transaction((tx) => enqueueEvent(tx, { config, clock }, 'session.revoked', { user_id: 'u1', sid: 's1' }));
  }

  test('webhooks: an acknowledgement the database fails to record for 5 s is recorded on a retry; the receiver gets the event once', async () => {
    const ep = await endpoints.createEndpoint(deps(), SYSTEM_CONTEXT, { url: receiver.url, events: ['*'] });
    const id = await emit();
    const down = failingRecording(/SET delivered_at = \$4/, 5);
    const worker = () => new OutboxWorker({ db: down.db, clock, transport: noMail, logger: silent, config, lanes: [webhookLane({ db: down.db, clock, logger: silent, secretBox, config, sleep })] });
    await worker().drain();
    now += (WEBHOOK_LEASE_SECONDS + 30) * 1000;
    await worker().drain();
    assert.deepEqual(receiver.received.map((r) => r.id), [id], 'delivered once, not again after the lease');
    assert.ok(down.failures >= 2, `the recording was tried again (${down.failures} failures)`);
    const [entry] = await endpoints.listEndpointDeliveries(deps(), ep.id);
    assert.equal(entry!.status, 'delivered');
    assert.equal(entry!.attempts, 1);
  });

  test('broker: a publication the database fails to record for 5 s is recorded on a retry; it is published once', async () => {
    const id = await emit();
    const published: string[] = [];
    const publisher = {
      async publish(e: { id: string }) {
        published.push(e.id);
      },
    };
    const down = failingRecording(/UPDATE event_deliveries SET delivered_at = \$3/, 5);
    const lane = amqpLane({ db: down.db, clock, logger: silent, config, publisher, sleep });
    const first = await lane.runBatch().then((r) => r, (err: unknown) => err);
    now += (AMQP_LEASE_SECONDS + 30) * 1000;
    await lane.runBatch().catch(() => undefined);
    assert.deepEqual(published, [id], 'published once, not again after the lease');
    assert.deepEqual(first, { claimed: 1, sent: 1 });
    const r = await db.query<{ delivered_at: Date | null }>(`SELECT delivered_at FROM event_deliveries WHERE event_id = $1 AND target = 'amqp'`, [id]);
    assert.ok(r.rows[0]?.delivered_at, 'recorded as delivered');
  });
});
