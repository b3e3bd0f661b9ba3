/**
 * The lazily opened broker connection: a connection that breaks is reported as lost (the publisher
 * drops its channel, the responder subscribes again), but one already replaced that closes late is
 * not: reported, it made the publisher drop the channel of the connection that replaced it. Against
 * the machine's RabbitMQ (AMQP_URL); without AMQP_URL this file registers no test.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { AmqpConnection } from '../../src/amqp/connection.ts';

const AMQP_URL = process.env.AMQP_URL;

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 300 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(cond(), `timed out waiting for ${what}`);
}

if (AMQP_URL) {
  test('AMQP connection: a reset connection closing is not "lost"; the current one breaking is', async (t) => {
    const conn = new AmqpConnection(AMQP_URL, pino({ level: 'silent' }), 'test');
    t.after(() => conn.close());
    let lost = 0;
    conn.onLost = () => {
      lost += 1;
    };
    const first = await conn.get();
    let firstClosed = false;
    first.on('close', () => {
      firstClosed = true;
    });
    conn.reset(); // replaced after a channel failure: closes in the background
    const second = await conn.get();
    assert.notEqual(second, first);
    await until(() => firstClosed, 'the replaced connection to close');
    assert.equal(lost, 0, 'the replaced connection closing is not news');
    assert.equal(await conn.get(), second, 'the current connection is kept');

    // The current one breaks (the broker goes away): lost, and the next use opens another.
    // Our end of the socket closed: the broker resets it, as when it goes away.
    (second as unknown as { connection: { stream: { end(): void } } }).connection.stream.end();
    await until(() => lost === 1, 'the loss to be reported');
    const third = await conn.get();
    assert.notEqual(third, second);
  });

  test('AmqpConnection.within: a broker request left unanswered fails after the timeout instead of holding on', async () => {
    const never = new Promise<never>(() => {});
    await assert.rejects(AmqpConnection.within(never, 50, 'opening a channel'), /opening a channel: no answer from the broker within 50 ms/);
    assert.equal(await AmqpConnection.within(Promise.resolve(7), 50, 'x'), 7);
  });
}
