/**
 * Input that no handler should ever see: NUL characters and lone UTF-16 surrogates (PostgreSQL refuses
 * both in text and jsonb, which surfaced as a 500 carrying the query's parameters in the error log) and
 * JSON nested deeper than any field of the contract (deep structures make recursive code — JSON.stringify,
 * jsonb — overflow). Checked once for body, query and path parameters, before validation: 400 `malformed_request`.
 */
import type { FastifyRequest } from 'fastify';
import { AppError } from '../errors.ts';
import { findBadInput } from '../bad-input.ts';

/** preValidation hook of the whole app. */
export async function guardInput(request: FastifyRequest): Promise<void> {
  for (const [part, value] of [['body', request.body], ['query', request.query], ['path', request.params]] as const) {
    const problem = findBadInput(value);
    if (problem) throw new AppError('malformed_request', { detail: `The request ${part} ${problem}.` });
  }
}
