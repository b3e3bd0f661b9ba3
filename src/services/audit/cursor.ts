/** Opaque keyset cursors: the position after the last item of a page, as base64url JSON. */
import { validationError } from '../../errors.ts';

/** Parses a `limit` query value: 1 to `max`, `fallback` when absent; 422 otherwise. */
export function pageLimit(raw: string | undefined, fallback: number, max: number): number {
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > max) throw validationError('limit', `limit must be between 1 and ${max}.`);
  return n;
}

/** Encodes a cursor; clients pass it back unchanged. */
export function encodeCursor(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

/** Decodes a cursor and checks it with `valid`; 422 validation_failed (field `cursor`) for anything else. */
export function decodeCursor<T>(cursor: string, valid: (v: unknown) => v is T): T {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    value = undefined;
  }
  if (!valid(value)) throw validationError('cursor', 'The cursor is not one this service handed out.');
  return value;
}
