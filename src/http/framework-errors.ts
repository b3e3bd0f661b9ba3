/**
 * Answers for requests refused before any route, hook or error handler runs, as problem documents
 * like every other refusal (Fastify's own answers are its JSON, and for a bad URL they echo it back).
 */
import type { Socket } from 'node:net';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { FastifyHttpOptions, FastifyInstance, FastifyRequest, FastifyServerOptions } from 'fastify';
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

/** What Node's HTTP parser refused, as status and detail (413 is payload_too_large, the rest malformed_request). */
function refusal(code: string | undefined): { status: number; reason: string; detail: string } {
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return { status: 408, reason: 'Request Timeout', detail: 'The request was not completed in time.' };
  if (code === 'HPE_HEADER_OVERFLOW') return { status: 431, reason: 'Request Header Fields Too Large', detail: 'The request headers are too large.' };
  if (code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW') return { status: 413, reason: 'Payload Too Large', detail: 'The request body\'s chunk extensions are too large.' };
  return { status: 400, reason: 'Bad Request', detail: 'The request is not valid HTTP.' };
}

/**
 * Fastify's server options for slow clients: a request (headers and body) must arrive within
 * REQUEST_TIMEOUT, or the connection gets 408 (through {@link clientErrorHandler}) and is closed.
 * Fastify's default is no limit at all, which lets a client trickling a header byte by byte hold a
 * connection (and its memory) forever. Node checks the open connections every
 * `connectionsCheckingInterval`: half the limit, at most its own default of 30 s.
 *
 * The limits go to Node's server when it is created (`http`): Fastify sets `requestTimeout` only
 * afterwards, when Node has already fixed `headersTimeout` at its 60 s default, and Node's check
 * then let a body trickle for those 60 s whatever REQUEST_TIMEOUT said. `headersTimeout` is the
 * same limit (Node refuses one longer than `requestTimeout`).
 */
export function requestTimeoutOptions(timeoutSeconds: number): Pick<FastifyHttpOptions<Server>, 'requestTimeout' | 'http'> {
  const ms = timeoutSeconds * 1000;
  return { requestTimeout: ms, http: { requestTimeout: ms, headersTimeout: ms, connectionsCheckingInterval: Math.min(30_000, timeoutSeconds * 500) } };
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
  // Not while an earlier (pipelined) request's answer is being written: this one would land inside it.
  const answering = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (socket.writable && !answering?.headersSent) {
    const body = JSON.stringify(problemBody(status === 413 ? 'payload_too_large' : 'malformed_request', status, detail));
    socket.write(
      `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/problem+json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
        `cache-control: no-store\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}

/**
 * The app's Node server options: {@link requestTimeoutOptions}, and no Host check of Node's own.
 * Node answered an HTTP/1.1 request without Host with a bare 400 (no problem document, no headers);
 * {@link requireHost} refuses it instead.
 */
export function appServerOptions(timeoutSeconds: number): ReturnType<typeof requestTimeoutOptions> {
  const options = requestTimeoutOptions(timeoutSeconds);
  return { ...options, http: { ...options.http, requireHostHeader: false } };
}

/**
 * onRequest hook of the whole app: an HTTP/1.1 request must name its Host (RFC 9112 §3.2), and one
 * that does not is 400 malformed_request, as Node answered it before (in its own words) when it checked.
 * HTTP/1.0 clients may leave it out.
 */
export async function requireHost(request: FastifyRequest): Promise<void> {
  if (request.raw.httpVersion === '1.1' && request.raw.headers.host === undefined) {
    throw new AppError('malformed_request', { detail: 'An HTTP/1.1 request must carry a Host header.' });
  }
}

/**
 * Node's 'checkExpectation' listener: a request whose Expect header is not `100-continue` (RFC 9110
 * §10.1.1 lets a server refuse any other with 417). Node's own answer was a bare 417; this is a problem
 * document. No route or hook runs for it, so the security headers and no-store are set here, and the
 * connection is closed: the client may still send the body it held back.
 */
export function expectationFailed(securityHeaders: HeaderSetter = {}): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    securityHeaders.set?.(req, res);
    const body = JSON.stringify(problemBody('expectation_failed', 417, 'The only expectation this server meets is 100-continue.'));
    res.writeHead(417, {
      'content-type': 'application/problem+json',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      connection: 'close',
    });
    res.end(body);
  };
}
