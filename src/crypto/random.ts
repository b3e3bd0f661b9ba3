/** Random values from the CSPRNG only (crypto.randomBytes / randomInt). */
import { randomBytes, randomInt } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';

/** A URL-safe token carrying `bytes` random bytes (default 32 = 256 bits). */
export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/** `length` uniformly random decimal digits (randomInt avoids modulo bias). */
export function randomDigits(length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += String(randomInt(10));
  return out;
}

/** Crockford base32 without I, L, O, U: easy to read aloud and type. */
const BACKUP_ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** A backup code of 12 Crockford base32 characters (60 bits), shown as `XXXX-XXXX-XXXX`. */
export function randomBackupCode(): string {
  let s = '';
  for (let i = 0; i < 12; i++) s += BACKUP_ALPHABET[randomInt(32)];
  return `${s.slice(0, 4)}-${s.slice(4, 8)}-${s.slice(8)}`;
}

/** Normalises a typed backup code: case, spaces, dashes, and the look-alikes O→0, I/L→1. */
export function normalizeBackupCode(input: string): string {
  return input.toUpperCase().replace(/[\s-]/g, '').replace(/O/g, '0').replace(/[IL]/g, '1');
}

/** A uuid in its canonical 8-4-4-4-12 hex text (either case): what a uuid column and the `Uuid` schema take. */
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for a canonical uuid: anything else must not reach a uuid column (PostgreSQL refuses it: a 500). */
export function isUuid(v: unknown): v is string {
  return typeof v === 'string' && UUID_PATTERN.test(v);
}

/** A time-ordered UUID v7 for primary keys (index-friendly, no information beyond creation time). */
export function newId(): string {
  return uuidv7();
}
