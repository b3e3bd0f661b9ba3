/**
 * Passkey decoys (src/services/passkeys/decoy.ts): the lists handed out for names without passkeys
 * must take the shapes real lists take (how many entries, how long their ids), stay the same per
 * name, and be known again at registration. Sampled under a random server key each run.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { TokenHasher } from '../../src/crypto/token-hash.ts';
import { DECOY_ID_LENGTHS, decoyCredentials, isDecoyCredentialId } from '../../src/services/passkeys/decoy.ts';

const SAMPLES = 4000;

/** The shape of a list: its ids' byte lengths, sorted (the order of a real list says nothing either). */
function shapeOf(list: Array<{ credential_id: string }>): string {
  return JSON.stringify(list.map((c) => Buffer.byteLength(c.credential_id, 'base64url')).sort((a, b) => a - b));
}

test('decoy lists take the shapes real ones do: mostly one entry, sometimes two or three, ids of common lengths', () => {
  const deps = { tokenHasher: new TokenHasher(randomBytes(32)) };
  const shapes = new Map<string, number>();
  const counts = [0, 0, 0, 0, 0];
  for (let i = 0; i < SAMPLES; i++) {
    const list = decoyCredentials(deps, i % 2 ? `someone_${i}` : `someone_${i}@example.com`);
    counts[list.length]! += 1;
    shapes.set(shapeOf(list), (shapes.get(shapeOf(list)) ?? 0) + 1);
  }
  // Expected 75 % / 18 % / 7 % (decoy.ts): bounds some 10 standard deviations wide, never hit by chance.
  assert.equal(counts[0], 0);
  assert.equal(counts[4], 0);
  assert.ok(counts[1]! > SAMPLES * 0.65 && counts[1]! < SAMPLES * 0.85, JSON.stringify(counts));
  assert.ok(counts[2]! > SAMPLES * 0.1 && counts[3]! > SAMPLES * 0.03, JSON.stringify(counts));
  const lengths = new Set(DECOY_ID_LENGTHS.map(([bytes]) => bytes));
  assert.deepEqual([...lengths].sort((a, b) => a - b), [16, 20, 32, 64]);
  for (const shape of shapes.keys()) for (const bytes of JSON.parse(shape) as number[]) assert.ok(lengths.has(bytes), shape);
  // The shapes of real users: one passkey of each common kind, an iPhone and a Windows PC, two password-manager passkeys.
  for (const real of ['[16]', '[20]', '[32]', '[64]', '[20,32]', '[16,16]', '[16,20,32]']) assert.ok(shapes.has(real), `${real} in ${[...shapes.keys()].join(' ')}`);
});

test('a decoy list is the same every time for a name (in any letter case), differs between names, and registration knows its ids', () => {
  const deps = { tokenHasher: new TokenHasher(randomBytes(32)) };
  const a = decoyCredentials(deps, 'Nobody_Here');
  assert.deepEqual(decoyCredentials(deps, ' nobody_here '), a);
  assert.notDeepEqual(decoyCredentials(deps, 'nobody_there'), a);
  // Another server key, other decoys: they are not guessable without it.
  assert.notDeepEqual(decoyCredentials({ tokenHasher: new TokenHasher(randomBytes(32)) }, 'Nobody_Here'), a);
  for (let i = 0; i < 200; i++) {
    for (const { credential_id: id } of decoyCredentials(deps, `name_${i}`)) {
      assert.ok(isDecoyCredentialId(deps, id), id);
      // One bit changed, or the same bytes under another server key: an ordinary id.
      const raw = Buffer.from(id, 'base64url');
      raw[0]! ^= 1;
      assert.equal(isDecoyCredentialId(deps, raw.toString('base64url')), false);
      assert.equal(isDecoyCredentialId({ tokenHasher: new TokenHasher(randomBytes(32)) }, id), false);
    }
  }
  for (const bytes of [16, 20, 32, 64, 65]) assert.equal(isDecoyCredentialId(deps, randomBytes(bytes).toString('base64url')), false);
});
