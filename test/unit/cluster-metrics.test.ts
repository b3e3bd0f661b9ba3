/**
 * The cluster's metrics gathering (src/http/cluster-metrics.ts) in a real cluster of its own
 * (test/helpers/cluster-metrics-fixture.ts): a worker that asks and dies before the answer must not
 * take the primary down (a send on its closed channel raised an unhandled error), and a worker still
 * starting must not make the gathering fail (it answers with nothing yet).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT } from '../helpers/root.ts';

const FIXTURE = import.meta.url.endsWith('.js')
  ? [join(ROOT, '.test-build/test/helpers/cluster-metrics-fixture.js')]
  : ['--import', 'tsx', join(ROOT, 'test/helpers/cluster-metrics-fixture.ts')];

test('a worker dying with its metrics request pending leaves the primary up; a starting worker does not fail the gathering', async () => {
  const child = spawn(process.execPath, FIXTURE, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((done) => child.once('exit', (c) => done(c)));
  const events = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { event: string; code?: number; hasCounter?: boolean });
  assert.deepEqual(events.map((e) => e.event), ['asker-exited', 'answered', 'primary-exit'], out);
  assert.equal(events[1]!.hasCounter, true, 'the live worker\'s counter is in the gathered text');
  assert.equal(code, 0, out);
});
