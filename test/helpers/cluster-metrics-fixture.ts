/**
 * A small cluster for test/unit/cluster-metrics.test.ts, run as its own process: the primary serves
 * the metrics gathering; one worker asks for the metrics and dies before the answer, another is still
 * starting (answers the gathering with nothing yet). Prints one JSON line per event.
 */
import cluster from 'node:cluster';
import { Counter, Registry } from 'prom-client';
import { REQUEST, answerMetricsGathering, clusterMetricsText, serveClusterMetrics, shareWorkerMetrics } from '../../src/http/cluster-metrics.ts';

const say = (o: Record<string, unknown>) => console.log(JSON.stringify(o));

if (cluster.isPrimary) {
  serveClusterMetrics();
  process.on('exit', (code) => say({ event: 'primary-exit', code }));
  const asker = cluster.fork({ ROLE: 'dying-asker' });
  cluster.fork({ ROLE: 'starting' });
  asker.on('exit', () => {
    say({ event: 'asker-exited' });
    // The answer to the dead asker comes once the gathering has timed out (5 s); then a live worker asks.
    setTimeout(() => cluster.fork({ ROLE: 'asker' }), 6000);
  });
  cluster.on('message', (_w, m: { event?: string }) => {
    if (m?.event) say(m);
    if (m?.event === 'answered' || m?.event === 'failed') {
      for (const w of Object.values(cluster.workers ?? {})) w?.kill();
      setTimeout(() => process.exit(0), 200);
    }
  });
} else if (process.env.ROLE === 'starting') {
  answerMetricsGathering();
  setInterval(() => {}, 1000);
} else {
  const registry = new Registry();
  new Counter({ name: 'fixture_requests_total', help: 'test', registers: [registry] }).inc(3);
  shareWorkerMetrics(registry);
  if (process.env.ROLE === 'dying-asker') {
    // Asks, and is gone once the request has left: the gathering then waits for it in vain (5 s) and
    // answers a worker whose channel is closed.
    setTimeout(() => process.send!({ type: REQUEST, id: 1 }, () => process.exit(0)), 300);
  } else {
    clusterMetricsText().then(
      (text) => process.send!({ event: 'answered', hasCounter: /fixture_requests_total 3/.test(text) }),
      (err: Error) => process.send!({ event: 'failed', error: err.message }),
    );
  }
}
