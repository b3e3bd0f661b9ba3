/**
 * Token introspection over RabbitMQ, the original service's broker-based token check: a request on
 * the queue `twofold.introspect` (EVENTS_AMQP_INTROSPECT_QUEUE) with `reply_to` and `correlation_id`,
 * body `{"token": "..."}` (and optionally `token_type_hint`), gets the same JSON answer as
 * `POST /api/v1/auth-jwt/introspect`, sent to `reply_to` with the request's correlation id. Callers
 * are whoever the broker lets publish to the queue (the broker's permissions are the client check).
 * Replies go only to queues named with one of EVENTS_AMQP_REPLY_QUEUES' prefixes (by default direct
 * reply-to and server-named queues): the service may write to any queue of its vhost, and a caller
 * must not use it to put messages into another application's queue.
 *
 * One bad request costs only itself: a reply can make the broker close the whole connection (a
 * direct reply-to name it cannot decode: 541 INTERNAL_ERROR), so a request is acknowledged before its
 * reply is sent (so it is never handed back), malformed direct reply-to names are refused, and
 * the reconnect delay grows until a subscription has stayed up for a while.
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import type { Deps } from '../deps.ts';
import { introspectToken, type IntrospectionResponse } from '../services/introspection.ts';
import { AmqpConnection, type AmqpLogger } from './connection.ts';
import { DIRECT_REPLY_TO, isDirectReplyToName } from './direct-reply-to.ts';

/** Requests handled at once per instance. */
const PREFETCH = 16;
/** Longest token accepted (the HTTP endpoint's bound). */
const MAX_TOKEN_LENGTH = 8192;
const RECONNECT_MIN_MS = 500;
/** Longest wait for the broker's answer to a channel or queue request while subscribing. */
const SETUP_TIMEOUT_MS = 10_000;
const RECONNECT_MAX_MS = 15_000;
/**
 * How long a subscription must stay up before the reconnect delay starts again from the minimum:
 * reset on every successful subscribe, a broker that closes the connection right after (a reply it
 * chokes on) was asked again every RECONNECT_MIN_MS forever.
 */
const STABLE_AFTER_MS = 5_000;
/** EVENTS_AMQP_REPLY_QUEUES' default: RabbitMQ's direct reply-to, and queues the broker named (a caller's exclusive queue). */
export const DEFAULT_REPLY_QUEUES: readonly string[] = ['amq.rabbitmq.reply-to', 'amq.gen-'];

/** The answer for one request body; anything malformed is simply not an active token. */
export async function answerIntrospection(deps: Deps, content: Buffer): Promise<IntrospectionResponse> {
  let body: unknown;
  try {
    body = JSON.parse(content.toString('utf8'));
  } catch {
    return { active: false };
  }
  const { token, token_type_hint: hint } = (body ?? {}) as { token?: unknown; token_type_hint?: unknown };
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) return { active: false };
  return introspectToken(deps, token, typeof hint === 'string' ? hint : undefined);
}

/** Consumes the introspection queue and keeps consuming across broker restarts until stopped. */
export class IntrospectionResponder {
  readonly #deps: Deps;
  readonly #queue: string;
  readonly #logger: AmqpLogger;
  readonly #conn: AmqpConnection;
  readonly #replyQueues: readonly string[];
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  #delay = RECONNECT_MIN_MS;
  #stable: NodeJS.Timeout | undefined;
  #channel: Channel | undefined;

  /** How long a subscription must stay up before the reconnect delay starts again from the minimum. */
  readonly #stableAfterMs: number;

  /** `stableAfterMs`: {@link STABLE_AFTER_MS} unless a test sets it. */
  constructor(deps: Deps, url: string, queue: string, logger: AmqpLogger, replyQueues: readonly string[] = DEFAULT_REPLY_QUEUES, stableAfterMs = STABLE_AFTER_MS) {
    this.#deps = deps;
    this.#stableAfterMs = stableAfterMs;
    this.#replyQueues = replyQueues;
    this.#queue = queue;
    this.#logger = logger;
    this.#conn = new AmqpConnection(url, logger, 'introspection');
    this.#conn.onLost = () => this.#retry();
  }

  /** Starts consuming; resolves after the first attempt (a broker that is down is retried in the background). */
  async start(): Promise<void> {
    await this.#subscribe();
  }

  async #subscribe(): Promise<void> {
    if (this.#stopped) return;
    try {
      const model = await this.#conn.get();
      const ch = await AmqpConnection.within(model.createChannel(), SETUP_TIMEOUT_MS, 'opening the introspection channel');
      ch.on('error', () => {});
      ch.on('close', () => {
        if (this.#channel === ch) this.#channel = undefined;
        this.#unstable();
        this.#retry();
      });
      await AmqpConnection.within(ch.assertQueue(this.#queue, { durable: true }), SETUP_TIMEOUT_MS, 'declaring the introspection queue');
      await AmqpConnection.within(ch.prefetch(PREFETCH), SETUP_TIMEOUT_MS, 'setting the prefetch');
      await ch.consume(this.#queue, (msg) => {
        if (msg) void this.#handle(ch, msg);
        else this.#cancelled(ch);
      });
      this.#channel = ch;
      this.#unstable();
      this.#stable = setTimeout(() => {
        this.#stable = undefined;
        if (this.#channel === ch) this.#delay = RECONNECT_MIN_MS;
      }, this.#stableAfterMs);
      this.#stable.unref();
      this.#logger.info({ queue: this.#queue }, 'AMQP introspection: consuming');
    } catch (err) {
      this.#logger.warn({ err: { message: (err as Error).message } }, 'AMQP introspection: broker unavailable; retrying');
      this.#conn.reset();
      this.#retry();
    }
  }

  /**
   * The broker cancelled the consumer (its queue was deleted, or it failed over to another node): the
   * channel stays open but receives nothing any more, so it is dropped and the queue subscribed again
   * (declared again too) through the usual retry.
   */
  #cancelled(ch: Channel): void {
    this.#logger.warn({ queue: this.#queue }, 'AMQP introspection: consumer cancelled by the broker; subscribing again');
    if (this.#channel === ch) this.#channel = undefined;
    this.#unstable();
    this.#retry();
    void ch.close().catch(() => {});
  }

  /** The subscription ended before it counted as stable: the reconnect delay keeps growing. */
  #unstable(): void {
    clearTimeout(this.#stable);
    this.#stable = undefined;
  }

  #retry(): void {
    if (this.#stopped || this.#timer || this.#channel) return;
    const delay = this.#delay;
    this.#delay = Math.min(this.#delay * 2, RECONNECT_MAX_MS);
    this.#logger.info({ queue: this.#queue, retryInMs: delay }, 'AMQP introspection: subscribing again');
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#subscribe();
    }, delay);
    this.#timer.unref();
  }

  async #handle(ch: Channel, msg: ConsumeMessage): Promise<void> {
    const { correlationId } = msg.properties as { correlationId?: string };
    let acked = false;
    const ack = () => {
      if (acked) return;
      acked = true;
      try {
        ch.ack(msg);
      } catch {
        // The channel closed meanwhile: the broker redelivers the request, flagged, and it is dropped then.
      }
    };
    try {
      const replyTo = this.#replyTo(msg);
      if (replyTo === undefined) return;
      const answer = await answerIntrospection(this.#deps, msg.content);
      // Acknowledged before the reply, not after: frames on a channel reach the broker in order, so
      // the ack is in before a reply that makes it close the connection, and the request is not handed
      // back to be answered (and to close the connection) again. Not on arrival either, so that
      // PREFETCH still bounds the requests being answered at once.
      ack();
      ch.sendToQueue(replyTo, Buffer.from(JSON.stringify(answer)), {
        contentType: 'application/json',
        ...(correlationId !== undefined ? { correlationId } : {}),
      });
    } catch (err) {
      this.#logger.error({ err }, 'AMQP introspection: request failed');
    } finally {
      ack();
    }
  }

  /** Where the reply to `msg` goes, or undefined (logged) when the request is dropped unanswered. */
  #replyTo(msg: ConsumeMessage): string | undefined {
    const { replyTo } = msg.properties as { replyTo?: string };
    if (!replyTo) {
      this.#logger.warn('AMQP introspection: request without reply_to dropped');
      return undefined;
    }
    if (!this.#replyQueues.some((prefix) => replyTo.startsWith(prefix))) {
      this.#logger.warn({ replyTo: replyTo.slice(0, 255) }, 'AMQP introspection: reply_to is not a reply queue (EVENTS_AMQP_REPLY_QUEUES); request dropped');
      return undefined;
    }
    // The broker decodes a direct reply-to name itself, and one it cannot decode closes the connection.
    if (replyTo.startsWith(DIRECT_REPLY_TO) && !isDirectReplyToName(replyTo)) {
      this.#logger.warn({ replyTo: replyTo.slice(0, 255) }, 'AMQP introspection: reply_to is not a well-formed direct reply-to name; request dropped');
      return undefined;
    }
    return replyTo;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#unstable();
    await this.#conn.close();
  }
}
