/**
 * Events go out when their change commits, not at the next poll: the drivers run after-commit
 * callbacks, the events' outbox tells its listeners once a transaction that queued deliveries has
 * committed, and the worker coalesces the kicks into one run. On PGlite, and on PostgreSQL with
 * DATABASE_URL (where "after commit" is checked from a second connection). Every worker here polls
 * once a minute, so a delivery within the test can only come from a kick.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, beforeEach, test } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/config.ts';
import { SecretBox } from '../../src/crypto/secret-box.ts';
import { afterCommit } from '../../src/db/after-commit.ts';
import type { Database } from '../../src/db/database.ts';
import { webhookLane } from '../../src/jobs/event-delivery.ts';
import { OutboxWorker, type OutboxLane } from '../../src/jobs/outbox-worker.ts';
import { enqueueMail } from '../../src/mail/outbox.ts';
import type { MailTransport } from '../../src/mail/types.ts';
import { SYSTEM_CONTEXT } from '../../src/services/audit/record.ts';
import * as endpoints from '../../src/services/events/endpoints.ts';
import { enqueueEvent, onEventsQueued } from '../../src/services/events/publish.ts';
import { withDatabases } from '../helpers/pg-database.ts';
import { startReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.ts';

const config = loadConfig({ NODE_ENV: 'test', WEBHOOK_ALLOW_PRIVATE: 'true', OUTBOX_POLL_INTERVAL_MS: '60000' });
const noMail: MailTransport = { name: 'none', async send() {}, async close() {} };
const silent = pino({ level: 'silent' });
const secretBox = new SecretBox([{ kid: 't', key: randomBytes(32) }]);
const clock = () => new Date();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until `done()` holds, up to `seconds` (far below the minute-long poll); fails otherwise. */
async function until(done: () => boolean, what: string, seconds = 20): Promise<void> {
  for (let i = 0; i < seconds * 50 && !done(); i++) await sleep(20);
  assert.ok(done(), `${what} (no poll can have done it: the worker polls once a minute)`);
}

withDatabases('events: delivery on commit', ({ kind, open }) => {
  let db: Database;
  let other: Database;
  let receiver: WebhookReceiver;

  before(async () => {
    const d = await open();
    db = d.db;
    // A second instance's pool on PostgreSQL; PGlite has one connection, so the same database.
    other = await d.connectAgain(1);
    // A slow COMMIT (a deferred trigger sleeps in it): a callback run before the commit has finished
    // would read from the other connection while the row is not yet visible.
    await db.exec(`CREATE TABLE commit_probe (x int);
      CREATE FUNCTION commit_probe_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$;
      CREATE CONSTRAINT TRIGGER commit_probe_slow AFTER INSERT ON commit_probe DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION commit_probe_slow();`);
    receiver = await startReceiver();
  });
  beforeEach(async () => {
    await db.query('DELETE FROM events');
    await db.query('DELETE FROM webhook_endpoints');
    receiver.received.length = 0;
  });
  after(async () => {
    await receiver.close();
  });

  test('afterCommit runs once the rows are visible to other connections, never for a rollback, at once outside a transaction', async () => {
    const seen: Array<Promise<number>> = [];
    const count = () => other.query<{ n: number }>('SELECT count(*)::int AS n FROM commit_probe').then((r) => r.rows[0]!.n);
    await db.transaction(async (tx) => {
      await tx.query('INSERT INTO commit_probe VALUES (1)');
      afterCommit(tx, () => seen.push(count()));
      assert.equal(seen.length, 0, 'not before the commit');
    });
    assert.equal(seen.length, 1);
    assert.equal(await seen[0], 1, kind === 'postgres' ? 'the other connection sees the committed row' : 'the row is there');

    let rolledBack = 0;
    await assert.rejects(db.transaction(async (tx) => {
      await tx.query('INSERT INTO commit_probe VALUES (2)');
      afterCommit(tx, () => rolledBack++);
      throw new Error('change failed');
    }), /change failed/);
    await sleep(50);
    assert.equal(rolledBack, 0, 'a rolled-back transaction runs nothing');

    let direct = 0;
    afterCommit(db, () => direct++);
    await Promise.resolve();
    assert.equal(direct, 1, 'a statement on the database itself has committed already');
  });

  test('a committed event wakes the worker and is delivered without a poll; a rolled-back or unsubscribed one wakes nothing', async () => {
    const ep = await endpoints.createEndpoint({ config, db, clock, secretBox }, SYSTEM_CONTEXT, { url: receiver.url, events: ['session.revoked'] });
    receiver.secrets = [ep.secret];
    const worker = new OutboxWorker({ db, clock, transport: noMail, logger: silent, config, kickDelayMs: 20, lanes: [webhookLane({ db, clock, logger: silent, secretBox, config })] });
    let kicks = 0;
    const stopListening = onEventsQueued(() => {
      kicks++;
      worker.kick();
    });
    try {
      worker.start();
      // The start's own run finds nothing; from here on only kicks can deliver.
      await sleep(100);
      const id = await db.transaction(async (tx) => {
        const queued = await enqueueEvent(tx, { config, clock }, 'session.revoked', { user_id: 'u1' });
        assert.equal(kicks, 0, 'no wake-up before the commit (the worker would find nothing and sleep a poll)');
        return queued;
      });
      assert.equal(kicks, 1);
      await until(() => receiver.received.length === 1, 'the event was delivered');
      assert.equal(receiver.received[0]!.id, id);
      assert.deepEqual(receiver.received[0]!.verified?.data, { user_id: 'u1' });

      await assert.rejects(db.transaction(async (tx) => {
        await enqueueEvent(tx, { config, clock }, 'session.revoked', { user_id: 'u2' });
        throw new Error('change failed');
      }), /change failed/);
      await db.transaction((tx) => enqueueEvent(tx, { config, clock }, 'user.created', { user_id: 'u3' }));
      await sleep(50);
      assert.equal(kicks, 1, 'nothing to deliver: no wake-up');
      assert.equal(receiver.received.length, 1);
    } finally {
      stopListening();
      await worker.stop();
    }
  });

  test('kicks coalesce: a burst is one run, kicks during a run are one run after it', async () => {
    let runs = 0;
    let hold: Promise<void> | undefined;
    const counting: OutboxLane = {
      name: 'counting',
      async runBatch() {
        runs++;
        await hold;
        return { claimed: 0, sent: 0 };
      },
    };
    const worker = new OutboxWorker({ db, clock, transport: noMail, logger: silent, config, kickDelayMs: 30, lanes: [counting] });
    try {
      worker.start();
      await until(() => runs === 1, 'the start runs once');
      for (let i = 0; i < 50; i++) worker.kick();
      await until(() => runs === 2, 'a burst of kicks runs');
      await sleep(300);
      assert.equal(runs, 2, 'fifty kicks at once are one run');

      let release!: () => void;
      hold = new Promise<void>((r) => (release = r));
      worker.kick();
      await until(() => runs === 3, 'the kick runs');
      for (let i = 0; i < 20; i++) worker.kick();
      await sleep(100);
      assert.equal(runs, 3, 'no second run while one is going');
      hold = undefined;
      release();
      await until(() => runs === 4, 'the kicks during the run are served after it');
      await sleep(300);
      assert.equal(runs, 4, 'by one run');
    } finally {
      await worker.stop();
    }
  });

  test('a lane busy with a backlog does not hold back the mail: a mail queued meanwhile goes out at its kick', async () => {
    // A lane with a long backlog (a receiver back after an outage): batch after batch, each saying there is more.
    const BACKLOG = 400;
    let batches = 0;
    const busy: OutboxLane = {
      name: 'busy',
      async runBatch() {
        if (batches >= BACKLOG) return { claimed: 0, sent: 0 };
        batches++;
        await sleep(5);
        return { claimed: 1, sent: 1, more: true };
      },
    };
    const mailed: string[] = [];
    const transport: MailTransport = { name: 'recording', async send(m) { mailed.push(m.to); }, async close() {} };
    const worker = new OutboxWorker({ db, clock, transport, logger: silent, config, kickDelayMs: 20, lanes: [busy] });
    try {
      worker.start();
      await until(() => batches >= 10, 'the busy lane runs');
      await db.transaction((tx) => enqueueMail(tx, { config, clock }, { kind: 'email_otp_login', to: 'waiting@example.test', data: { username: 'waiting', code: '123456', expiresInMinutes: 10 } }));
      worker.kick();
      await until(() => mailed.length === 1, 'the mail is sent');
      assert.ok(batches < BACKLOG, `the mail went out while the other lane still had its backlog (it waited for ${batches} of ${BACKLOG} batches)`);
    } finally {
      await worker.stop();
    }
  });

  test('a receiver that does not answer delays only its own queue: the other endpoint gets its whole backlog meanwhile', async () => {
    const deps = { config, db, clock, secretBox };
    const stuck = await startReceiver();
    stuck.mode = { kind: 'hang' };
    const stuckEp = await endpoints.createEndpoint(deps, SYSTEM_CONTEXT, { url: stuck.url, events: ['*'] });
    const fastEp = await endpoints.createEndpoint(deps, SYSTEM_CONTEXT, { url: receiver.url, events: ['user.updated'] });
    receiver.secrets = [fastEp.secret];
    stuck.secrets = [stuckEp.secret];
    await db.transaction((tx) => enqueueEvent(tx, deps, 'user.created', { user_id: 'stuck' }));
    // More than one batch serves an endpoint (50): the fast endpoint needs three.
    for (let i = 0; i < 120; i++) await db.transaction((tx) => enqueueEvent(tx, deps, 'user.updated', { user_id: `u${i}` }));
    // The hanging request lasts longer than the test waits (WEBHOOK_TIMEOUT 60 s): a batch that waited for it would deliver only 50.
    const patient = loadConfig({ NODE_ENV: 'test', WEBHOOK_ALLOW_PRIVATE: 'true', OUTBOX_POLL_INTERVAL_MS: '60000', WEBHOOK_TIMEOUT: '60' });
    const worker = new OutboxWorker({ db, clock, transport: noMail, logger: silent, config: patient, kickDelayMs: 20, lanes: [webhookLane({ db, clock, logger: silent, secretBox, config: patient })] });
    try {
      worker.start();
      await until(() => receiver.received.length === 120, 'the fast endpoint got its 120 events while the other one hangs');
      assert.equal(stuck.received.length, 1, "the hanging receiver's first event is still the only one it got");
      assert.deepEqual(receiver.received.map((w) => w.verified?.data.user_id), Array.from({ length: 120 }, (_, i) => `u${i}`), 'in order');
    } finally {
      await stuck.close(); // ends the hanging request, so stop() does not wait for WEBHOOK_TIMEOUT
      await worker.stop();
    }
  });
});
