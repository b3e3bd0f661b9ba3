import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateTotpSecret, matchTotpStep, totpCodeAt, totpStep, totpUri } from '../../src/crypto/totp.ts';

// RFC 6238 Appendix B, SHA-1 column: the seed is the ASCII string "12345678901234567890".
const RFC_SECRET = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';
const VECTORS: Array<[number, string]> = [
  [59, '94287082'],
  [1111111109, '07081804'],
  [1111111111, '14050471'],
  [1234567890, '89005924'],
  [2000000000, '69279037'],
  [20000000000, '65353130'],
];

test('RFC 6238 Appendix B test vectors (SHA-1, 8 digits)', () => {
  for (const [seconds, code] of VECTORS) assert.equal(totpCodeAt(RFC_SECRET, new Date(seconds * 1000), 8), code, `T=${seconds}`);
});

test('6-digit codes are the last six digits of the RFC values', () => {
  for (const [seconds, code] of VECTORS) assert.equal(totpCodeAt(RFC_SECRET, new Date(seconds * 1000)), code.slice(2));
});

test('matchTotpStep accepts ±1 step and returns the step the code belongs to', () => {
  const now = new Date(1111111111 * 1000);
  const step = totpStep(now);
  assert.equal(matchTotpStep(RFC_SECRET, totpCodeAt(RFC_SECRET, now), now), step);
  assert.equal(matchTotpStep(RFC_SECRET, totpCodeAt(RFC_SECRET, new Date(now.getTime() - 30_000)), now), step - 1);
  assert.equal(matchTotpStep(RFC_SECRET, totpCodeAt(RFC_SECRET, new Date(now.getTime() + 30_000)), now), step + 1);
  assert.equal(matchTotpStep(RFC_SECRET, totpCodeAt(RFC_SECRET, new Date(now.getTime() + 60_000)), now), null);
  assert.equal(matchTotpStep(RFC_SECRET, '12345', now), null, 'wrong length');
  assert.equal(matchTotpStep(RFC_SECRET, '12a456', now), null, 'not digits');
});

test('secrets are fresh 160-bit base32 values', () => {
  const a = generateTotpSecret();
  const b = generateTotpSecret();
  assert.match(a, /^[A-Z2-7]{32}$/);
  assert.notEqual(a, b);
});

test('the otpauth URI has the contract layout and escapes the label', () => {
  assert.equal(totpUri('Twofold', 'alice', RFC_SECRET), `otpauth://totp/Twofold:alice?secret=${RFC_SECRET}&issuer=Twofold&algorithm=SHA1&digits=6&period=30`);
  assert.equal(totpUri('My Co', 'a.b', 'X'), 'otpauth://totp/My%20Co:a.b?secret=X&issuer=My%20Co&algorithm=SHA1&digits=6&period=30');
});
