/**
 * Process entry: the only place that reads the environment. It becomes a cluster primary
 * (WEB_CONCURRENCY > 1) or runs one serving instance (instance.ts: opens real resources, starts the
 * mail worker and listens). `npm start` runs it; with no settings it serves http://localhost:8000 on
 * PGlite in ./data with generated development keys and the development mailbox.
 */
import { ConfigError, loadConfig, type Config } from './config.ts';
import { createLogger } from './logger.ts';

let config: Config;
try {
  config = loadConfig(process.env);
} catch (e) {
  if (e instanceof ConfigError) {
    console.error(`twofold: configuration error: ${e.message}`);
    process.exit(2);
  }
  throw e;
}
const logger = createLogger(config);

/**
 * A start that failed. A setting found wrong only once resources are open (OIDC_CLIENTS_FILE, read
 * when the OpenID routes are mounted) is a configuration error like any other: one line on stderr and
 * exit 2, not a stack trace in the log and exit 1.
 */
function startUpFailed(err: unknown): never {
  if (err instanceof ConfigError) {
    console.error(`twofold: configuration error: ${err.message}`);
    process.exit(2);
  }
  logger.fatal({ err }, 'start-up failed');
  process.exit(1);
}

const cluster = config.webConcurrency > 1 ? (await import('node:cluster')).default : undefined;
if (cluster?.isPrimary) {
  // WEB_CONCURRENCY > 1: this process only supervises the workers (see cluster-primary.ts).
  await (await import('./cluster-primary.ts')).runClusterPrimary(config, logger).catch(startUpFailed);
} else {
  // A worker answers the primary's metrics gathering from its first moment (with nothing until its
  // registry exists): one still starting must not make every scrape wait for it and fail.
  if (cluster?.isWorker) (await import('./http/cluster-metrics.ts')).answerMetricsGathering();
  // The service's modules load only here: a cluster primary stays a small process.
  import('./instance.ts').then((m) => m.runInstance(config, logger)).catch(startUpFailed);
}
