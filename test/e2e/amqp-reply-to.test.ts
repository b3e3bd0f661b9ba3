/**
 * Introspection replies go only to reply queues: a request naming another application's queue as
 * `reply_to` must not make the service write into it. Against the machine's RabbitMQ (AMQP_URL), with
 * queues of its own; without AMQP_URL this file registers no test.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import amqp from 'amqplib';
import pino from 'pino';
import { IntrospectionResponder } from '../../src/amqp/introspection.ts';
import { loadConfig } from '../../src/config.ts';

const AMQP_URL = process.env.AMQP_URL;

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 300 && !cond(); i++) await new Promise((r) => setTimeout(r, 50));
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

test('EVENTS_AMQP_REPLY_QUEUES: direct reply-to and server-named queues by default; a list of prefixes; nothing else', () => {
  assert.deepEqual(loadConfig({ NODE_ENV: 'test' }).eventsAmqp.replyQueues, ['amq.rabbitmq.reply-to', 'amq.gen-']);
  assert.deepEqual(loadConfig({ NODE_ENV: 'test', EVENTS_AMQP_REPLY_QUEUES: 'amq.gen-, billing.replies.' }).eventsAmqp.replyQueues, ['amq.gen-', 'billing.replies.']);
  for (const bad of [' , ', 'a b', 'queue*']) {
    assert.throws(() => loadConfig({ NODE_ENV: 'test', EVENTS_AMQP_REPLY_QUEUES: bad }), /EVENTS_AMQP_REPLY_QUEUES/);
  }
});

if (AMQP_URL) {
  test('introspection never replies into a queue that is not a reply queue; an allowed prefix and direct reply-to are answered', async (t) => {
    const suffix = randomBytes(5).toString('hex');
    const queue = `twofold.introspect.test.${suffix}`;
    const victim = `orders.test.${suffix}`;
    const named = `billing.replies.test.${suffix}`;
    const client = await amqp.connect(AMQP_URL);
    const responders: IntrospectionResponder[] = [];
    t.after(async () => {
      await Promise.all(responders.map((r) => r.stop()));
      const ch = await client.createChannel();
      for (const q of [queue, victim, named]) await ch.deleteQueue(q).catch(() => {});
      await client.close();
    });
    const ch = await client.createChannel();
    // Another application's queue, which the service's broker user can write to like any other.
    await ch.assertQueue(victim, { durable: false });
    await ch.assertQueue(named, { durable: false });
    const answers = new Map<string, unknown>();
    const collect = (m: amqp.ConsumeMessage | null) => {
      if (m) answers.set(m.properties.correlationId as string, JSON.parse(m.content.toString()));
    };
    const own = await ch.assertQueue('', { exclusive: true });
    await ch.consume(own.queue, collect, { noAck: true });
    await ch.consume('amq.rabbitmq.reply-to', collect, { noAck: true });
    const send = (replyTo: string) => {
      const correlationId = randomBytes(8).toString('hex');
      // The deps are never reached: a body that is not JSON is answered { active: false } before any lookup.
      ch.sendToQueue(queue, Buffer.from('not json'), { replyTo, correlationId });
      return correlationId;
    };

    const defaults = new IntrospectionResponder({} as never, AMQP_URL, queue, pino({ level: 'silent' }));
    responders.push(defaults);
    await defaults.start();
    const refused = send(victim);
    // Requests are answered in order of arrival on one consumer: once these are answered, the first was handled.
    const [serverNamed, direct] = [send(own.queue), send('amq.rabbitmq.reply-to')];
    await until(() => answers.has(serverNamed) && answers.has(direct), 'replies to the server-named queue and to direct reply-to');
    assert.deepEqual(answers.get(serverNamed), { active: false });
    assert.deepEqual(answers.get(direct), { active: false });
    assert.equal((await ch.checkQueue(victim)).messageCount, 0, 'nothing written into the other queue');
    assert.equal(answers.has(refused), false);
    await defaults.stop();

    // An operator who names a reply queue of theirs lets replies go there; the victim stays out.
    const configured = new IntrospectionResponder({} as never, AMQP_URL, queue, pino({ level: 'silent' }), ['amq.gen-', 'billing.replies.']);
    responders.push(configured);
    await configured.start();
    send(named);
    send(victim);
    const last = send(own.queue);
    await until(() => answers.has(last), 'the reply after them');
    assert.equal((await ch.checkQueue(named)).messageCount, 1);
    assert.equal((await ch.checkQueue(victim)).messageCount, 0);
  });
}
