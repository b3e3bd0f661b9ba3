/**
 * /metrics under WEB_CONCURRENCY > 1. Each worker counts only its own requests, and a scrape reaches
 * whichever worker the connection was dealt to: counters read 10, 11, 10, 11… and rate() was
 * garbage. So a worker answering /metrics asks the cluster primary, which gathers every worker's
 * registry with prom-client's AggregatorRegistry (counters summed) and sends the text back.
 * The request/answer messages are ours (prom-client aggregates only in the primary); the gathering
 * is prom-client's.
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';

/** The type of a worker's request for the gathered metrics (exported for the tests' cluster). */
export const REQUEST = 'twofold:metrics-request';
const ANSWER = 'twofold:metrics-answer';
/** Longer than prom-client's own 5 s wait for the workers. */
const ANSWER_TIMEOUT_MS = 7_000;

interface MetricsMessage {
  type: string;
  id: number;
  text?: string;
  error?: string;
}

/** In a worker, first thing: answers the primary's gathering requests (with no metrics until {@link shareWorkerMetrics}). */
export function answerMetricsGathering(): void {
  AggregatorRegistry.setRegistries([]);
  // Constructing one installs prom-client's listener that answers the primary's gathering requests.
  new AggregatorRegistry();
}

/** In a worker: offers `registry` to the primary's gathering. */
export function shareWorkerMetrics(registry: Registry): void {
  answerMetricsGathering();
  AggregatorRegistry.setRegistries([registry]);
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

/** In the primary: answers the workers' requests with the gathered metrics. */
export function serveClusterMetrics(): void {
  const aggregator = new AggregatorRegistry();
  // prom-client's gathering writes to every worker; one exiting at that moment fails the write (EPIPE),
  // emitted as 'error' on the Worker, which unhandled took the primary (and every worker) down.
  const quiet = (w: Worker) => w.on('error', () => {});
  for (const w of Object.values(cluster.workers ?? {})) if (w) quiet(w);
  cluster.on('fork', quiet);
  cluster.on('message', (worker: Worker, m: MetricsMessage) => {
    if (m?.type !== REQUEST) return;
    // The asking worker may have died meanwhile: a send on its closed channel, without a callback,
    // raised an unhandled 'error' that took the primary (and so every worker) down.
    const answer = (msg: MetricsMessage) => {
      if (worker.isConnected()) worker.send(msg, () => {});
    };
    aggregator.clusterMetrics().then(
      (text) => answer({ type: ANSWER, id: m.id, text }),
      (err: Error) => answer({ type: ANSWER, id: m.id, error: err.message }),
    );
  });
}
