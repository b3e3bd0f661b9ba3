/**
 * Recording, for the outbox worker, that the transport accepted a mail. Until the row says so it looks
 * undelivered, and once its lease ends any instance claims it and sends it again: the same Message-ID
 * twice. So a failed recording is tried again while the lease is held, the lease is extended when
 * that takes long, and an acceptance that still could not be recorded is remembered, so that this
 * instance, claiming the row again later, records it instead of sending it.
 */
import type { Clock } from '../clock.ts';
import type { Queryable } from '../db/database.ts';
import * as outbox from '../db/repositories/outbox.ts';
import type { OutboxRow } from '../db/repositories/outbox.ts';
import type { OutboxWorkerLogger } from './outbox-worker.ts';
import { recordWithRetry, type Sleep } from './record-retry.ts';

/** Accepted-but-unrecorded mails remembered at most (the oldest forgotten first); only a long outage fills it. */
const MAX_UNRECORDED = 1000;

export interface SentRecorderOptions {
  readonly db: Queryable;
  readonly clock: Clock;
  readonly logger: OutboxWorkerLogger;
  readonly sleep: Sleep;
  /** The worker's lease, in seconds: an extension pushes the lease this far from now. */
  readonly leaseSeconds: number;
  /** Keep the bodies of a sent mail (see OutboxWorkerOptions.keepBodies). */
  readonly keepBodies: boolean;
}

export class SentRecorder {
  readonly #o: SentRecorderOptions;
  /** Set by stopping(): when recordings that still fail give up (clock time, ms). */
  #deadline = Infinity;
  /** Mails accepted whose recording failed until its lease ended, with when they were accepted. */
  readonly #unrecorded = new Map<string, Date>();

  constructor(options: SentRecorderOptions) {
    this.#o = options;
  }

  /** When the transport accepted this row in an earlier claim of this instance that could not record it; else undefined. */
  acceptedEarlier(id: string): Date | undefined {
    return this.#unrecorded.get(id);
  }

  /** The worker is stopping: recordings that still fail go on for `graceMs` at most (and never past their lease). */
  stopping(graceMs: number): void {
    this.#deadline = Math.min(this.#deadline, this.#o.clock().getTime() + graceMs);
  }

  /**
   * Records the claimed `row` as sent at `acceptedAt`; never throws. A failing statement (the database
   * restarting, a connection ended) is tried again with a short backoff while the claim's lease holds,
   * and the lease is extended whenever half of it is left, so no other instance claims and sends the
   * mail meanwhile. When the lease cannot be held (the database unreachable until it ends) or the
   * shutdown's grace is over, the tries end with an error line, and the acceptance is remembered.
   */
  async record(row: OutboxRow, acceptedAt: Date): Promise<void> {
    const { db, clock, logger } = this.#o;
    const log = { mailId: row.id, kind: row.kind, attempts: row.attempts };
    const leaseMs = this.#o.leaseSeconds * 1000;
    const claim = { id: row.id, attempts: row.attempts };
    let leaseEnd = row.locked_until?.getTime() ?? clock().getTime() + leaseMs;
    const outcome = await recordWithRetry(() => outbox.markSent(db, row.id, acceptedAt, this.#o.keepBodies), {
      clock,
      sleep: this.#o.sleep,
      until: () => Math.min(leaseEnd, this.#deadline),
      between: async () => {
        const now = clock();
        if (leaseEnd - now.getTime() > leaseMs / 2) return;
        const until = new Date(now.getTime() + leaseMs);
        // A failure here is the same outage; the lease's end bounds the tries.
        if (await outbox.extendLease(db, claim, now, until).catch(() => false)) leaseEnd = until.getTime();
      },
    });
    this.#unrecorded.delete(row.id);
    if (outcome.ok) {
      if (outcome.value) {
        if (outcome.tries > 1) logger.info({ ...log, tries: outcome.tries }, 'outbox worker: mail recorded as sent once the database answered again');
      } else if (outcome.tries === 1) {
        logger.warn(log, 'outbox worker: mail was already recorded as sent by another worker (lease expired during delivery); the receiver got it twice with one Message-ID');
      } else {
        // Most likely an earlier try committed and only its answer was lost.
        logger.info({ ...log, tries: outcome.tries }, 'outbox worker: mail found already recorded as sent when recording it again');
      }
      return;
    }
    this.#unrecorded.set(row.id, acceptedAt);
    if (this.#unrecorded.size > MAX_UNRECORDED) this.#unrecorded.delete(this.#unrecorded.keys().next().value!);
    logger.error(
      { err: outcome.error, ...log, tries: outcome.tries },
      this.#deadline < leaseEnd
        ? 'outbox worker: mail delivered but not recorded as sent before shutdown; it will be sent again when its lease ends'
        : 'outbox worker: mail delivered but not recorded as sent within its lease; another instance may send it again, this one will record it without sending',
    );
  }
}
