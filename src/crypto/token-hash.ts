/**
 * Digests of tokens and codes for storage. HMAC-SHA256 under a server key rather than a bare hash:
 * a 6-digit code or a 60-bit backup code would fall to an offline brute force of a leaked table,
 * but not without the key. Lookups are by digest equality, so no secret comparison happens in JS.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** Hashes values under one key. */
export class TokenHasher {
  readonly #key: Buffer;
  constructor(key: Buffer) {
    if (key.length < 32) throw new Error('token hash key must be at least 32 bytes');
    this.#key = key;
  }

  /** Hex HMAC-SHA256 of `value` with a purpose label, so one digest never matches another kind. */
  hash(purpose: string, value: string): string {
    return createHmac('sha256', this.#key).update(purpose).update('\0').update(value).digest('hex');
  }
}

/**
 * Constant-time equality of two secrets of any lengths: their SHA-256 digests are compared, so neither
 * the content nor the length of the expected secret leaks through timing.
 */
export function safeEqual(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}
