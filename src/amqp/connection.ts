/**
 * One lazily opened RabbitMQ connection that is dropped when it breaks and opened again on the next
 * use (a broker restart costs the uses in between a failure each, nothing else: the outbox keeps
 * the events until the broker confirms them).
 */
import amqp, { type ChannelModel } from 'amqplib';
import type { Logger } from 'pino';

/** The logger methods used. */
export type AmqpLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

/** Connection timeout (TCP + AMQP handshake), milliseconds. */
const CONNECT_TIMEOUT_MS = 5000;

export class AmqpConnection {
  readonly #url: string;
  readonly #logger: AmqpLogger;
  readonly #name: string;
  #model: Promise<ChannelModel> | undefined;
  #closed = false;
  /** Called with every fresh connection after it broke (the responder re-subscribes). */
  onLost: (() => void) | undefined;

  constructor(url: string, logger: AmqpLogger, name: string) {
    this.#url = url;
    this.#logger = logger;
    this.#name = name;
  }

  /** The open connection, connecting first if there is none. Rejects when the broker cannot be reached. */
  get(): Promise<ChannelModel> {
    if (this.#closed) return Promise.reject(new Error('AMQP connection closed'));
    this.#model ??= this.#open();
    return this.#model;
  }

  async #open(): Promise<ChannelModel> {
    let model: ChannelModel;
    try {
      model = await amqp.connect(this.#url, { timeout: CONNECT_TIMEOUT_MS, clientProperties: { connection_name: `twofold ${this.#name}` } });
    } catch (err) {
      this.#model = undefined;
      throw err;
    }
    const current = this.#model;
    model.on('error', (err: Error) => this.#logger.warn({ err: { message: err.message } }, `AMQP ${this.#name} connection error`));
    model.on('close', () => {
      // A connection already replaced (reset) closing late is not news: told as lost, it made the
      // publisher drop the channel of the connection that replaced it.
      if (this.#model !== current) return;
      this.#model = undefined;
      if (!this.#closed) {
        this.#logger.warn(`AMQP ${this.#name} connection closed; reconnecting on next use`);
        this.onLost?.();
      }
    });
    this.#logger.info(`AMQP ${this.#name} connected`);
    return model;
  }

  /**
   * `work`, or a rejection after `ms`: a broker that accepted the connection can still leave a channel
   * request unanswered (a resource alarm blocks the connection), and an unanswered one held the lane.
   */
  static within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer from the broker within ${ms} ms`)), ms);
    });
    return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
  }

  /** Forgets the connection (after a channel-level failure) and closes it quietly. */
  reset(): void {
    const m = this.#model;
    this.#model = undefined;
    void m?.then((c) => c.close()).catch(() => {});
  }

  async close(): Promise<void> {
    this.#closed = true;
    const m = this.#model;
    this.#model = undefined;
    await m?.then((c) => c.close()).catch(() => {});
  }
}
