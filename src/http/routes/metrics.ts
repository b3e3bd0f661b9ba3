/**
 * GET /metrics (Prometheus text format), optionally behind `Authorization: Bearer <METRICS_TOKEN>`.
 * Served by the main app, or — with METRICS_PORT — only by a separate listener that can stay inside
 * the cluster network while the main port faces the Internet.
 */
import cluster from 'node:cluster';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { Config } from '../../config.ts';
import { safeEqual } from '../../crypto/token-hash.ts';
import { AppError } from '../../errors.ts';
import { clusterMetricsText } from '../cluster-metrics.ts';
import type { Metrics } from '../metrics.ts';
import { bearerToken } from '../plugins/auth.ts';
import { clientErrorHandler, frameworkErrors, requestTimeoutOptions } from '../framework-errors.ts';
import { installErrorHandling } from '../problem.ts';
import { problems } from '../schemas.ts';

export async function metricsRoutes(app: FastifyInstance, { config, metrics }: { config: Config; metrics: Metrics }): Promise<void> {
  app.get('/metrics', {
    schema: {
      tags: ['Service'],
      operationId: 'getMetrics',
      summary: 'Prometheus metrics (text format)',
      description: 'With METRICS_TOKEN set, only for `Authorization: Bearer <METRICS_TOKEN>` (401 otherwise). With METRICS_PORT set, served on that port only.',
      ...(config.metricsToken ? { security: [{ bearerAuth: [] }] } : {}),
      response: { 200: { description: 'Prometheus exposition format', content: { 'text/plain': { schema: Type.String() } } }, ...problems({ 401: ['authentication_required'], 503: ['service_unavailable'] }) },
    },
    // Per-route metrics reveal traffic, routes and error rates: an operator can keep them private.
    onRequest: async (request) => {
      if (config.metricsToken === undefined) return;
      const presented = bearerToken(request);
      if (presented === undefined || !safeEqual(presented, config.metricsToken)) {
        throw new AppError('authentication_required', { detail: 'Send the METRICS_TOKEN as Bearer token.', headers: { 'WWW-Authenticate': 'Bearer' } });
      }
    },
  }, async (_request, reply) => {
    reply.type(metrics.registry.contentType);
    if (!cluster.isWorker) return metrics.registry.metrics();
    // Several workers share the port: the answer covers all of them (cluster-metrics.ts).
    try {
      return await clusterMetricsText();
    } catch (err) {
      throw new AppError('service_unavailable', { detail: 'The workers\' metrics could not be gathered; try again.', cause: err });
    }
  });
}

/**
 * The start-up warning of a production instance that serves /metrics to anyone who reaches its
 * public port: per-route counts reveal traffic, routes and error rates (failed logins included).
 */
export function openMetricsWarning(config: Pick<Config, 'env' | 'metricsToken' | 'metricsPort'>): string | undefined {
  if (config.env !== 'production' || config.metricsToken !== undefined || config.metricsPort !== undefined) return undefined;
  return '/metrics is open on the public port to anyone who can reach it: set METRICS_TOKEN (scrapers send it as Bearer token) or METRICS_PORT (a listener you keep inside your network)';
}

/** The separate listener of METRICS_PORT: /metrics and nothing else. */
export async function buildMetricsApp(config: Config, metrics: Metrics, logger: FastifyBaseLogger): Promise<FastifyInstance> {
  const app = Fastify({ loggerInstance: logger, frameworkErrors: frameworkErrors(), clientErrorHandler, ...requestTimeoutOptions(config.requestTimeoutSeconds) });
  installErrorHandling(app);
  await app.register(metricsRoutes, { config, metrics });
  return app;
}
