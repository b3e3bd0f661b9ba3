/**
 * One serving instance: opens the database, keys, limiter and mail, builds the app, starts the outbox
 * worker and the jobs, listens, and shuts all of it down gracefully on SIGTERM/SIGINT. server.ts loads
 * this module only in a process that serves (not in the cluster primary, which needs none of it).
 */
import cluster from 'node:cluster';
import { isIP } from 'node:net';
import { buildApp } from './app.ts';
import { trackInFlight } from './http/in-flight.ts';
import { shareWorkerMetrics } from './http/cluster-metrics.ts';
import { createMetrics } from './http/metrics.ts';
import { buildMetricsApp, openMetricsWarning } from './http/routes/metrics.ts';
import { systemClock } from './clock.ts';
import type { Config } from './config.ts';
import type { Deps } from './deps.ts';
import { DataDirInUseError, lockDataDirWaiting } from './db/data-dir-lock.ts';
import { migrate } from './db/migrate.ts';
import { openDatabase } from './db/open.ts';
import { amqpLane, webhookLane } from './jobs/event-delivery.ts';
import { startKeyJob } from './jobs/key-rotation.ts';
import { startAuditRetentionJob } from './jobs/audit-retention.ts';
import { OutboxWorker, type OutboxLane } from './jobs/outbox-worker.ts';
import { onEventsQueued } from './services/events/publish.ts';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { createDevMailboxTransport, noSmtpWarning } from './mail/dev-mailbox.ts';
import { openDeps } from './open-deps.ts';
import { createLimiter } from './security/create-limiter.ts';
import { closePasswordChecker } from './security/password-policy.ts';

export async function runInstance(config: Config, logger: Logger): Promise<void> {
  // The embedded database is this process's alone (see db/data-dir-lock.ts); a server has no such lock.
  let releaseDataDir = () => {};
  if (!config.databaseUrl) {
    // Stopped while it waits for another container's lock: nothing is held yet, so it just ends. (As
    // pid 1 of a container a signal without a handler is ignored: the stop was lost, and it started.)
    const stopWaiting = (signal: NodeJS.Signals) => {
      logger.info({ signal }, 'stopped while waiting for the data directory lock');
      process.exit(0);
    };
    process.once('SIGTERM', stopWaiting);
    process.once('SIGINT', stopWaiting);
    try {
      // A holder in another container is waited for until its heartbeat goes stale (db/data-dir-lock.ts).
      releaseDataDir = await lockDataDirWaiting(
        config.dataDir,
        (e) => logger.warn(`${e.message}: waiting for it to stop or for its lock to go stale (a container restarted after a crash finds its own earlier run's lock so)`),
        // A lock whose heartbeat stopped may be another process's by now: writing on would corrupt the
        // database they share, so the process ends at once (a crash, as far as PGlite's files go).
        { onLost: (why) => {
          logger.fatal({ why, dataDir: config.dataDir }, 'the data directory lock can no longer be trusted; stopping at once');
          process.exit(1);
        } },
      );
    } catch (e) {
      if (!(e instanceof DataDirInUseError)) throw e;
      console.error(`twofold: ${e.message} (another Twofold server?); stop it first, or use another DATA_DIR`);
      process.exit(2);
    } finally {
      process.off('SIGTERM', stopWaiting);
      process.off('SIGINT', stopWaiting);
    }
    process.once('exit', releaseDataDir);
  }
  const db = await openDatabase(config);
  const applied = await migrate(db);
  if (applied.length) logger.info({ applied }, 'database migrated');
  const limiter = createLimiter(config, { logger });
  if (config.rateLimit.disabled) logger.warn('RATE_LIMIT_DISABLED=true: every per-IP and per-account limit is OFF. Use this for benchmarks only.');
  const devMailbox = config.devMailbox;
  const smtpWarning = noSmtpWarning(config);
  if (smtpWarning) logger.warn(smtpWarning);
  const metricsWarning = openMetricsWarning(config);
  if (metricsWarning) logger.warn(metricsWarning);
  // nodemailer is loaded only when mail really goes out over SMTP.
  const mailTransport = config.smtpUrl ? (await import('./mail/smtp-transport.ts')).createSmtpTransport(config) : createDevMailboxTransport(logger);
  let deps: Deps;
  try {
    // The server records its TOKEN_HASH_KEY as the deployment's when none is (CLI commands only compare).
    deps = await openDeps(config, db, logger, { limiter, mailTransport }, { tokenHashKey: 'record' });
  } catch (e) {
    // A bad or unreadable key is an operator's mistake, not a crash: one line naming it, no stack trace.
    console.error(`twofold: key error: ${(e as Error).message}`);
    process.exit(2);
  }
  const { keys, secretBox } = deps;
  const metrics = createMetrics();
  if (cluster.isWorker) shareWorkerMetrics(metrics.registry);
  const app = await buildApp(deps, { devMailbox, metrics });
  const inFlight = trackInFlight(app);
  const metricsApp = config.metricsPort === undefined ? undefined : await buildMetricsApp(config, metrics, logger);
  // Events for other services ride the same outbox worker: webhooks always, RabbitMQ with EVENTS_AMQP_URL.
  const lanes: OutboxLane[] = [webhookLane({ db, clock: systemClock, logger, secretBox, config })];
  const amqp = config.eventsAmqp.url ? await startAmqp(deps, config.eventsAmqp.url, config, logger) : undefined;
  if (amqp) lanes.push(amqpLane({ db, clock: systemClock, logger, config, publisher: amqp.publisher }));
  const worker = new OutboxWorker({ db, clock: systemClock, transport: mailTransport, logger, config, keepBodies: devMailbox, lanes });
  // An event this instance commits goes out at once (under a stream, with the next run, at most 200 ms later), not at the next poll.
  const stopWakingWorker = onEventsQueued(() => worker.kick());
  const stopKeyJob = startKeyJob({ deps, ring: keys.ring });
  const stopAuditJob = startAuditRetentionJob(deps);

  let closing = false;
  async function shutdown(signal: string): Promise<void> {
    if (closing) return;
    closing = true;
    logger.info({ signal }, 'shutting down');
    // Stop taking requests first, then let the worker finish the mail it holds, then close resources.
    await closeHttp(app, config.requestTimeoutSeconds * 1000, logger).catch((err: unknown) => logger.error({ err }, 'closing http server failed'));
    // Handlers of requests whose clients left are still running: let them finish with the database open.
    const left = await inFlight.drain(15_000);
    if (left) logger.warn({ requests: left }, 'shutting down with request handlers still running');
    if (metricsApp) await closeHttp(metricsApp, config.requestTimeoutSeconds * 1000, logger).catch((err: unknown) => logger.error({ err }, 'closing metrics server failed'));
    stopKeyJob();
    stopAuditJob();
    stopWakingWorker();
    await worker.stop().catch((err: unknown) => logger.error({ err }, 'stopping outbox worker failed'));
    await amqp?.close();
    await Promise.allSettled([limiter.close(), mailTransport.close(), closePasswordChecker()]);
    await db.close().catch((err: unknown) => logger.error({ err }, 'closing database failed'));
    releaseDataDir();
    process.exit(0);
  }
  // `on`, not `once`: shutdown ignores repeats, and a second signal (Ctrl-C reaching both the cluster
  // primary's forwarding and the worker itself, systemd signalling the whole group) must not meet
  // Node's default handler, which killed a worker in the middle of its graceful stop.
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  await app.listen({ port: config.port, host: config.host });
  if (metricsApp) await metricsApp.listen({ port: config.metricsPort, host: config.host });
  worker.start();
  logger.info(
    { url: config.publicUrl, database: db.kind, mail: mailTransport.name, limiter: config.rateLimit.disabled ? 'disabled' : config.redisUrl ? 'redis' : 'memory', kid: await keys.currentKid() },
    `Twofold listening on http://${config.host}:${config.port}` + (devMailbox ? ` (development mailbox: ${config.publicUrl}/dev/mailbox)` : ''),
  );
  if (config.webauthn.origin !== config.publicOrigin || isIP(config.host.replace(/^\[|\]$/g, ''))) {
    // The address above is an IP, where browsers refuse passkeys: name the one where they work.
    logger.info({ origin: config.webauthn.origin, rpId: config.webauthn.rpId }, `Open ${config.webauthn.origin} in a browser: passkeys work only at that address (browsers refuse them on an IP address)`);
  }
}

/**
 * `app.close()`, bounded. It waits for the requests of every open connection to be answered, and once
 * the server is closed Node no longer enforces REQUEST_TIMEOUT: a client trickling its body a byte at
 * a time held the shutdown open for as long as it liked. A connection still open REQUEST_TIMEOUT after
 * the signal (all the time any request has to arrive) is closed; a handler still running for it is
 * then waited for like that of any client that hung up (the drain).
 */
async function closeHttp(app: FastifyInstance, graceMs: number, logger: Logger): Promise<void> {
  const timer = setTimeout(() => {
    logger.warn({ graceMs }, 'closing connections still open after REQUEST_TIMEOUT of shutting down');
    app.server.closeAllConnections();
  }, graceMs);
  try {
    await app.close();
  } finally {
    clearTimeout(timer);
  }
}

/** The RabbitMQ side of the events: the publisher the outbox worker uses, and the introspection queue's consumer. */
async function startAmqp(deps: Deps, url: string, config: Config, logger: Logger) {
  const { AmqpEventPublisher } = await import('./amqp/publisher.ts');
  const { IntrospectionResponder } = await import('./amqp/introspection.ts');
  const publisher = new AmqpEventPublisher(url, config.eventsAmqp.exchange, logger);
  const responder = new IntrospectionResponder(deps, url, config.eventsAmqp.introspectQueue, logger, config.eventsAmqp.replyQueues);
  await responder.start();
  return {
    publisher,
    async close() {
      await Promise.allSettled([responder.stop(), publisher.close()]);
    },
  };
}
