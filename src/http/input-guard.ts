/**
 * Input that no handler should ever see: NUL characters and lone UTF-16 surrogates (PostgreSQL refuses
 * both in text and jsonb, which surfaced as a 500 carrying the query's parameters in the error log) and
 * JSON nested deeper than any field of the contract (deep structures make recursive code — JSON.stringify,
 * jsonb — overflow). Checked once for body, query and path parameters, before validation: 400 `malformed_request`.
 */
import type { FastifyRequest } from 'fastify';
import { AppError } from '../errors.ts';

/** Deeper than the contract's deepest body (a sign-up `profile` with a few levels) and far below any stack limit. */
export const MAX_JSON_DEPTH = 32;

/** String.prototype.isWellFormed (ES2024, in Node 20; the compiler's lib is older). */
type WellFormed = { isWellFormed(): boolean };

function badString(s: string): boolean {
  // `isWellFormed` (Node 20) finds lone surrogates in one native pass.
  return s.includes('\u0000') || !(s as unknown as WellFormed).isWellFormed();
}

/** The first problem in `value`, or undefined. Iterative, so depth itself cannot overflow the stack. */
export function findBadInput(value: unknown): string | undefined {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (typeof v === 'string') {
      if (badString(v)) return 'contains a NUL character or an unpaired UTF-16 surrogate';
    } else if (v !== null && typeof v === 'object') {
      if (depth >= MAX_JSON_DEPTH) return `is nested deeper than ${MAX_JSON_DEPTH} levels`;
      for (const [k, child] of Object.entries(v)) {
        if (badString(k)) return 'contains a NUL character or an unpaired UTF-16 surrogate';
        stack.push([child, depth + 1]);
      }
    }
  }
  return undefined;
}

/** preValidation hook of the whole app. */
export async function guardInput(request: FastifyRequest): Promise<void> {
  for (const [part, value] of [['body', request.body], ['query', request.query], ['path', request.params]] as const) {
    const problem = findBadInput(value);
    if (problem) throw new AppError('malformed_request', { detail: `The request ${part} ${problem}.` });
  }
}
