/**
 * Recording a delivery that its receiver has already accepted (an SMTP server's 250, a webhook's 2xx).
 * Until it is recorded, the row looks undelivered and is sent again once its lease ends, so one failed
 * statement (the database restarting, a connection ended) must not be the end of it: the statement is
 * tried again with a short backoff for as long as the caller still holds the row's lease.
 */
import type { Clock } from '../clock.ts';

/** Waits `ms` milliseconds; injectable so that tests move their clock instead of sleeping. */
export type Sleep = (ms: number) => Promise<void>;

/** The real wait. */
export const realSleep: Sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** First wait after a failed try; it doubles after each further failure, up to {@link RECORD_RETRY_MAX_MS}. */
const RECORD_RETRY_FIRST_MS = 250;
/** Longest wait between two tries: a database back after an outage is noticed within a few seconds. */
const RECORD_RETRY_MAX_MS = 4000;

/**
 * How long a stopping outbox worker lets recordings that still fail go on trying: a database back
 * within it still gets the record (no second delivery after the restart), and shutdown stays bounded.
 */
export const STOP_RECORD_GRACE_MS = 5000;

export interface RecordRetryOptions {
  readonly clock: Clock;
  readonly sleep: Sleep;
  /**
   * When the tries end (ms since the epoch, on `clock`): the end of the claim's lease, or a
   * shutdown's deadline. Read again after every failed try, so the caller may push it (an extended lease).
   */
  readonly until: () => number;
  /** Runs after each failed try, before the wait (the mail extends its lease there). Must not throw. */
  readonly between?: () => Promise<void>;
}

/** How the recording ended: its value, or the last error once the time ran out. */
export type RecordOutcome<T> =
  | { readonly ok: true; readonly value: T; readonly tries: number }
  | { readonly ok: false; readonly error: unknown; readonly tries: number };

/** Runs `record` until it succeeds or `until()` has passed; the last try starts no later than that. Never throws. */
export async function recordWithRetry<T>(record: () => Promise<T>, o: RecordRetryOptions): Promise<RecordOutcome<T>> {
  const started = o.clock().getTime();
  let waited = 0;
  // The clock's time, but never less than the waits so far: with a clock that stands still (a test's
  // frozen one) the tries still end.
  const now = () => Math.max(o.clock().getTime(), started + waited);
  for (let tries = 1; ; tries++) {
    try {
      return { ok: true, value: await record(), tries };
    } catch (error) {
      await o.between?.();
      const left = o.until() - now();
      if (left <= 0) return { ok: false, error, tries };
      const wait = Math.min(RECORD_RETRY_FIRST_MS * 2 ** (tries - 1), RECORD_RETRY_MAX_MS, left);
      await o.sleep(wait);
      waited += wait;
    }
  }
}

/** {@link recordWithRetry} for a caller that lets the failure propagate: the value, or the last error thrown once the time ran out. */
export async function recordOrThrow<T>(record: () => Promise<T>, o: RecordRetryOptions): Promise<T> {
  const outcome = await recordWithRetry(record, o);
  if (!outcome.ok) throw outcome.error;
  return outcome.value;
}
