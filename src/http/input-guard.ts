/**
 * Input that no handler should ever see: NUL characters and lone UTF-16 surrogates (PostgreSQL refuses
 * both in text and jsonb, which surfaced as a 500 carrying the query's parameters in the error log) and
 * JSON nested deeper than any field of the contract (deep structures make recursive code — JSON.stringify,
 * jsonb — overflow). 400 `malformed_request`.
 *
 * The query and path parameters are checked at onRequest, for every route: routes that hand their
 * request on before Fastify reads the body (the OpenID provider's) are covered too. Bodies are checked
 * at preValidation, once parsed; authentication comes before them (401 before any body problem).
 */
import type { FastifyRequest } from 'fastify';
import { AppError } from '../errors.ts';
import { findBadInput } from '../bad-input.ts';

function guard(parts: ReadonlyArray<readonly [string, unknown]>): void {
  for (const [part, value] of parts) {
    const problem = findBadInput(value);
    if (problem) throw new AppError('malformed_request', { detail: `The request ${part} ${problem}.` });
  }
}

/** onRequest hook of the whole app: the URL's query and path parameters. */
export async function guardUrlInput(request: FastifyRequest): Promise<void> {
  guard([['query', request.query], ['path', request.params]]);
}

/** preValidation hook of the whole app: the parsed body. */
export async function guardBodyInput(request: FastifyRequest): Promise<void> {
  guard([['body', request.body]]);
}
