/**
 * Publishes events to the topic exchange (EVENTS_AMQP_EXCHANGE, default `twofold.events`) with the
 * event type as routing key: persistent messages on a confirm channel, and publish() resolves only
 * once the broker has confirmed the message, so the outbox marks an event delivered only then.
 */
import type { ConfirmChannel } from 'amqplib';
import type { EventPublisher } from '../jobs/event-delivery.ts';
import { AmqpConnection, type AmqpLogger } from './connection.ts';

/** Longest wait for a confirm before the attempt counts as failed (and is retried). */
const CONFIRM_TIMEOUT_MS = 10_000;

export class AmqpEventPublisher implements EventPublisher {
  readonly #conn: AmqpConnection;
  readonly #exchange: string;
  #channel: Promise<ConfirmChannel> | undefined;

  constructor(url: string, exchange: string, logger: AmqpLogger) {
    this.#conn = new AmqpConnection(url, logger, 'publisher');
    this.#conn.onLost = () => {
      this.#channel = undefined;
    };
    this.#exchange = exchange;
  }

  #getChannel(): Promise<ConfirmChannel> {
    if (this.#channel) return this.#channel;
    const current: Promise<ConfirmChannel> = AmqpConnection.within((async () => {
      const model = await this.#conn.get();
      const ch = await model.createConfirmChannel();
      ch.on('error', () => {});
      ch.on('close', () => {
        // Only this channel's own close: a replaced connection closing late closes its old channels too.
        if (this.#channel === current) this.#channel = undefined;
      });
      await ch.assertExchange(this.#exchange, 'topic', { durable: true });
      return ch;
    })(), CONFIRM_TIMEOUT_MS, 'opening the publishing channel').catch((err: unknown) => {
      // The connection too: a channel it never answered for is not waited on again.
      if (this.#channel === current) this.#channel = undefined;
      this.#conn.reset();
      throw err;
    });
    this.#channel = current;
    return current;
  }

  async publish(event: { id: string; type: string; occurredAt: Date; body: string }): Promise<void> {
    const ch = await this.#getChannel();
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no confirm from the broker within ${CONFIRM_TIMEOUT_MS} ms`)), CONFIRM_TIMEOUT_MS);
        ch.publish(
          this.#exchange,
          event.type,
          Buffer.from(event.body),
          {
            persistent: true,
            contentType: 'application/json',
            messageId: event.id,
            type: event.type,
            timestamp: Math.floor(event.occurredAt.getTime() / 1000),
            appId: 'twofold',
          },
          (err: unknown) => {
            clearTimeout(timer);
            if (err) reject(err instanceof Error ? err : new Error(`broker refused the message (nack)`));
            else resolve();
          },
        );
      });
    } catch (err) {
      // A channel whose confirm never came or was refused is not trusted again.
      this.#channel = undefined;
      this.#conn.reset();
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.#conn.close();
  }
}
