/**
 * The events on the machine's RabbitMQ (AMQP_URL; `.ci/run` sets it and starts the broker): persistent,
 * confirmed publication to a topic exchange with the event type as routing key, rows marked delivered
 * only after the confirm, no event lost across a broker restart, and the introspection queue answering
 * like POST /api/v1/auth-jwt/introspect. Every test uses its own exchange and queue names.
 *
 * Without AMQP_URL this file registers no test at all (nothing pretends to pass).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import pino from 'pino';
import { AmqpEventPublisher } from '../../src/amqp/publisher.ts';
import { IntrospectionResponder } from '../../src/amqp/introspection.ts';
import type { Database } from '../../src/db/database.ts';
import { amqpLane } from '../../src/jobs/event-delivery.ts';
import { OutboxWorker } from '../../src/jobs/outbox-worker.ts';
import type { MailTransport } from '../../src/mail/types.ts';
import { enqueueEvent } from '../../src/services/events/publish.ts';
import { buildTestApp, createTestClock } from '../helpers/app.ts';
import { freePort } from '../helpers/net.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/pg-database.ts';

const AMQP_URL = process.env.AMQP_URL;
const silent = pino({ level: 'silent' });
const noMail: MailTransport = { name: 'none', async send() {}, async close() {} };

/** Every exchange and queue the tests declare, deleted at the end over a fresh connection. */
const declared: Array<{ kind: 'queue' | 'exchange'; name: string }> = [];

function unique(prefix: string, kind: 'queue' | 'exchange' = prefix.endsWith('events') ? 'exchange' : 'queue'): string {
  const name = `${prefix}.test.${randomBytes(5).toString('hex')}`;
  declared.push({ kind, name });
  return name;
}

async function deleteDeclared(): Promise<void> {
  const c = await amqp.connect(AMQP_URL!);
  try {
    for (const d of declared) {
      const ch = await c.createChannel();
      ch.on('error', () => {});
      await (d.kind === 'queue' ? ch.deleteQueue(d.name) : ch.deleteExchange(d.name)).catch(() => {});
      await ch.close().catch(() => {});
    }
  } finally {
    await c.close();
  }
}

/** A test-side consumer: a queue bound to the exchange, collecting every message. */
async function consumer(conn: ChannelModel, exchange: string, pattern = '#') {
  const ch = await conn.createChannel();
  await ch.assertExchange(exchange, 'topic', { durable: true });
  const queue = unique('twofold.consumer');
  // Durable and not exclusive: it must keep the messages across a broker restart, like a real consumer's queue.
  await ch.assertQueue(queue, { durable: true });
  await ch.bindQueue(queue, exchange, pattern);
  const got: ConsumeMessage[] = [];
  await ch.consume(queue, (m) => {
    if (m) {
      got.push(m);
      ch.ack(m);
    }
  });
  return { got, queue, ch };
}

async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function pending(db: Database): Promise<number> {
  const r = await db.query<{ n: string }>(`SELECT count(*) AS n FROM event_deliveries WHERE target = 'amqp' AND delivered_at IS NULL`);
  return Number(r.rows[0]!.n);
}

if (AMQP_URL) {
  void describe('events on RabbitMQ', () => {
    const cleanups: Array<() => Promise<unknown>> = [];
    let conn: ChannelModel;
    let tdb: TestDatabase;

    after(async () => {
      for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => {});
      await deleteDeclared();
    });

    async function setup(exchange: string, publisherUrl = AMQP_URL!, fresh = true) {
      tdb ??= await createTestDatabase('pglite').then((d) => {
        cleanups.unshift(() => d.cleanup());
        return d;
      });
      if (!conn) {
        const opened = await amqp.connect(AMQP_URL!);
        opened.on('error', () => {});
        conn = opened;
        cleanups.push(() => opened.close());
      }
      const db = tdb.db;
      if (fresh) await db.query('DELETE FROM events');
      const clock = createTestClock(new Date());
      const config = { eventsAmqp: { url: AMQP_URL, exchange, introspectQueue: 'unused' }, webhooks: { maxBackoffSeconds: 30 } } as never;
      const publisher = new AmqpEventPublisher(publisherUrl, exchange, silent);
      cleanups.push(() => publisher.close());
      const worker = new OutboxWorker({
        db, clock, transport: noMail, logger: silent, config: { outbox: { pollIntervalMs: 1000, maxAgeSeconds: 86400, maxBackoffSeconds: 300 } },
        lanes: [amqpLane({ db, clock, logger: silent, publisher, config, random: () => 0.5 })],
      });
      const emit = (type: string, data: Record<string, unknown> = {}) => db.transaction((tx) => enqueueEvent(tx, { config, clock }, type, data));
      return { db, clock, worker, emit, publisher };
    }

    test('events are published persistent and confirmed to the topic exchange, routing key = type, in order; marked delivered after the confirm', async () => {
      const exchange = unique('twofold.events');
      const { db, worker, emit } = await setup(exchange);
      const all = await consumer(conn, exchange);
      const sessions = await consumer(conn, exchange, 'session.*');
      const ids = [await emit('user.created', { user_id: 'u1' }), await emit('session.revoked', { user_id: 'u1', sid: 's1' }), await emit('user.deleted', { user_id: 'u1' })];
      assert.equal(await pending(db), 3);
      assert.equal(await worker.drain(), 3);
      assert.equal(await pending(db), 0);
      await until(() => all.got.length === 3 && sessions.got.length === 1, 'three messages');
      assert.deepEqual(all.got.map((m) => m.properties.messageId), ids);
      assert.deepEqual(all.got.map((m) => m.fields.routingKey), ['user.created', 'session.revoked', 'user.deleted']);
      for (const m of all.got) {
        assert.equal(m.properties.deliveryMode, 2, 'persistent');
        assert.equal(m.properties.contentType, 'application/json');
      }
      const body = JSON.parse(sessions.got[0]!.content.toString()) as { type: string; data: unknown; timestamp: string };
      assert.equal(body.type, 'session.revoked');
      assert.deepEqual(body.data, { user_id: 'u1', sid: 's1' });
      assert.equal(sessions.got[0]!.properties.messageId, ids[1]);
      assert.equal(await worker.drain(), 0, 'nothing published twice');
    });

    test('a broker that cannot be reached: nothing is marked delivered, and the event goes out once it can', async () => {
      const exchange = unique('twofold.events');
      const dead = AMQP_URL!.replace(/:(\d+)(\/|$)/, `:${await freePort()}$2`);
      const down = await setup(exchange, dead);
      const c = await consumer(conn, exchange);
      const id = await down.emit('password.changed', { user_id: 'u2' });
      assert.equal(await down.worker.drain(), 0);
      assert.equal(await pending(down.db), 1);
      const [row] = (await down.db.query<{ last_error: string; attempts: number }>(`SELECT last_error, attempts FROM event_deliveries WHERE event_id = $1`, [id])).rows;
      assert.match(row!.last_error, /ECONNREFUSED/);
      assert.equal(row!.attempts, 1);
      const up = await setup(exchange, AMQP_URL, false);
      up.clock.advance(60);
      assert.equal(await up.worker.drain(), 1);
      await until(() => c.got.length === 1, 'the message');
      assert.equal(c.got[0]!.properties.messageId, id);
    });

    test('a broker restart mid-stream loses no event (rabbitmqctl stop_app / start_app); the introspection consumer comes back by itself', async () => {
      const exchange = unique('twofold.events');
      const { db, clock, worker, emit } = await setup(exchange);
      const c = await consumer(conn, exchange);
      const introspectQueue = unique('twofold.introspect');
      // A malformed request is answered without touching the deps: enough to see the consumer work.
      const responder = new IntrospectionResponder({} as never, AMQP_URL!, introspectQueue, silent);
      await responder.start();
      cleanups.push(() => responder.stop());
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push(await emit('login.succeeded', { n: i }));
      assert.equal(await worker.drain(), 5);
      execFileSync('rabbitmqctl', ['stop_app'], { stdio: 'ignore' });
      try {
        for (let i = 5; i < 10; i++) ids.push(await emit('login.succeeded', { n: i }));
        assert.equal(await worker.drain(), 0, 'nothing confirmed while the broker is down');
        assert.equal(await pending(db), 5);
      } finally {
        execFileSync('rabbitmqctl', ['start_app'], { stdio: 'ignore' });
      }
      // Past the backoff: the publisher reconnects by itself on the next attempt.
      for (let i = 0; i < 20 && (await pending(db)) > 0; i++) {
        clock.advance(60);
        await worker.drain();
        if ((await pending(db)) > 0) await new Promise((r) => setTimeout(r, 250));
      }
      assert.equal(await pending(db), 0);
      // The test's own consumer lost its connection with the broker; read the durable queue afresh.
      const again = await amqp.connect(AMQP_URL!);
      cleanups.push(() => again.close());
      const ch: Channel = await again.createChannel();
      const seen = c.got.map((m) => m.properties.messageId as string);
      for (;;) {
        const m = await ch.get(c.queue, { noAck: true });
        if (!m) break;
        seen.push(m.properties.messageId as string);
      }
      assert.deepEqual([...new Set(seen)], ids, 'every event, in order');
      const replies = await ch.assertQueue('', { exclusive: true });
      let reply: unknown;
      await ch.consume(replies.queue, (m) => {
        if (m?.properties.correlationId === 'after-restart') reply = JSON.parse(m.content.toString());
      }, { noAck: true });
      ch.sendToQueue(introspectQueue, Buffer.from('not json'), { replyTo: replies.queue, correlationId: 'after-restart' });
      await until(() => reply !== undefined, 'an introspection reply after the restart');
      assert.deepEqual(reply, { active: false });
      conn = undefined as never;
    });

    test('a real sign-up reaches the exchange through the audit follower (EVENTS_AMQP_URL on)', async () => {
      const exchange = unique('twofold.events');
      const db = await createTestDatabase('pglite');
      cleanups.push(() => db.cleanup());
      // EVENTS_AMQP_URL in the app's configuration is what queues its events for the broker.
      const { app } = await buildTestApp(undefined, db.db, { env: { EVENTS_AMQP_URL: AMQP_URL! }, clock: createTestClock(new Date()) });
      cleanups.push(() => app.close());
      const probe = await amqp.connect(AMQP_URL!);
      cleanups.push(() => probe.close());
      const c = await consumer(probe, exchange, 'user.*');
      const publisher = new AmqpEventPublisher(AMQP_URL!, exchange, silent);
      cleanups.push(() => publisher.close());
      const clock = () => new Date();
      const worker = new OutboxWorker({
        db: db.db, clock, transport: noMail, logger: silent, config: { outbox: { pollIntervalMs: 1000, maxAgeSeconds: 86400, maxBackoffSeconds: 300 } },
        lanes: [amqpLane({ db: db.db, clock, logger: silent, publisher, config: { webhooks: { maxBackoffSeconds: 30 } } as never })],
      });
      const password = 'a long and unusual passphrase 7';
      const res = await app.inject({ method: 'POST', url: '/api/v1/user', payload: { username: 'brokered', email: 'brokered@example.com', password1: password, password2: password } });
      assert.equal(res.statusCode, 201);
      assert.equal(await pending(db.db), 1, 'the event was queued for the broker in the sign-up transaction');
      await worker.drain();
      assert.equal(await pending(db.db), 0);
      await until(() => c.got.length === 1, 'the user.created message');
      const body = JSON.parse(c.got[0]!.content.toString()) as { type: string; data: { user_id: string } };
      assert.equal(body.type, 'user.created');
      assert.equal(body.data.user_id, res.json().uuid);
      assert.ok(!c.got[0]!.content.toString().includes(password));
    });

    test('introspection over the queue answers exactly like POST /api/v1/auth-jwt/introspect, with the correlation id', async () => {
      const db = await createTestDatabase('pglite');
      cleanups.push(() => db.cleanup());
      const secret = 'introspection-secret-' + randomBytes(12).toString('hex');
      const { app, deps } = await buildTestApp(undefined, db.db, { env: { INTROSPECTION_SECRET: secret } });
      cleanups.push(() => app.close());
      const queue = unique('twofold.introspect');
      const responder = new IntrospectionResponder(deps, AMQP_URL!, queue, silent);
      await responder.start();
      cleanups.push(() => responder.stop());
      const client = await amqp.connect(AMQP_URL!);
      cleanups.push(() => client.close());
      const ch = await client.createChannel();
      const replies = await ch.assertQueue('', { exclusive: true });
      const answers = new Map<string, unknown>();
      await ch.consume(replies.queue, (m) => {
        if (m) answers.set(m.properties.correlationId as string, JSON.parse(m.content.toString()));
      }, { noAck: true });
      async function ask(body: Buffer | string): Promise<unknown> {
        const correlationId = randomBytes(8).toString('hex');
        ch.sendToQueue(queue, Buffer.isBuffer(body) ? body : Buffer.from(body), { replyTo: replies.queue, correlationId, contentType: 'application/json' });
        await until(() => answers.has(correlationId), 'the reply');
        return answers.get(correlationId);
      }
      async function http(token: string) {
        const res = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/introspect', headers: { authorization: `Bearer ${secret}` }, payload: { token } });
        assert.equal(res.statusCode, 200, res.body);
        return res.json();
      }
      const password = 'a long and unusual passphrase 7';
      assert.equal((await app.inject({ method: 'POST', url: '/api/v1/user', payload: { username: 'amqpuser', email: 'amqp@example.com', password1: password, password2: password } })).statusCode, 201);
      const login = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: { username: 'amqpuser', password } });
      const { access_token: access, refresh_token: refresh } = login.json();
      const live = await ask(JSON.stringify({ token: access }));
      assert.equal((live as { active: boolean }).active, true);
      assert.deepEqual(live, await http(access));
      assert.deepEqual(await ask(JSON.stringify({ token: refresh, token_type_hint: 'refresh_token' })), await http(refresh));
      // Logged out: the same token is now inactive on both paths.
      assert.equal((await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: { authorization: `Bearer ${access}` } })).statusCode, 204);
      assert.deepEqual(await ask(JSON.stringify({ token: access })), { active: false });
      assert.deepEqual(await http(access), { active: false });
      assert.deepEqual(await ask('not json'), { active: false });
      assert.deepEqual(await ask(JSON.stringify({ token: 'x'.repeat(10_000) })), { active: false });
    });
  });
}
