/**
 * The password-strength scorer's worker thread ends after idling and starts again on the next check.
 * A check arriving while the idle worker was being terminated started a new worker, and the old
 * one's exit then failed every pending check, the new worker's included: that sign-up answered 500
 * (a CI run met it once in six hundred tests).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { checkPassword, closePasswordChecker } from '../../src/security/password-policy.ts';

test('checks started while the previous worker is being ended are answered by the new one', async (t) => {
  t.after(() => closePasswordChecker());
  // The worker does not keep a process alive (a server's socket does); this test's timer does.
  const alive = setInterval(() => {}, 1000);
  t.after(() => clearInterval(alive));
  const config = loadConfig({ NODE_ENV: 'test' });
  assert.deepEqual(await checkPassword(config, 'correct horse battery staple', {}), []);
  for (let round = 0; round < 5; round++) {
    // What the idle timer does: end the worker; checks come in before it has exited.
    const ending = closePasswordChecker();
    const checks = await Promise.all([
      checkPassword(config, 'correct horse battery staple', {}),
      checkPassword(config, 'password123', {}),
    ]);
    await ending;
    assert.deepEqual(checks[0], [], `round ${round}: a strong passphrase passes`);
    assert.equal(checks[1]!.length, 1, `round ${round}: a common password is refused`);
  }
});
