/**
 * Answers for requests refused before any route, hook or error handler runs, as problem documents
 * like every other refusal (Fastify's own answers are its JSON, and for a bad URL they echo it back).
 */
import type { Socket } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { AppError } from '../errors.ts';
import { problemBody, sendProblem } from './problem.ts';

/** Sets the security headers on a raw response (installed later than the app is created). */
export type HeaderSetter = { set?: (req: IncomingMessage, res: ServerResponse) => void };

/**
 * Fastify's `frameworkErrors`: a path the router cannot decode (`%zz`, a cut `%E0%A4%A`) or an
 * over-long parameter. No hook runs for these answers, so the security headers and no-store are set here.
 */
export function frameworkErrors(securityHeaders: HeaderSetter = {}): NonNullable<FastifyServerOptions['frameworkErrors']> {
  return (error, request, reply) => {
    securityHeaders.set?.(request.raw, reply.raw);
    reply.header('cache-control', 'no-store');
    const tooLong = error.code === 'FST_ERR_MAX_PARAM_LENGTH';
    void sendProblem(reply, new AppError(tooLong ? 'not_found' : 'malformed_request', { detail: tooLong ? 'No such resource.' : 'The URL is not validly percent-encoded.' }));
  };
}

/** What Node's HTTP parser refused, as status and detail (the code is malformed_request for all). */
function refusal(code: string | undefined): { status: number; reason: string; detail: string } {
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return { status: 408, reason: 'Request Timeout', detail: 'The request was not completed in time.' };
  if (code === 'HPE_HEADER_OVERFLOW') return { status: 431, reason: 'Request Header Fields Too Large', detail: 'The request headers are too large.' };
  return { status: 400, reason: 'Bad Request', detail: 'The request is not valid HTTP.' };
}

/**
 * Fastify's `clientErrorHandler`: what Node's HTTP parser refuses before Fastify sees a request (a
 * broken request line or header, headers over the size limit, a request not finished in time). There
 * is no request or reply object for these, so the answer is written to the socket, as Node's own is,
 * and the connection closed. The error's raw bytes are never logged: they may hold credentials.
 */
export function clientErrorHandler(this: FastifyInstance, err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const { status, reason, detail } = refusal(err.code);
  this.log.debug({ code: err.code }, 'refused a request the HTTP parser could not read');
  if (socket.writable) {
    const body = JSON.stringify(problemBody('malformed_request', status, detail));
    socket.write(
      `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/problem+json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
        `cache-control: no-store\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}
