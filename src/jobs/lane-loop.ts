/**
 * When one lane of the outbox worker runs: at start, every poll interval, and soon after a kick. Each
 * lane (the mail, the webhook deliveries, the broker) has a loop of its own, so a lane busy with a
 * backlog (a receiver back after an outage, an admin's retry-all, a steady stream of events to many
 * endpoints) never holds back another: a verification mail queued meanwhile goes out at its own
 * lane's next run, not after the backlog.
 */

export interface LaneLoopOptions {
  /** One run: claims and delivers what is due, batch after batch (never throws; see onError). */
  readonly run: () => Promise<void>;
  readonly pollIntervalMs: number;
  /** Least time between the start of a run and a kicked run after it. */
  readonly kickDelayMs: number;
  /** A run that threw (a database blip): reported, and the next poll tries again. */
  readonly onError: (err: unknown) => void;
}

export class LaneLoop {
  readonly #options: LaneLoopOptions;
  #started = false;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  /** When the timer fires, and when the last run began (ms since the epoch). */
  #timerDue = 0;
  #lastRunAt = 0;
  /** The run in progress, awaited by stop(). */
  #tick: Promise<void> | undefined;
  /** A kick that arrived during a run: run again after it (no sooner than kickDelayMs after it began). */
  #kicked = false;

  constructor(options: LaneLoopOptions) {
    this.#options = options;
  }

  /** The first run is immediate (work left by a crash), then one every poll interval. */
  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    this.#schedule(0);
  }

  /**
   * Runs now instead of at the next poll, but never sooner than kickDelayMs after the previous run
   * began; kicks during a run ask for one more run after it.
   */
  kick(): void {
    if (!this.#started || this.#stopped) return;
    if (this.#tick) {
      this.#kicked = true;
      return;
    }
    const delay = this.#kickWait();
    // A run already planned at least as soon serves this kick too.
    if (this.#timer && this.#timerDue <= Date.now() + delay) return;
    this.#schedule(delay);
  }

  /** No more runs; resolves when the run in progress has ended. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#tick;
  }

  #kickWait(): number {
    return Math.max(0, this.#lastRunAt + this.#options.kickDelayMs - Date.now());
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#onTimer(), delayMs);
    this.#timerDue = Date.now() + delayMs;
    // The poll timer alone must never keep the process alive (tests, graceful shutdown).
    this.#timer.unref();
  }

  #onTimer(): void {
    this.#timer = undefined;
    this.#lastRunAt = Date.now();
    this.#tick = (async () => {
      try {
        await this.#options.run();
      } catch (err) {
        // Nothing may escape the timer: an unhandled rejection would end the process.
        this.#options.onError(err);
      }
    })();
    void this.#tick.finally(() => {
      this.#tick = undefined;
      const again = this.#kicked;
      this.#kicked = false;
      this.#schedule(again ? this.#kickWait() : this.#options.pollIntervalMs);
    });
  }
}
