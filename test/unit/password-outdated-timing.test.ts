/**
 * After the hash parameters are raised, a wrong password for an account not yet rehashed must not
 * answer sooner than one for an unknown name (a dummy check at today's cost): the hasher waits the
 * difference. Asserted on the waits it asks for (an injected sleep), never on the clock.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PasswordHasher } from '../../src/crypto/password.ts';

test('a wrong password for a hash with cheaper parameters waits up to today\'s cost; current hashes and right passwords wait nothing', async () => {
  const waits: number[] = [];
  const old = new PasswordHasher({ memoryKib: 1024, iterations: 1, parallelism: 1 });
  const oldHash = await old.hash('correct horse battery');
  // 256 times the work of the old parameters: an old verification would have to be held up by tens of
  // milliseconds (a busy machine) for the difference to vanish. Only whether a wait is asked for is
  // asserted, never its length (which is measured time).
  const today = new PasswordHasher({ memoryKib: 16384, iterations: 16, parallelism: 1 }, { sleep: async (ms) => void waits.push(ms) });
  const currentHash = await today.hash('correct horse battery');

  assert.equal(await today.check(currentHash, 'wrong horse'), false);
  assert.equal(await today.verifyDummy('wrong horse'), false);
  assert.deepEqual(waits, [], 'checks at today\'s cost wait nothing');

  assert.equal(await today.check(oldHash, 'wrong horse'), false);
  assert.equal(waits.length, 1);
  assert.ok(waits[0]! > 0, `waited ${waits[0]} ms`);

  // Two runs (the NFKC form, then the password as typed) are padded too.
  assert.equal(await today.check(oldHash, 'ｗｒｏｎｇ horse'), false);
  assert.equal(waits.length, 2);
  assert.ok(waits[1]! > 0, `waited ${waits[1]} ms`);

  assert.equal(await today.check(oldHash, 'correct horse battery'), 'current');
  assert.equal(waits.length, 2, 'the right password is not delayed (its login rehashes it)');
});
