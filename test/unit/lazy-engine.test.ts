import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LazyEngine, type Engine } from '../../src/oidc/engine.ts';

const built = { provider: {}, signingKey: {}, callback: () => undefined } as unknown as Engine;

test('a failed build is shared by the callers waiting on it, and the next caller builds again', async () => {
  let calls = 0;
  const engine = new LazyEngine(async () => {
    calls++;
    await new Promise((r) => setTimeout(r, 5));
    if (calls === 1) throw new Error('database unavailable');
    return built;
  });
  const first = await Promise.allSettled(Array.from({ length: 10 }, () => engine.get()));
  assert.deepEqual(first.map((r) => r.status), Array(10).fill('rejected'));
  assert.equal(engine.loaded, false);
  const second = await Promise.all(Array.from({ length: 10 }, () => engine.get()));
  assert.ok(second.every((e) => e === built));
  assert.equal(engine.loaded, true);
  assert.equal(calls, 2);
  assert.equal(engine.builds, 2);
});
