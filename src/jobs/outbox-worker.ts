/**
 * The outbox worker: claims due mails with a lease, delivers them through the transport, and records
 * each outcome, retrying failures with capped exponential backoff until a mail is too old.
 *
 * Delivery is at-least-once by construction (a crash after the SMTP server accepted a mail but before
 * it was recorded as sent means it is sent again once the lease expires), and exactly-once in every
 * other case: a leased row is invisible to other workers, a sent row is never claimed again, and the
 * stable Message-ID lets a receiver drop the rare duplicate. A database that fails the recording is
 * not such a case: the recording is tried again while the lease is held, and the lease extended (see
 * mail-recording.ts). Only an outage outlasting the lease (or a shutdown's grace) can still let another
 * instance send the mail again; this instance, claiming it again, records it instead of sending it.
 */
import { randomInt } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../clock.ts';
import type { Config } from '../config.ts';
import type { Queryable } from '../db/database.ts';
import * as outbox from '../db/repositories/outbox.ts';
import type { OutboxRow } from '../db/repositories/outbox.ts';
import type { MailKind, MailMessage, MailTransport } from '../mail/types.ts';
import { LaneLoop } from './lane-loop.ts';
import { SentRecorder } from './mail-recording.ts';
import { realSleep, STOP_RECORD_GRACE_MS, type Sleep } from './record-retry.ts';

/**
 * Another kind of outbox row the worker delivers besides mail (the events' deliveries: see
 * src/jobs/event-delivery.ts). A lane claims its own rows with its own lease; the worker runs each
 * lane's batches one at a time, each lane on a timer of its own (lane-loop.ts), kicked and stopped with the mail.
 */
export interface OutboxLane {
  readonly name: string;
  /**
   * Claims and delivers one batch; `sent` counts the successful deliveries. Must not throw for a failed
   * delivery. `more: false` says the batch took everything that was due: the lane then waits for the
   * next poll instead of claiming again at once. Under a steady trickle of events, claiming again at
   * once would pay a batch's fixed queries for every single event; waiting lets them gather into runs.
   */
  runBatch(): Promise<{ claimed: number; sent: number; more?: boolean }>;
  /**
   * Waits for deliveries a batch left running when it returned (a slow receiver's); resolves with how
   * many of them were acknowledged since the last call. drain() and stop() wait for it.
   */
  settle?(): Promise<number>;
  /** The worker is stopping: acknowledgements still failing to be recorded go on for `graceMs` at most. */
  stopping?(graceMs: number): void;
}

/** The logger methods the worker uses. */
export type OutboxWorkerLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

/** What an OutboxWorker is built from. */
export interface OutboxWorkerOptions {
  readonly db: Queryable;
  readonly clock: Clock;
  readonly transport: MailTransport;
  readonly logger: OutboxWorkerLogger;
  readonly config: Pick<Config, 'outbox'>;
  /** Rows claimed (and sent concurrently) per batch; default 5. */
  readonly batchSize?: number;
  /**
   * How long a claim keeps a row from other workers; default 120 s. It must exceed the longest
   * delivery of a batch (the SMTP transport fails within about 30 s), or another worker may claim
   * and send the same row while the first is still sending it.
   */
  readonly leaseSeconds?: number;
  /** Uniform random number in [0, 1) for the backoff jitter; injectable for tests. */
  readonly random?: () => number;
  /**
   * Keep a mail's text and HTML after it is delivered or given up (the development mailbox shows
   * them). Off by default: the bodies hold reset links, verification links and one-time codes, which
   * must not outlive delivery in a database that otherwise stores only their digests.
   */
  readonly keepBodies?: boolean;
  /** Further lanes (event deliveries) drained beside the mail. */
  readonly lanes?: readonly OutboxLane[];
  /** Least time between the start of a run and a kicked run after it; default {@link KICK_DELAY_MS}. */
  readonly kickDelayMs?: number;
  /** The wait between tries to record an accepted mail; injectable so that tests move their clock instead. */
  readonly sleep?: Sleep;
}

/** Default rows per batch: small, so one slow batch stays well inside its lease. */
const DEFAULT_BATCH_SIZE = 5;
/** Default lease of a claim, in seconds. */
const DEFAULT_LEASE_SECONDS = 120;
/**
 * Default least time between the start of a run and a kicked one. Under a stream of events every
 * commit kicks; a run per commit would pay a batch's fixed statements (claim, endpoint, record) per
 * event. Measured with three endpoints and 150 events/s on PostgreSQL, per event: runs 50 ms apart
 * cost +0.8 ms of the instance's CPU and +0.9 ms of PostgreSQL's; 200 ms apart +0.6 and +0.4, the same
 * as a 1-s poll, at a fifth of its latency.
 */
export const KICK_DELAY_MS = 200;

/** A jitter source from the CSPRNG (the house rule for randomness), in [0, 1). */
function cryptoRandom(): number {
  return randomInt(0, 1_000_000) / 1_000_000;
}

/**
 * Delay before the next attempt after the `attempts`-th failed one: 2^attempts seconds times a
 * jitter in [0.8, 1.2] (so instances that failed together do not retry in lockstep), capped.
 */
export function backoffSeconds(attempts: number, maxBackoffSeconds: number, random: () => number = cryptoRandom): number {
  const jitter = 0.8 + 0.4 * random();
  return Math.min(2 ** attempts * jitter, maxBackoffSeconds);
}

/** Polls the outbox and delivers due mail; several instances may run it against one database. */
export class OutboxWorker {
  readonly #db: Queryable;
  readonly #clock: Clock;
  readonly #transport: MailTransport;
  readonly #logger: OutboxWorkerLogger;
  readonly #maxAgeSeconds: number;
  readonly #maxBackoffSeconds: number;
  readonly #batchSize: number;
  readonly #leaseSeconds: number;
  readonly #random: () => number;
  readonly #keepBodies: boolean;
  readonly #lanes: readonly OutboxLane[];
  /** Records accepted mails, trying again while the database fails (mail-recording.ts). */
  readonly #recorder: SentRecorder;

  #stopped = false;
  /** Each lane's own timer, kick and stop (lane-loop.ts): a busy lane never holds back another. */
  readonly #loops: readonly LaneLoop[];
  /** Tail of each lane's batches: a lane's batches run one at a time, whether from its loop or drain(). */
  readonly #tails = new Map<OutboxLane, Promise<unknown>>();

  constructor(options: OutboxWorkerOptions) {
    this.#db = options.db;
    this.#clock = options.clock;
    this.#transport = options.transport;
    this.#logger = options.logger;
    this.#maxAgeSeconds = options.config.outbox.maxAgeSeconds;
    this.#maxBackoffSeconds = options.config.outbox.maxBackoffSeconds;
    this.#batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    this.#leaseSeconds = options.leaseSeconds ?? DEFAULT_LEASE_SECONDS;
    this.#random = options.random ?? cryptoRandom;
    this.#keepBodies = options.keepBodies ?? false;
    this.#recorder = new SentRecorder({
      db: this.#db,
      clock: this.#clock,
      logger: this.#logger,
      sleep: options.sleep ?? realSleep,
      leaseSeconds: this.#leaseSeconds,
      keepBodies: this.#keepBodies,
    });
    this.#lanes = [{ name: 'mail', runBatch: () => this.#runBatch() }, ...(options.lanes ?? [])];
    const kickDelayMs = options.kickDelayMs ?? KICK_DELAY_MS;
    this.#loops = this.#lanes.map((lane) => new LaneLoop({
      run: async () => {
        await this.#drainLane(lane);
      },
      pollIntervalMs: options.config.outbox.pollIntervalMs,
      kickDelayMs,
      // A database blip must only delay delivery. Rows claimed by the failed batch are retried when their lease ends.
      onError: (err) => this.#logger.error({ err, lane: lane.name }, 'outbox worker: delivery run failed'),
    }));
  }

  /** Starts polling every config.outbox.pollIntervalMs, each lane on its own; the first runs are immediate (work left by a crash). */
  start(): void {
    if (this.#stopped) return;
    for (const loop of this.#loops) loop.start();
  }

  /**
   * Asks a started worker to run now instead of at the next poll (call after committing something to
   * deliver), but never sooner than kickDelayMs after a lane's previous run began: an event after a
   * quiet spell goes out at once, a stream of them in runs that start no closer than kickDelayMs.
   * Kicks during a lane's run ask for one more run of that lane after it.
   */
  kick(): void {
    for (const loop of this.#loops) loop.kick();
  }

  /**
   * Stops polling and waits for the batches in flight; rows they had not finished keep their lease and
   * are retried later. A mail accepted but not yet recorded is tried for STOP_RECORD_GRACE_MS more at
   * most. Does not close the transport.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#recorder.stopping(STOP_RECORD_GRACE_MS);
    for (const lane of this.#lanes) lane.stopping?.(STOP_RECORD_GRACE_MS);
    await Promise.all(this.#loops.map((loop) => loop.stop()));
    await Promise.all(this.#tails.values());
    await Promise.all(this.#lanes.map((lane) => lane.settle?.()));
  }

  /**
   * Claims and delivers everything due now in every lane (mail and the others side by side), batch
   * after batch, until nothing is due; returns how many were sent (0 once stopped).
   */
  async drain(): Promise<number> {
    const counts = await Promise.all(this.#lanes.map(async (lane) => {
      let sent = 0;
      for (;;) {
        sent += await this.#drainLane(lane);
        // Deliveries a batch left running (a slow receiver): once they end, what they left due is drained too.
        const late = (await lane.settle?.()) ?? 0;
        sent += late;
        if (late === 0 || this.#stopped) return sent;
      }
    }));
    return counts.reduce((a, b) => a + b, 0);
  }

  async #drainLane(lane: OutboxLane): Promise<number> {
    let sent = 0;
    while (!this.#stopped) {
      const batch = await this.#exclusive(lane, () => lane.runBatch());
      sent += batch.sent;
      // Also stop after a batch in which every delivery failed: the transport is most likely down, the
      // failed rows now wait for their backoff, and the next poll takes up whatever else is due.
      if (batch.claimed === 0 || batch.sent === 0 || batch.more === false) break;
    }
    return sent;
  }

  /** Runs `fn` after every batch of the lane this worker started before it (one batch at a time per lane). */
  #exclusive<T>(lane: OutboxLane, fn: () => Promise<T>): Promise<T> {
    const tail = this.#tails.get(lane) ?? Promise.resolve();
    const run = tail.then(fn, fn);
    this.#tails.set(lane, run.catch(() => {}));
    return run;
  }

  async #runBatch(): Promise<{ claimed: number; sent: number }> {
    const rows = await outbox.claimDue(this.#db, this.#clock(), this.#batchSize, this.#leaseSeconds);
    if (rows.length === 0) return { claimed: 0, sent: 0 };
    // Concurrently, so that one slow recipient server cannot push the rest of the batch past its lease.
    const results = await Promise.all(rows.map((row) => this.#deliver(row)));
    return { claimed: rows.length, sent: results.filter(Boolean).length };
  }

  /** Delivers one claimed row and records the outcome; never throws. True when the transport accepted it. */
  async #deliver(row: OutboxRow): Promise<boolean> {
    const message: MailMessage = {
      id: row.id,
      kind: row.kind as MailKind,
      to: row.to_address,
      subject: row.subject,
      text: row.text_body,
      html: row.html_body,
    };
    const acceptedEarlier = this.#recorder.acceptedEarlier(row.id);
    if (acceptedEarlier) {
      // Accepted in an earlier claim whose recording failed until its lease ended: record, never resend.
      this.#logger.info({ mailId: row.id, kind: row.kind }, 'outbox worker: recording a mail accepted earlier (not sent again)');
      await this.#recorder.record(row, acceptedEarlier);
      return true;
    }
    try {
      await this.#transport.send(message);
    } catch (err) {
      await this.#recordFailure(row, err).catch((dbErr: unknown) => {
        // The lease still protects the row; once it ends, the row is claimed and tried again.
        this.#logger.error({ err: dbErr, mailId: row.id }, 'outbox worker: could not record a failed delivery');
      });
      return false;
    }
    await this.#recorder.record(row, this.#clock());
    return true;
  }

  async #recordFailure(row: OutboxRow, err: unknown): Promise<void> {
    const now = this.#clock();
    // Masked for the log as for last_error: an SMTP server refusing a recipient quotes the address,
    // and the logs (shipped, kept, read by more people than the admin API) must not collect them.
    const error = outbox.maskAddresses(describeError(err));
    const smtp = smtpReply(err);
    const claim = { id: row.id, attempts: row.attempts };
    const ageSeconds = (now.getTime() - row.created_at.getTime()) / 1000;
    if (ageSeconds >= this.#maxAgeSeconds) {
      if (await outbox.markFailed(this.#db, claim, now, error, this.#keepBodies)) {
        this.#logger.error(
          { mailId: row.id, kind: row.kind, attempts: row.attempts, ageSeconds: Math.round(ageSeconds), ...smtp, error },
          'outbox worker: giving up on a mail after repeated failures; it will not be sent',
        );
      }
      return;
    }
    const delaySeconds = backoffSeconds(row.attempts, this.#maxBackoffSeconds, this.#random);
    const nextAttemptAt = new Date(now.getTime() + Math.round(delaySeconds * 1000));
    if (await outbox.markRetry(this.#db, claim, nextAttemptAt, error)) {
      this.#logger.warn(
        { mailId: row.id, kind: row.kind, attempts: row.attempts, retryInSeconds: Math.round(delaySeconds * 10) / 10, ...smtp, error },
        'outbox worker: mail delivery failed; will retry',
      );
    }
  }
}

/**
 * The machine-readable part of a transport error for the log: nodemailer's code (EENVELOPE,
 * ECONNECTION, …) as `errorCode`, as the error serializer names it (`code` is redacted: request
 * bodies carry one-time codes there), and the SMTP reply code. Never its `response`, `rejected` or
 * `rejectedErrors`, which quote the recipients.
 */
function smtpReply(err: unknown): { errorCode?: string; responseCode?: number } {
  if (typeof err !== 'object' || err === null) return {};
  const { code, responseCode } = err as { code?: unknown; responseCode?: unknown };
  return { ...(typeof code === 'string' ? { errorCode: code } : {}), ...(typeof responseCode === 'number' ? { responseCode } : {}) };
}

/** A one-line description of a delivery error for last_error and the log (no stack), addresses not yet masked. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
