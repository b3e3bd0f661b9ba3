/**
 * The events' lanes of the outbox worker: webhook deliveries (one in flight per endpoint, in order of
 * creation) and the RabbitMQ publication. Same guarantees as the mail: a claimed row is leased, so
 * several instances never deliver one event to one target at the same time; a crash between sending
 * and recording resends after the lease, with the same webhook-id / message-id, so receivers can
 * drop the duplicate; an acknowledged delivery is never claimed again.
 */
import type { Clock } from '../clock.ts';
import type { Config } from '../config.ts';
import type { SecretBox } from '../crypto/secret-box.ts';
import type { Queryable } from '../db/database.ts';
import * as deliveries from '../db/repositories/events/deliveries.ts';
import type { ClaimedDelivery } from '../db/repositories/events/deliveries.ts';
import { claimRun, markRunDelivered, releaseRun } from '../db/repositories/events/delivery-runs.ts';
import * as endpoints from '../db/repositories/events/endpoints.ts';
import { finishEndpointDeletions, secretsInGrace } from '../services/events/endpoints.ts';
import { eventBody } from '../services/events/publish.ts';
import { sendWebhook, signersFor, urlForLogs, type WebhookResult, type WebhookSigner } from '../webhooks/send.ts';
import { backoffSeconds, describeError, type OutboxLane, type OutboxWorkerLogger } from './outbox-worker.ts';
import { realSleep, recordOrThrow, type Sleep } from './record-retry.ts';

/** An endpoint whose deliveries have failed without a success for this long is marked failing. */
export const FAILING_AFTER_SECONDS = 86400;
/** Events (and their delivery log) are kept this long once nothing is pending for them. */
export const EVENT_RETENTION_SECONDS = 30 * 86400;
/** Deliveries of one endpoint claimed together after its head (see delivery-runs.ts). */
const RUN_LENGTH = 25;
/** How often an instance prunes old events (and on its first batch). */
export const PRUNE_INTERVAL_MS = 3600_000;
/**
 * Pruning, in statements of their own, each cut at a number of events and of their deliveries (an
 * event has one per endpoint and one for the broker), a few statements per run, and the next run
 * soon while more is due. One DELETE over every event due stalled the lane: at 150 events/s and three
 * endpoints, 540,000 events and 1.6 million deliveries an hour in one statement before the claim.
 * 5,000 events with up to four deliveries each (three endpoints and the broker) make a full batch;
 * more endpoints make batches of fewer events, not longer statements. Four statements (20,000 events,
 * 80,000 deliveries at most) keep a run to a short pause of the lane, and a run every 10 s while more
 * is due prunes up to 2,000 events/s, well past such traffic: an hour's events go in about five minutes,
 * a day's backlog (after a long stop) in about two hours, the lane spending a small share of its time on it.
 */
export const PRUNE_BATCH_EVENTS = 5000;
/** Deliveries (deleted by cascade) one pruning statement goes up to; see {@link PRUNE_BATCH_EVENTS}. */
export const PRUNE_BATCH_DELIVERIES = 20_000;
/** Pruning statements per run; see {@link PRUNE_BATCH_EVENTS}. */
export const PRUNE_BATCHES_PER_RUN = 4;
/** How soon the next run of pruning comes while more is due (or another instance was pruning). */
export const PRUNE_CATCH_UP_INTERVAL_MS = 10_000;
/** How often the worker goes on removing deleted endpoints' backlogs, and how many statements (5,000 rows each) per endpoint then. */
const DELETION_STEP_INTERVAL_MS = 10_000;
const DELETION_STEP_BATCHES = 4;

/** What both lanes are built from. */
interface LaneOptions {
  readonly db: Queryable;
  readonly clock: Clock;
  readonly logger: OutboxWorkerLogger;
  /** Uniform random number in [0, 1) for the backoff jitter; injectable for tests. */
  readonly random?: () => number;
  /** The wait between tries to record an acknowledgement; injectable so that tests move their clock instead. */
  readonly sleep?: Sleep;
}

/** The webhook lane's options. */
export interface WebhookLaneOptions extends LaneOptions {
  readonly secretBox: SecretBox;
  readonly config: Pick<Config, 'webhooks'>;
  /** Endpoints served per batch (each gets its oldest due event); default 10. */
  readonly batchSize?: number;
  /** Events delivered to one endpoint in one batch, in order (the head, then runs claimed together); default 50. */
  readonly perEndpoint?: number;
  /** Lease of a claim in seconds; default twice WEBHOOK_TIMEOUT plus 10 s, so a claim outlives its attempt and its recording. */
  readonly leaseSeconds?: number;
  /** Time one endpoint is served in a batch before the rest of its run is given back; default {@link ENDPOINT_BUDGET_MS}. */
  readonly endpointBudgetMs?: number;
  /** Pruning's bounds (events and deliveries per statement, statements per run); default {@link PRUNE_BATCH_EVENTS} and the two after it. Smaller in tests. */
  readonly pruneBounds?: { readonly events: number; readonly deliveries: number; readonly statementsPerRun: number };
}

/**
 * How long one endpoint is served per batch (its head is always sent). A healthy receiver takes its
 * 50 events well within it; a slow one gives the rest back and is served again in a later batch. A
 * batch waits for its endpoints only this long (and a margin): a receiver slower than that, even on
 * its head, is served on in the background and left out of the next batches until it is done, so it
 * holds up only its own queue.
 */
export const ENDPOINT_BUDGET_MS = 2000;
/** How much longer than the endpoint budget a batch waits for its slowest endpoint before going on without it. */
const BATCH_WAIT_MARGIN_MS = 500;

/** Delivers due webhook events, one per endpoint per batch, endpoints side by side. */
export function webhookLane(o: WebhookLaneOptions): OutboxLane {
  const { db, clock, logger } = o;
  const { timeoutMs, allowPrivate, maxAgeSeconds, maxBackoffSeconds } = o.config.webhooks;
  const leaseSeconds = o.leaseSeconds ?? Math.ceil((2 * timeoutMs) / 1000) + 10;
  const batchSize = o.batchSize ?? 10;
  const perEndpoint = o.perEndpoint ?? 50;
  const endpointBudgetMs = o.endpointBudgetMs ?? ENDPOINT_BUDGET_MS;
  const pruneBounds = o.pruneBounds ?? { events: PRUNE_BATCH_EVENTS, deliveries: PRUNE_BATCH_DELIVERIES, statementsPerRun: PRUNE_BATCHES_PER_RUN };
  const sleep = o.sleep ?? realSleep;

  type Endpoint = NonNullable<Awaited<ReturnType<typeof endpoints.findEndpoint>>>;
  /** An acknowledged delivery, to be recorded with its run. */
  type Ack = { eventId: string; statusCode: number | null };
  /** What serving one endpoint did; `full` when it stopped with events still due (the perEndpoint cap, or rows given back for the lease). */
  type Served = { claimed: number; sent: number; full?: boolean };
  const failureContext = { db, clock, logger, maxAgeSeconds, maxBackoffSeconds, random: o.random };

  /** The endpoint's signers for this batch: the secret, and every replaced one still in its grace period. Opened once per batch, not per event. */
  function signers(endpoint: Endpoint): WebhookSigner[] {
    let replaced: string[] = [];
    try {
      replaced = secretsInGrace(o.secretBox, endpoint, clock()).map((s) => s.secret);
    } catch {
      // Replaced secrets sealed under a key no longer listed sign no more; the current one still does.
    }
    return signersFor([o.secretBox.open(endpoint.secret_sealed), ...replaced]);
  }

  /** One signed attempt. */
  function send(d: ClaimedDelivery, endpoint: Endpoint, signedBy: readonly WebhookSigner[]): Promise<WebhookResult> {
    return sendWebhook({ url: endpoint.url, id: d.event_id, timestamp: clock(), body: eventBody(d), signers: signedBy }, { timeoutMs, allowPrivate });
  }

  /** Records a failed attempt: the endpoint's failing mark, then the row's backoff or give-up. */
  async function failed(d: ClaimedDelivery, endpoint: Endpoint, result: WebhookResult): Promise<void> {
    const log = { eventId: d.event_id, type: d.type, endpointId: endpoint.id, attempts: d.attempts };
    if (await endpoints.noteFailure(db, endpoint.id, clock(), FAILING_AFTER_SECONDS)) {
      logger.error({ ...log, url: urlForLogs(endpoint.url) }, 'webhook endpoint marked failing: no successful delivery for a day');
    }
    await recordFailure(d, result, failureContext, log);
  }

  /**
   * Delivers `head` (claimed by claimHeads), then the endpoint's next events in runs claimed together,
   * one after the other, up to perEndpoint, until one fails. Acknowledgements are recorded per run;
   * rows a run does not reach (a failure, or half its lease used up) are given back unsent.
   */
  async function serveEndpoint(head: ClaimedDelivery, headLeaseEnd: number): Promise<Served> {
    // Read once per batch: a changed URL or secret applies from the next batch (at most one poll later).
    const endpoint = head.endpoint_id ? await endpoints.findEndpoint(db, head.endpoint_id) : undefined;
    // Deleted (or being deleted) meanwhile: nothing is sent, and its deliveries go with it.
    if (!endpoint) return { claimed: 1, sent: 0 };
    let failing = Boolean(endpoint.failing_since || endpoint.marked_failing_at);
    let signedBy: WebhookSigner[];
    try {
      signedBy = signers(endpoint);
    } catch {
      // Its secret was sealed under a key TOTP_ENCRYPTION_KEY no longer lists: a failed attempt like
      // any other (backoff, the failing mark, given up after WEBHOOK_MAX_AGE), with the reason in
      // last_error for the admin, who rotates the secret. Thrown on, it was retried forever unrecorded.
      await failed(head, endpoint, { ok: false, statusCode: null, error: "the endpoint's secret cannot be opened with TOTP_ENCRYPTION_KEY (was its key removed?): rotate the secret" });
      return { claimed: 1, sent: 0 };
    }
    const servingSince = Date.now();
    let claimed = 1;
    let sent = 0;
    const record = async (acks: Ack[], leaseEnd: number) => {
      if (acks.length === 0) return;
      const at = clock();
      // Tried again while the database fails, within the lease (record-retry.ts): a blip must not resend the run.
      const recorded = await recordOrThrow(() => markRunDelivered(db, head.target, acks, at), { clock, sleep, until: () => Math.min(leaseEnd, stopDeadline) });
      if (recorded < acks.length) {
        logger.warn({ endpointId: endpoint.id, count: acks.length - recorded }, 'webhook deliveries not recorded: their lease ran out (the receiver got them twice with one webhook-id), or the endpoint was deleted meanwhile');
      }
      sent += acks.length;
      if (failing) {
        await endpoints.noteSuccess(db, endpoint.id);
        failing = false;
      }
    };
    const first = await send(head, endpoint, signedBy);
    if (!first.ok) {
      await failed(head, endpoint, first);
      return { claimed, sent };
    }
    await record([{ eventId: head.event_id, statusCode: first.statusCode }], headLeaseEnd);
    for (let room = perEndpoint - claimed; room > 0; room = perEndpoint - claimed) {
      const asked = Math.min(RUN_LENGTH, room);
      const run = await claimRun(db, head.target, clock(), asked, leaseSeconds);
      if (run.length === 0) break;
      claimed += run.length;
      const leasedAt = Date.now();
      const runLeaseEnd = run[0]!.locked_until.getTime();
      const acks: Ack[] = [];
      for (const [i, d] of run.entries()) {
        // Half the run's lease used: give the rest back rather than send past it (another instance may
        // claim them then). Past the endpoint's budget: give it back too, so the batch can end.
        const leaseHalfUsed = (Date.now() - leasedAt) / 1000 > leaseSeconds / 2;
        const overBudget = Date.now() - servingSince > endpointBudgetMs;
        const result = leaseHalfUsed || overBudget ? undefined : await send(d, endpoint, signedBy);
        if (result?.ok) {
          acks.push({ eventId: d.event_id, statusCode: result.statusCode });
          continue;
        }
        await record(acks, runLeaseEnd);
        if (result) await failed(d, endpoint, result);
        await releaseRun(db, run.slice(result ? i + 1 : i));
        // A failure blocks the queue until its backoff; rows given back for the lease are due at once.
        return { claimed, sent, full: !result };
      }
      await record(acks, runLeaseEnd);
      // A short run took everything of the endpoint's that was due: no empty claim after it.
      if (run.length < asked) break;
    }
    // Stopped by the per-endpoint cap rather than by an empty queue: more of its events may be due.
    return { claimed, sent, full: claimed >= perEndpoint };
  }

  /**
   * Endpoints this instance is serving now. A batch waits for its endpoints only up to the endpoint
   * budget (plus a margin): a receiver slower than that is served on in the background, and its
   * endpoint is left out of the next claims until it is done (one serving per endpoint: order). So a
   * slow receiver delays only its own queue, and the other endpoints' batches follow at once.
   */
  const serving = new Map<string, Promise<Served>>();
  /** Deliveries acknowledged by servings that outlived their batch, not yet reported by settle(). */
  let lateSent = 0;
  /** Set by stopping(): recordings that still fail end then (clock time, ms). */
  let stopDeadline = Infinity;

  function serve(head: ClaimedDelivery, headLeaseEnd: number): Promise<Served> {
    const run = serveEndpoint(head, headLeaseEnd).catch((err: unknown): Served => {
      // The leases still protect the rows; once they end, the deliveries are tried again.
      logger.error({ err, eventId: head.event_id, endpointId: head.endpoint_id }, 'webhook delivery could not be recorded');
      return { claimed: 1, sent: 0 };
    });
    serving.set(head.target, run);
    return run.finally(() => serving.delete(head.target));
  }

  /**
   * One run of pruning: up to PRUNE_BATCHES_PER_RUN statements, each of its own (no lock held across
   * them). True when more may be due: a full batch, or another instance's statement had the turn (it
   * goes on at its own pace; this one tries again soon, so the pruning outlives that instance's stop).
   */
  async function pruneOldEvents(before: Date): Promise<boolean> {
    let pruned = 0;
    let more = true;
    for (let i = 0; i < pruneBounds.statementsPerRun && more; i++) {
      const batch = await deliveries.pruneEvents(db, before, pruneBounds.events, pruneBounds.deliveries);
      if (!batch) break;
      pruned += batch.pruned;
      more = batch.full;
    }
    if (pruned) logger.info({ pruned, more }, 'old events pruned');
    return more;
  }

  /** When this instance prunes next: at its first batch, then every PRUNE_INTERVAL_MS, sooner while more is due. */
  let nextPruneAt = 0;
  let lastDeletionStep = 0;
  return {
    name: 'webhooks',
    async runBatch() {
      const now = clock();
      if (now.getTime() >= nextPruneAt) {
        // Set first: a prune that fails is tried again at the next interval, not at every batch.
        nextPruneAt = now.getTime() + PRUNE_INTERVAL_MS;
        if (await pruneOldEvents(new Date(now.getTime() - EVENT_RETENTION_SECONDS * 1000))) nextPruneAt = now.getTime() + PRUNE_CATCH_UP_INTERVAL_MS;
      }
      if (now.getTime() - lastDeletionStep >= DELETION_STEP_INTERVAL_MS) {
        lastDeletionStep = now.getTime();
        const removed = await finishEndpointDeletions(db, DELETION_STEP_BATCHES);
        if (removed) logger.info({ removed }, 'removal of deleted webhook endpoints finished');
      }
      // The clock read again: a long prune must not leave the heads a lease that has already ended
      // (another instance could then claim and send them at the same time).
      const claimedAt = clock();
      const heads = await deliveries.claimHeads(db, 'webhook', claimedAt, batchSize, leaseSeconds, [...serving.keys()]);
      // Endpoints side by side; each endpoint's events one after the other, the next claimed only once
      // the previous is acknowledged (order holds).
      const runs = heads.map((head) => serve(head, claimedAt.getTime() + leaseSeconds * 1000));
      const served: Served[] = [];
      let waiting = true;
      const finished = runs.map((run) => run.then((s) => {
        if (waiting) served.push(s);
        else lateSent += s.sent;
      }));
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(finished),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, endpointBudgetMs + BATCH_WAIT_MARGIN_MS))),
      ]);
      clearTimeout(timer);
      waiting = false;
      const late = served.length < runs.length;
      return {
        // A serving still going counts its head; what it claims after that, settle() reports.
        claimed: served.reduce((a, s) => a + s.claimed, 0) + (runs.length - served.length),
        sent: served.reduce((a, s) => a + s.sent, 0),
        more: heads.length >= batchSize || served.some((s) => s.full) || (late && served.length > 0),
      };
    },
    stopping(graceMs) {
      stopDeadline = Math.min(stopDeadline, clock().getTime() + graceMs);
    },
    async settle() {
      while (serving.size > 0) await Promise.allSettled([...serving.values()]);
      const sent = lateSent;
      lateSent = 0;
      return sent;
    },
  };
}

/** Publishes one event and resolves once the broker confirmed it (rejects otherwise). */
export interface EventPublisher {
  publish(event: { id: string; type: string; occurredAt: Date; body: string }): Promise<void>;
}

/** The broker lane's options. */
export interface AmqpLaneOptions extends LaneOptions {
  readonly publisher: EventPublisher;
  readonly config: Pick<Config, 'webhooks'>;
  /** Lease of a claim in seconds; default 60. */
  readonly leaseSeconds?: number;
}

/** Longest wait between two publication attempts: a broker restart should cost seconds, not an hour. */
const AMQP_MAX_BACKOFF_SECONDS = 30;

/**
 * Publishes due events to the broker in order of creation, one at a time (the next is claimed only
 * once the previous is confirmed and recorded). Publication is retried until it is confirmed: the
 * broker is the operator's own, and an outage must delay events, not drop them.
 */
export function amqpLane(o: AmqpLaneOptions): OutboxLane {
  const { db, clock, logger } = o;
  const leaseSeconds = o.leaseSeconds ?? 60;
  const sleep = o.sleep ?? realSleep;
  let stopDeadline = Infinity;
  return {
    name: 'amqp',
    stopping(graceMs) {
      stopDeadline = Math.min(stopDeadline, clock().getTime() + graceMs);
    },
    async runBatch() {
      const claimedAt = clock();
      const [d] = await deliveries.claimHeads(db, 'amqp', claimedAt, 1, leaseSeconds, []);
      if (!d) return { claimed: 0, sent: 0 };
      const log = { eventId: d.event_id, type: d.type, attempts: d.attempts };
      try {
        await o.publisher.publish({ id: d.event_id, type: d.type, occurredAt: d.occurred_at, body: eventBody(d) });
      } catch (err) {
        await recordFailure(d, { ok: false, statusCode: null, error: describeError(err) }, {
          db, clock, logger, maxAgeSeconds: Infinity, maxBackoffSeconds: Math.min(AMQP_MAX_BACKOFF_SECONDS, o.config.webhooks.maxBackoffSeconds), random: o.random,
        }, log).catch((dbErr: unknown) => logger.error({ err: dbErr, ...log }, 'event publication failure could not be recorded'));
        return { claimed: 1, sent: 0 };
      }
      const at = clock();
      const leaseEnd = claimedAt.getTime() + leaseSeconds * 1000;
      const recorded = await recordOrThrow(() => deliveries.markDelivered(db, d.event_id, d.target, at, null), { clock, sleep, until: () => Math.min(leaseEnd, stopDeadline) });
      if (!recorded) logger.warn(log, 'event published again after its lease ran out; consumers got it twice with one message-id');
      return { claimed: 1, sent: 1 };
    },
  };
}

interface FailureContext {
  db: Queryable;
  clock: Clock;
  logger: OutboxWorkerLogger;
  maxAgeSeconds: number;
  maxBackoffSeconds: number;
  random: (() => number) | undefined;
}

/** Schedules the next attempt with backoff and jitter, or gives up once the delivery is older than the age limit. */
async function recordFailure(d: ClaimedDelivery, result: WebhookResult, c: FailureContext, log: Record<string, unknown>): Promise<void> {
  const now = c.clock();
  const error = result.error ?? 'failed';
  const claim = { eventId: d.event_id, target: d.target, attempts: d.attempts };
  const ageSeconds = (now.getTime() - d.age_from.getTime()) / 1000;
  if (ageSeconds >= c.maxAgeSeconds) {
    if (await deliveries.markAttemptFailed(c.db, claim, { failedAt: now }, error, result.statusCode)) {
      c.logger.error({ ...log, error, ageSeconds: Math.round(ageSeconds) }, 'event delivery given up: no success within the age limit');
    }
    return;
  }
  const delay = backoffSeconds(d.attempts, c.maxBackoffSeconds, c.random);
  if (await deliveries.markAttemptFailed(c.db, claim, { retryAt: new Date(now.getTime() + Math.round(delay * 1000)) }, error, result.statusCode)) {
    c.logger.warn({ ...log, error, retryInSeconds: Math.round(delay * 10) / 10 }, 'event delivery failed; will retry');
  }
}
