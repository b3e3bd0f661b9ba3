import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { calculateJwkThumbprint, decodeProtectedHeader } from 'jose';
import { KeyStore, TokenError, generateRsaPem } from '../../src/crypto/jwt.ts';
import { PasswordHasher } from '../../src/crypto/password.ts';
import { normalizeBackupCode, randomBackupCode, randomDigits } from '../../src/crypto/random.ts';
import { SecretBox, parseEncryptionKeys } from '../../src/crypto/secret-box.ts';
import { TokenHasher, safeEqual } from '../../src/crypto/token-hash.ts';

test('SecretBox seals with a fresh nonce, opens, and refuses tampering', () => {
  const box = new SecretBox([{ kid: 'k1', key: randomBytes(32) }]);
  const a = box.seal('JBSWY3DPEHPK3PXP');
  const b = box.seal('JBSWY3DPEHPK3PXP');
  assert.notEqual(a, b);
  assert.ok(!a.includes('JBSWY3DPEHPK3PXP'));
  assert.equal(box.open(a), 'JBSWY3DPEHPK3PXP');
  const parts = a.split('.');
  const ct = Buffer.from(parts[3]!, 'base64url');
  ct[0]! ^= 1;
  assert.throws(() => box.open([parts[0], parts[1], parts[2], ct.toString('base64url')].join('.')));
  assert.throws(() => box.open(a.replace('.k1.', '.k2.')), /no encryption key/);
});

test('SecretBox key rotation: new key seals, old sealed values still open and need a reseal', () => {
  const oldKey = { kid: 'old', key: randomBytes(32) };
  const sealedOld = new SecretBox([oldKey]).seal('secret');
  const rotated = new SecretBox([{ kid: 'new', key: randomBytes(32) }, oldKey]);
  assert.equal(rotated.open(sealedOld), 'secret');
  assert.ok(rotated.needsReseal(sealedOld));
  assert.ok(!rotated.needsReseal(rotated.seal('secret')));
});

test('parseEncryptionKeys reads kid:key lists and bare keys, refusing wrong sizes', () => {
  const k = randomBytes(32).toString('base64');
  assert.deepEqual(parseEncryptionKeys(`a:${k},b:${k}`).map((x) => x.kid), ['a', 'b']);
  assert.match(parseEncryptionKeys(k)[0]!.kid, /^[0-9a-f]{8}$/);
  assert.throws(() => parseEncryptionKeys('a:c2hvcnQ='), /32 bytes/);
});

test('TokenHasher separates purposes and keys', () => {
  const h = new TokenHasher(randomBytes(32));
  assert.equal(h.hash('p', 'v'), h.hash('p', 'v'));
  assert.notEqual(h.hash('p', 'v'), h.hash('q', 'v'));
  assert.notEqual(h.hash('p', 'v'), new TokenHasher(randomBytes(32)).hash('p', 'v'));
  assert.ok(safeEqual('abc', 'abc'));
  assert.ok(!safeEqual('abc', 'abd'));
  assert.ok(!safeEqual('abc', 'abcd'));
});

test('random codes: digits, backup codes of 60 bits in a readable alphabet', () => {
  assert.match(randomDigits(6), /^\d{6}$/);
  const codes = new Set(Array.from({ length: 200 }, randomBackupCode));
  assert.equal(codes.size, 200);
  for (const c of codes) assert.match(c, /^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$/);
  assert.equal(normalizeBackupCode('abcd-efgh-ij0o'), 'ABCDEFGH1J00');
});

test('PasswordHasher: argon2id with the configured parameters, rehash detection, dummy verify', async () => {
  const hasher = new PasswordHasher({ memoryKib: 1024, iterations: 1, parallelism: 1 });
  const phc = await hasher.hash('correct horse');
  assert.match(phc, /^\$argon2id\$v=19\$m=1024,t=1,p=1\$/);
  assert.ok(await hasher.verify(phc, 'correct horse'));
  assert.ok(!(await hasher.verify(phc, 'correct horsE')));
  assert.ok(!(await hasher.verify('garbage', 'x')));
  assert.ok(!hasher.needsRehash(phc));
  assert.ok(new PasswordHasher({ memoryKib: 19456, iterations: 2, parallelism: 1 }).needsRehash(phc));
  assert.ok(hasher.needsRehash('$2b$10$abcdefghijklmnopqrstuv'));
  assert.equal(await hasher.verifyDummy('anything'), false);
});

test('KeyStore: kid is the RFC 7638 thumbprint; tokens verify only as their own type', async () => {
  const keys = await KeyStore.fromPem(await generateRsaPem(), 'https://issuer.example', 'aud');
  const jwk = (await keys.jwks()).keys[0]!;
  const kid = await keys.currentKid();
  assert.equal(kid, await calculateJwkThumbprint({ kty: jwk.kty!, n: jwk.n!, e: jwk.e! }, 'sha256'));
  const now = new Date('2030-01-01T00:00:00Z');
  const iat = Math.floor(now.getTime() / 1000);
  const token = await keys.sign('refresh', { sub: 'u', iat, exp: iat + 60, jti: 'j', sid: 's' });
  assert.deepEqual(decodeProtectedHeader(token), { alg: 'RS256', typ: 'refresh+jwt', kid });
  assert.equal((await keys.verify('refresh', token, now)).sid, 's');
  await assert.rejects(keys.verify('access', token, now), TokenError);
  // The verified-token cache must not let a token outlive its expiry or change type.
  await assert.rejects(keys.verify('refresh', token, new Date(now.getTime() + 61_000)), TokenError);
  await assert.rejects(keys.verify('access', token, now), TokenError);
});

test('KeyStore refuses short or non-RSA keys', async () => {
  const { generateKeyPairSync } = await import('node:crypto');
  const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  await assert.rejects(KeyStore.fromPem(small, 'i', 'a'), /at least 2048/);
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  await assert.rejects(KeyStore.fromPem(ec, 'i', 'a'), /RSA/);
});
