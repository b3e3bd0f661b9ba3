/**
 * One bad introspection request costs only itself. A reply_to that passes the reply-queue allow-list
 * but is a direct reply-to name the broker cannot decode makes RabbitMQ close the responder's whole
 * connection (541 INTERNAL_ERROR) when the reply is published; acknowledged only after that reply,
 * the request was handed straight back and closed the connection again, every ~0.5 s, and nothing
 * queued behind it was answered. Against the machine's RabbitMQ (AMQP_URL), each test with a queue of
 * its own; without AMQP_URL only the name-shape test runs.
 *
 * Waits are bounded by the test's timeout alone (t.signal), never by a measured duration.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import amqp, { type Channel } from 'amqplib';
import pino from 'pino';
import { isDirectReplyToName } from '../../src/amqp/direct-reply-to.ts';
import { IntrospectionResponder } from '../../src/amqp/introspection.ts';

const AMQP_URL = process.env.AMQP_URL;
/** The reviewer's request: allowed by the `amq.rabbitmq.reply-to` prefix, but not a name the broker can decode. */
const MALFORMED = 'amq.rabbitmq.reply-to.g1h2AA==.abc';
/** A name RabbitMQ 3.10.8 handed out (pid on node `reply@9248884`, 16-byte key). */
const SAMPLE = 'amq.rabbitmq.reply-to.g1h2AA1yZXBseUA5MjQ4ODg0AAAFvQAAAABrE4tB.LBSlyNfF6xSYpN+fc+La1Q==';
const LOG = {
  closed: 'AMQP introspection connection closed; reconnecting on next use', consuming: 'AMQP introspection: consuming',
};

/** Resolves when `cond()` holds, polling; rejects when the test is aborted (its timeout). */
async function until(t: TestContext, cond: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await cond())) {
    if (t.signal.aborted) throw new Error('aborted');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Replaces the pid's node in a direct reply-to name with `reply@<hash+1>`: well-formed, on no node of the broker. */
function onUnknownNode(name: string): string {
  const [pid, key] = name.slice('amq.rabbitmq.reply-to.'.length).split('.') as [string, string];
  const bytes = Buffer.from(pid, 'base64');
  assert.equal(bytes[2], 118, 'the node is an ATOM_UTF8_EXT');
  const node = bytes.subarray(5, 5 + bytes.readUInt16BE(3)).toString('latin1');
  const [, hash] = /^reply@(\d+)$/.exec(node)!;
  const other = Buffer.from(`reply@${Number(hash) + 1}`, 'latin1');
  const head = Buffer.from([131, 88, 118, 0, other.length]);
  return `amq.rabbitmq.reply-to.${Buffer.concat([head, other, bytes.subarray(5 + node.length)]).toString('base64')}.${key}`;
}

test('direct reply-to names: the shape the broker hands out passes; names it cannot decode do not', () => {
  assert.equal(isDirectReplyToName(SAMPLE), true);
  assert.equal(isDirectReplyToName(onUnknownNode(SAMPLE)), true, 'the shape cannot tell which nodes exist');
  assert.equal(isDirectReplyToName(`amq.rabbitmq.reply-to.${SAMPLE.split('.')[3]!.slice(0, -4)}.x${SAMPLE.split('.')[4]!.slice(1)}`), true, 'nor what the pid encodes: that is the broker\'s (ack first covers it)');
  const [pid, key] = SAMPLE.slice('amq.rabbitmq.reply-to.'.length).split('.') as [string, string];
  for (const bad of [
    MALFORMED, 'amq.rabbitmq.reply-to.a.b', 'amq.rabbitmq.reply-to.garbage', 'amq.rabbitmq.reply-to', 'amq.rabbitmq.reply-to.',
    `${SAMPLE}.x`, `amq.rabbitmq.reply-to.${pid}`, `amq.rabbitmq.reply-to..${pid}.${key}`, `amq.rabbitmq.reply-to.${pid}.`,
    `amq.rabbitmq.reply-to.${pid}.${key.replace(/=+$/, '')}`,
    `amq.rabbitmq.reply-to.${pid.replace('g', '-')}.${key}`, 'amq.gen-abc',
  ]) {
    assert.equal(isDirectReplyToName(bad), false, bad);
  }
});

if (AMQP_URL) {
  /** A responder on a queue of its own, its log lines collected; a client with direct reply-to and an exclusive reply queue. */
  async function setup(t: TestContext, before?: (ch: Channel, queue: string) => Promise<void>) {
    const queue = `twofold.introspect.test.${randomBytes(5).toString('hex')}`;
    const logs: Array<{ msg: string; retryInMs?: number }> = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
    // The deps are never reached: a body that is not JSON is answered { active: false } before any lookup.
    // The stability window longer than any test: the reconnect delays do not depend on how fast a round goes.
    const responder = new IntrospectionResponder({} as never, AMQP_URL!, queue, logger, undefined, 600_000);
    const client = await amqp.connect(AMQP_URL!);
    t.after(async () => {
      await responder.stop();
      const ch = await client.createChannel();
      await ch.deleteQueue(queue).catch(() => {});
      await client.close();
    });
    const ch = await client.createChannel();
    const answers = new Map<string, unknown>();
    const collect = (m: amqp.ConsumeMessage | null) => {
      if (m) answers.set(m.properties.correlationId as string, JSON.parse(m.content.toString()));
    };
    await ch.consume('amq.rabbitmq.reply-to', collect, { noAck: true });
    const own = (await ch.assertQueue('', { exclusive: true })).queue;
    await ch.consume(own, collect, { noAck: true });
    await before?.(ch, queue);
    await responder.start();
    const count = (msg: string) => logs.filter((l) => l.msg === msg).length;
    return {
      queue, ch, answers, logs, count,
      send(replyTo: string, correlationId = randomBytes(8).toString('hex')) {
        ch.sendToQueue(queue, Buffer.from('not json'), { replyTo, correlationId });
        return correlationId;
      },
      answered: (id: string) => until(t, () => answers.has(id)),
      logged: (msg: string, n = 1) => until(t, () => count(msg) >= n),
    };
  }

  /** The broker's name for this channel's direct reply-to consumer, read off a message sent to our own queue. */
  async function directReplyToName(t: TestContext, ch: Channel): Promise<string> {
    const q = (await ch.assertQueue('', { exclusive: true })).queue;
    let name: string | undefined;
    await ch.consume(q, (m) => {
      if (m) name = m.properties.replyTo as string;
    }, { noAck: true });
    ch.sendToQueue(q, Buffer.from('x'), { replyTo: 'amq.rabbitmq.reply-to' });
    await until(t, () => name !== undefined);
    return name!;
  }

  test('a malformed direct reply-to name is dropped without breaking the connection; the request after it is answered', { timeout: 60_000 }, async (t) => {
    const s = await setup(t);
    const poisoned = s.send(MALFORMED);
    const valid = s.send('amq.rabbitmq.reply-to');
    await s.answered(valid);
    assert.deepEqual(s.answers.get(valid), { active: false });
    assert.equal(s.answers.has(poisoned), false);
    assert.equal(s.count(LOG.closed), 0, 'the responder never lost its connection');
    assert.equal(s.count(LOG.consuming), 1, 'subscribed once');
    assert.ok(s.logs.some((l) => l.msg.includes('not a well-formed direct reply-to name')));
    assert.equal((await s.ch.checkQueue(s.queue)).messageCount, 0);
  });

  test('a well-formed reply_to that still breaks the connection costs it once: not redelivered, and the requests behind it are all answered', { timeout: 60_000 }, async (t) => {
    const others: string[] = [];
    const s = await setup(t, async (ch, queue) => {
      const real = await directReplyToName(t, ch);
      assert.equal(isDirectReplyToName(real), true, `the broker's own name passes: ${real}`);
      const poison = onUnknownNode(real);
      assert.equal(isDirectReplyToName(poison), true);
      // Queued before the responder starts: it is handed the poisoned request and the ten behind it at
      // once (prefetch), so they are in flight when the broker closes its connection (541) on the
      // poisoned reply. They come back unacknowledged, flagged redelivered, and must be answered.
      await ch.assertQueue(queue, { durable: true });
      ch.sendToQueue(queue, Buffer.from('not json'), { replyTo: poison, correlationId: 'poison' });
      for (let i = 0; i < 10; i++) {
        const id = randomBytes(8).toString('hex');
        others.push(id);
        ch.sendToQueue(queue, Buffer.from('not json'), { replyTo: 'amq.rabbitmq.reply-to', correlationId: id });
      }
    });
    for (const id of others) await s.answered(id);
    const valid = s.send('amq.rabbitmq.reply-to');
    await s.answered(valid);
    // Answered in order on one consumer: had the poisoned request come back, it came before `valid`.
    assert.equal(s.count(LOG.closed), 1, 'the poisoned reply closed the connection once, never again by a redelivery');
    assert.ok(!s.logs.some((l) => l.msg === 'AMQP introspection: request failed'), 'nothing failed');
    assert.equal((await s.ch.checkQueue(s.queue)).messageCount, 0);
  });

  test('a connection that keeps being closed right after subscribing backs off: the reconnect delay grows', { timeout: 60_000 }, async (t) => {
    const s = await setup(t);
    const poison = onUnknownNode(await directReplyToName(t, s.ch));
    for (let round = 1; round <= 3; round++) {
      s.send(poison);
      await s.logged(LOG.closed, round);
      await s.logged(LOG.consuming, round + 1);
    }
    const delays = s.logs.filter((l) => l.retryInMs !== undefined).map((l) => l.retryInMs!);
    assert.deepEqual(delays, [500, 1000, 2000], 'not back to the minimum after each successful subscribe');
  });

  test('a request handed back unacknowledged (another responder stopped, a connection lost) is answered', { timeout: 60_000 }, async (t) => {
    let redelivered = '';
    const s = await setup(t, async (ch, queue) => {
      // Handed out once and returned unacknowledged, as when a responder's connection drops: the broker
      // flags it redelivered. It is another caller's request, and it is answered.
      await ch.assertQueue(queue, { durable: true });
      redelivered = randomBytes(8).toString('hex');
      ch.sendToQueue(queue, Buffer.from('not json'), { replyTo: 'amq.rabbitmq.reply-to', correlationId: redelivered });
      let got: amqp.GetMessage | undefined;
      await until(t, async () => (got = (await ch.get(queue, { noAck: false })) || undefined) !== undefined);
      ch.nack(got!, false, true);
    });
    await s.answered(redelivered);
    assert.deepEqual(s.answers.get(redelivered), { active: false });
    assert.equal((await s.ch.checkQueue(s.queue)).messageCount, 0);
  });
}
