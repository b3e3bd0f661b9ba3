/**
 * /metrics under WEB_CONCURRENCY > 1. Each worker counts only its own requests, and a scrape reaches
 * whichever worker the connection was dealt to: counters read 10, 11, 10, 11… and rate() was
 * garbage. So a worker answering /metrics asks the cluster primary, which gathers every worker's
 * registry and sends the summed text back. The aggregation is prom-client's (AggregatorRegistry.aggregate
 * over each worker's getMetricsAsJSON); the messages, both ways, are ours.
 *
 * Why not prom-client's AggregatorRegistry.clusterMetrics() for the round trip (15.1.3, lib/cluster.js):
 * it keeps each gathering in a module-private `requests` map and deletes it only when every worker has
 * answered. A gathering that times out (a worker exited or hung) or gets an error answer stays there
 * forever with the answers it did receive (the other workers' whole metrics): a slow leak, in a closure
 * no code outside can reach. Here the primary runs at most one gathering at a time and drops it on every
 * ending, timeout included.
 *
 * Each gathering makes every worker serialise its registry, and /metrics may be open to anyone: so the
 * primary shares one gathering between the asks that arrive while it runs, and answers from its result
 * for FRESH_MS after it ends. However fast /metrics is hit, the workers serialise at most once per
 * gathering's duration + FRESH_MS.
 */
import cluster, { type Cluster, type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { systemClock, type Clock } from '../clock.ts';

/** The type of a worker's request for the gathered metrics (exported for the tests' cluster). */
export const REQUEST = 'twofold:metrics-request';
const ANSWER = 'twofold:metrics-answer';
/** The primary's request to each worker for its own metrics, and the worker's reply (exported for the tests' fake workers). */
export const GATHER = 'twofold:metrics-gather';
export const GATHERED = 'twofold:metrics-gathered';
/** As prom-client's: how long the primary waits for every worker's reply. */
const GATHER_TIMEOUT_MS = 5_000;
/** Longer than the primary's wait for the workers. */
const ANSWER_TIMEOUT_MS = 7_000;
/** How long a gathered text answers further asks: Prometheus scrapes every 15 s or more, so a second-old text is current. */
const FRESH_MS = 1_000;

type WorkerMetrics = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

interface MetricsMessage {
  type: string;
  id: number;
  text?: string;
  error?: string;
  /** GATHERED: one entry per registry of the worker. */
  metrics?: WorkerMetrics[];
}

let registries: Registry[] = [];
let answering = false;

/** In a worker, first thing: answers the primary's gathering requests (with no metrics until {@link shareWorkerMetrics}). */
export function answerMetricsGathering(): void {
  if (answering) return;
  answering = true;
  // A reply on a channel already closed (the primary gone) must not raise an unhandled 'error' in a
  // worker that is going away anyway: hence the callback.
  const reply = (msg: MetricsMessage) => process.send?.(msg, () => {});
  process.on('message', (m: MetricsMessage) => {
    if (m?.type !== GATHER) return;
    Promise.all(registries.map((r) => r.getMetricsAsJSON())).then(
      (metrics) => reply({ type: GATHERED, id: m.id, metrics }),
      (err: Error) => reply({ type: GATHERED, id: m.id, error: err.message }),
    );
  });
}

/** In a worker: offers `registry` to the primary's gathering. */
export function shareWorkerMetrics(registry: Registry): void {
  answerMetricsGathering();
  registries = [registry];
}

let nextId = 0;

/** In a worker: the metrics of every worker, gathered by the primary. */
export function clusterMetricsText(): Promise<string> {
  const id = ++nextId;
  return new Promise((resolve, reject) => {
    const done = (err: Error | undefined, text?: string) => {
      clearTimeout(timer);
      process.off('message', onMessage);
      if (err) reject(err);
      else resolve(text ?? '');
    };
    const onMessage = (m: MetricsMessage) => {
      if (m?.type === ANSWER && m.id === id) done(m.error ? new Error(m.error) : undefined, m.text);
    };
    const timer = setTimeout(() => done(new Error('the cluster primary did not answer with the metrics')), ANSWER_TIMEOUT_MS);
    process.on('message', onMessage);
    process.send!({ type: REQUEST, id });
  });
}

/** What the primary needs of node:cluster (a fake in the unit tests). */
export type ClusterLike = Pick<Cluster, 'on' | 'workers'>;

/** One gathering in progress: the only place its workers' replies are kept. */
interface Gathering {
  id: number;
  waiting: Set<number>;
  replies: WorkerMetrics[];
  finish(error?: string): void;
}

/**
 * How a gathering ended. Strings only, no Error: an Error's stack trace references the functions it
 * was made in, and through their closures the gathering, which the cached outcome would then keep.
 */
type Outcome = { text: string } | { error: string };

/** In the primary: answers the workers' requests with the gathered metrics. `deps` are for the tests. */
export function serveClusterMetrics(deps: { cluster?: ClusterLike; clock?: Clock } = {}): void {
  const { cluster: c = cluster, clock = systemClock } = deps;
  // Our gathering writes to every worker; one exiting at that moment fails the write (EPIPE), emitted as
  // 'error' on the Worker when the send has no callback, which unhandled took the primary (and every
  // worker) down. Our sends have callbacks; this stays for any other write.
  const quiet = (w: Worker) => w.on('error', () => {});
  for (const w of Object.values(c.workers ?? {})) if (w) quiet(w);
  c.on('fork', quiet);

  let gatherings = 0;
  let current: Gathering | undefined;

  const gather = (): Promise<Outcome> =>
    new Promise((resolve) => {
      const g: Gathering = {
        id: ++gatherings,
        waiting: new Set(),
        replies: [],
        finish(error) {
          if (current !== g) return;
          // Dropping it on every ending (all replies, an error reply, the timeout) frees the replies
          // received so far: what prom-client's map kept forever after a timeout.
          current = undefined;
          clearTimeout(timer);
          if (error !== undefined) return resolve({ error });
          // aggregate() throws on a metric with an unknown aggregator: that must fail this scrape, not
          // escape from the cluster 'message' listener and take the primary down.
          Promise.resolve(g.replies)
            .then((replies) => AggregatorRegistry.aggregate(replies).metrics())
            .then((text) => resolve({ text }), (err: Error) => resolve({ error: err.message }));
        },
      };
      current = g;
      const timer = setTimeout(() => g.finish('the workers did not all answer the metrics gathering in time'), GATHER_TIMEOUT_MS);
      for (const w of Object.values(c.workers ?? {})) {
        // A worker that exited abruptly may still be listed, unable to answer.
        if (!w?.isConnected()) continue;
        g.waiting.add(w.id);
        // A worker gone mid-write will not answer: stop waiting for it instead of timing out.
        w.send({ type: GATHER, id: g.id }, (err) => {
          if (err) stopWaiting(g, w.id);
        });
      }
      if (g.waiting.size === 0) g.finish();
    });
  const stopWaiting = (g: Gathering, workerId: number) => {
    if (g.waiting.delete(workerId) && g.waiting.size === 0) g.finish();
  };
  // A worker that leaves mid-gathering (crash, restart) will not answer: the others' metrics are what
  // the next scrape would see anyway, so answer with them rather than fail the scrape after 5 s.
  c.on('disconnect', (w: Worker) => {
    if (current) stopWaiting(current, w.id);
  });

  // The running gathering, or the last one while it is fresh (a failure too: an error reply comes fast,
  // and retrying at once would make the rate of gatherings that of the requests again).
  let shared: Promise<Outcome> | undefined;
  let settledAt: number | undefined; // unset while `shared` runs
  const gathered = (): Promise<Outcome> => {
    const age = settledAt === undefined ? 0 : clock().getTime() - settledAt;
    // A clock stepped back (age < 0) must not keep a text forever.
    if (shared && age >= 0 && age < FRESH_MS) return shared;
    settledAt = undefined;
    const p: Promise<Outcome> = gather().then((outcome) => {
      if (shared === p) settledAt = clock().getTime();
      return outcome;
    });
    shared = p;
    return p;
  };

  c.on('message', (worker: Worker, m: MetricsMessage) => {
    if (m?.type === GATHERED) {
      const g = current;
      // A reply to a gathering already over (timed out, failed) has nothing to join: ignored.
      if (!g || m.id !== g.id || !g.waiting.has(worker.id)) return;
      if (m.error) g.finish(m.error);
      else {
        g.replies.push(...(m.metrics ?? []));
        stopWaiting(g, worker.id);
      }
      return;
    }
    if (m?.type !== REQUEST) return;
    // The asking worker may have died meanwhile: a send on its closed channel, without a callback,
    // raised an unhandled 'error' that took the primary (and so every worker) down.
    const answer = (msg: MetricsMessage) => {
      if (worker.isConnected()) worker.send(msg, () => {});
    };
    void gathered().then((outcome) => answer({ type: ANSWER, id: m.id, ...outcome }));
  });
}
