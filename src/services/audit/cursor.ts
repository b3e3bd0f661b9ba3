/** Opaque keyset cursors: the position after the last item of a page, as base64url JSON. */
import { findBadInput } from '../../bad-input.ts';
import { validationError } from '../../errors.ts';

/** Parses a `limit` query value: 1 to `max`, `fallback` when absent; 422 otherwise. */
export function pageLimit(raw: string | undefined, fallback: number, max: number): number {
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > max) throw validationError('limit', `limit must be between 1 and ${max}.`);
  return n;
}

/**
 * Checks for what cursors carry. A cursor is client input like any other: a value the database
 * would refuse (a bigint out of range, a year PostgreSQL has no timestamp for; a NUL in text: see decodeCursor) must
 * be a 422 here, never a failed query (500).
 */
const BIGINT_MAX = 9223372036854775807n;

/** A positive id that fits PostgreSQL's bigint, as decimal digits. */
export function isBigintId(v: unknown): v is string {
  return typeof v === 'string' && /^\d{1,19}$/.test(v) && BigInt(v) <= BIGINT_MAX;
}

/**
 * An ISO 8601 time (from `YYYY-MM-DD`) whose instant is in years 1–9999 (UTC): JavaScript accepts years 0 and below and
 * PostgreSQL does not take them as timestamptz parameters. Undefined for anything else.
 */
export function parseIsoTime(v: unknown): Date | undefined {
  if (typeof v !== 'string' || v.startsWith('0000')) return undefined;
  const date = /^(\d{4})-(\d{2})-(\d{2})/.exec(v);
  if (!date) return undefined;
  // A day the calendar has: Date reads 2026-02-30 as 2 March, silently.
  const [y, m, d] = date.slice(1).map(Number) as [number, number, number];
  const day = new Date(Date.UTC(y, m - 1, d));
  if (day.getUTCMonth() !== m - 1 || day.getUTCDate() !== d) return undefined;
  const at = new Date(v);
  if (Number.isNaN(at.getTime())) return undefined;
  // The instant too: an offset moves 0001-01-01T00:00+00:01 into year 0, 9999-12-31T23:59-00:01 into 10000.
  const year = at.getUTCFullYear();
  return year >= 1 && year <= 9999 ? at : undefined;
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
  // What the cursor carries passes the same check as any other input (no NUL, no lone surrogate).
  if (findBadInput(value) !== undefined || !valid(value)) throw validationError('cursor', 'The cursor is not one this service handed out.');
  return value;
}
