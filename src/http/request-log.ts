/**
 * One access-log line per request, at `debug` (LOG_LEVEL=debug), never at `info`: Fastify's own two
 * lines per request at info would bury the events an operator watches and cost throughput. The URL is
 * logged without its query string (e-mailed links carry tokens there).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';

export async function logRequest(request: FastifyRequest, reply: FastifyReply): Promise<void> {
  request.log.debug(
    { method: request.method, url: request.url.split('?')[0], statusCode: reply.statusCode, ms: Math.round(reply.elapsedTime), ip: request.ip },
    'request completed',
  );
}
