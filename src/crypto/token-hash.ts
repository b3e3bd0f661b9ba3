/**
 * Digests of tokens and codes for storage. HMAC-SHA256 under a server key rather than a bare hash:
 * a 6-digit code or a 60-bit backup code would fall to an offline brute force of a leaked table,
 * but not without the key. Lookups are by digest equality, so no secret comparison happens in JS.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

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

/** Constant-time comparison of two strings (false when lengths differ). */
export function safeEqual(a: string, b: string): boolean {
  const ba = Buffer.from(a);
  const bb = Buffer.from(b);
  return ba.length === bb.length && timingSafeEqual(ba, bb);
}
