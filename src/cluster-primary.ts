/**
 * WEB_CONCURRENCY=N (N > 1, PostgreSQL deployments only): this process becomes the cluster primary
 * of Node's cluster module. It serves nothing itself; it forks N workers that each run the whole
 * service (server.ts) and share the listening port, replaces a worker that dies, and passes SIGTERM
 * and SIGINT on so that every worker shuts down gracefully. Limits are shared through Redis and the
 * outbox through PostgreSQL, which config.ts requires for this mode.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import type { Config } from './config.ts';
import { serveClusterMetrics } from './http/cluster-metrics.ts';
import { loadSecrets } from './secrets.ts';

/** A worker that dies within this long of its start has failed at start-up even if it was already listening. */
const MIN_LIFETIME_MS = 5_000;

export async function runClusterPrimary(config: Config, logger: Logger): Promise<void> {
  // File secrets are read (and, in development, generated into DATA_DIR) once here, before any worker
  // starts: workers racing to create the same key file could read a half-written one. The JWT signing
  // keys are in the database: the workers' start-up creates the first one under an advisory lock.
  await loadSecrets(config);
  // /metrics answered by any worker covers all of them (http/cluster-metrics.ts).
  serveClusterMetrics();
  let stopping = false;
  /** Set when the cluster stops because a worker failed: the primary then exits non-zero, so a supervisor (systemd, Docker's restart policy) sees the failure. */
  let failed = false;
  const started = new Map<Worker, number>();
  /**
   * The ports each worker listens on (PORT, and METRICS_PORT when set; `localhost` is two addresses on
   * one port): one that dies before it listens on all of them failed its start-up, however long it took.
   */
  const listening = new Map<Worker, Set<number>>();
  const ports = config.metricsPort === undefined ? 1 : 2;
  const fork = () => started.set(cluster.fork(), Date.now());
  for (let i = 0; i < config.webConcurrency; i++) fork();

  cluster.on('listening', (worker, address) => listening.set(worker, (listening.get(worker) ?? new Set()).add(address.port)));
  cluster.on('exit', (worker, code, signal) => {
    const lived = Date.now() - (started.get(worker) ?? 0);
    const listened = (listening.get(worker)?.size ?? 0) >= ports;
    listening.delete(worker);
    started.delete(worker);
    if (stopping) {
      logger.info({ pid: worker.process.pid, exitCode: code, signal }, 'worker stopped');
      if (started.size === 0) process.exit(failed ? 1 : 0);
      return;
    }
    logger.error({ pid: worker.process.pid, exitCode: code, signal }, 'worker process exited');
    // Not yet listening: the database unreachable until a connection timed out (10 s and more), a
    // migration failing after a while; forking again would fail the same way, for ever.
    if (!listened || lived < MIN_LIFETIME_MS) {
      logger.fatal('a worker failed during start-up; stopping the cluster');
      failed = true;
      stop('SIGTERM');
      return;
    }
    fork();
  });

  function stop(signal: NodeJS.Signals): void {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping workers');
    for (const worker of started.keys()) worker.process.kill(signal);
    if (started.size === 0) process.exit(failed ? 1 : 0);
  }
  // `on`, not `once`: a second signal (Ctrl-C pressed twice, systemd signalling the whole group)
  // must find the handler still there, not Node's default, which kills the primary mid-shutdown.
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  logger.info({ workers: config.webConcurrency }, `cluster primary: ${config.webConcurrency} worker processes on port ${config.port}`);
}
