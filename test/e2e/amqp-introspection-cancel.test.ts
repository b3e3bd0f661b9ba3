/**
 * The introspection consumer survives the broker cancelling it (its queue deleted, as an operator
 * or a failover does): the responder drops the channel, subscribes again through its retry, and
 * answers the next request. Against the machine's RabbitMQ (AMQP_URL), with a queue of its own;
 * without AMQP_URL this file registers no test.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import amqp from 'amqplib';
import pino from 'pino';
import { IntrospectionResponder } from '../../src/amqp/introspection.ts';

const AMQP_URL = process.env.AMQP_URL;

async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

if (AMQP_URL) {
  test('introspection: after the broker cancels the consumer (queue deleted and declared again), requests are answered again', async (t) => {
    const queue = `twofold.introspect.test.${randomBytes(5).toString('hex')}`;
    // The deps are never reached: a body that is not JSON is answered { active: false } before any lookup.
    const responder = new IntrospectionResponder({} as never, AMQP_URL, queue, pino({ level: 'silent' }));
    await responder.start();
    const client = await amqp.connect(AMQP_URL);
    t.after(async () => {
      await responder.stop();
      const ch = await client.createChannel();
      await ch.deleteQueue(queue).catch(() => {});
      await client.close();
    });
    const ch = await client.createChannel();
    const replies = await ch.assertQueue('', { exclusive: true });
    const answers = new Map<string, unknown>();
    await ch.consume(replies.queue, (m) => {
      if (m) answers.set(m.properties.correlationId as string, JSON.parse(m.content.toString()));
    }, { noAck: true });
    async function ask(what: string): Promise<unknown> {
      const correlationId = randomBytes(8).toString('hex');
      ch.sendToQueue(queue, Buffer.from('not json'), { replyTo: replies.queue, correlationId });
      await until(() => answers.has(correlationId), what);
      return answers.get(correlationId);
    }

    assert.deepEqual(await ask('the reply before the cancel'), { active: false });
    await ch.deleteQueue(queue);
    await ch.assertQueue(queue, { durable: true });
    await until(async () => (await ch.checkQueue(queue)).consumerCount === 1, 'the responder consuming the queue again');
    assert.deepEqual(await ask('the reply after the queue came back'), { active: false });
  });
}
