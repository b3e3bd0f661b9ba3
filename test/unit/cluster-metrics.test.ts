/**
 * The cluster's metrics gathering (src/http/cluster-metrics.ts) in a real cluster of its own
 * (test/helpers/cluster-metrics-fixture.ts): a worker that asks and dies before the answer must not
 * take the primary down (a send on its closed channel raised an unhandled error), and a worker still
 * starting must not make the gathering fail (it answers with nothing yet). Then the primary's side in
 * process: one gathering for many asks, a short cache, nothing kept of a timed-out gathering.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { test } from 'node:test';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Counter, Registry } from 'prom-client';
import { GATHER, GATHERED, REQUEST, serveClusterMetrics, type ClusterLike } from '../../src/http/cluster-metrics.ts';
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

// ---- The primary's gathering, in process: a fake cluster whose workers the test answers for, and a
// clock the test moves (no waiting on real time).

type Message = { type: string; id: number; text?: string; error?: string; metrics?: unknown[] };

/** A worker as the primary sees it: records what is sent to it; `gone` makes sends fail as on a closed channel. */
class FakeWorker extends EventEmitter {
  sent: Message[] = [];
  gone = false;
  readonly registry = new Registry();
  readonly counter = new Counter({ name: 'fixture_requests_total', help: 'test', registers: [this.registry] });
  constructor(readonly id: number) {
    super();
  }
  isConnected(): boolean {
    return !this.gone;
  }
  send(m: Message, cb?: (err: Error | null) => void): boolean {
    if (this.gone) {
      process.nextTick(() => cb?.(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })));
      return false;
    }
    this.sent.push(m);
    this.emit('sent', m);
    process.nextTick(() => cb?.(null));
    return true;
  }
  /** The primary's requests to this worker for its own metrics. */
  gatherRequests(): Message[] {
    return this.sent.filter((m) => m.type === GATHER);
  }
}

function fakeCluster(count: number) {
  const c = new EventEmitter() as EventEmitter & { workers: Record<number, FakeWorker> };
  c.workers = {};
  for (let i = 1; i <= count; i++) c.workers[i] = new FakeWorker(i);
  const workers = Object.values(c.workers);
  workers.forEach((w, i) => w.counter.inc(i + 1));
  let now = Date.parse('2030-01-01T00:00:00Z');
  const clock = () => new Date(now);
  serveClusterMetrics({ cluster: c as unknown as ClusterLike, clock });
  let nextAsk = 0;
  return {
    cluster: c,
    workers,
    advance: (ms: number) => (now += ms),
    /** `asker` asks for the gathered metrics, as clusterMetricsText() does; resolves with the primary's answer. */
    ask(asker: FakeWorker): Promise<Message> {
      const id = ++nextAsk;
      const answered = new Promise<Message>((resolve) => {
        const on = (m: Message) => m.type === 'twofold:metrics-answer' && m.id === id && (asker.off('sent', on), resolve(m));
        asker.on('sent', on);
      });
      c.emit('message', asker, { type: REQUEST, id });
      return answered;
    },
    /** `w` replies to the primary's latest gathering request with its registry. */
    async reply(w: FakeWorker, metrics?: unknown[]): Promise<void> {
      const request = w.gatherRequests().at(-1)!;
      c.emit('message', w, { type: GATHERED, id: request.id, metrics: metrics ?? [await w.registry.getMetricsAsJSON()] });
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));
const total = (m: Message) => /^fixture_requests_total (\d+)$/m.exec(m.text ?? '')?.[1];

test('simultaneous asks share one gathering: each worker serialises its metrics once, every asker gets the sum', async () => {
  const f = fakeCluster(3);
  const answers = Array.from({ length: 30 }, (_, i) => f.ask(f.workers[i % 3]!));
  await tick();
  assert.deepEqual(f.workers.map((w) => w.gatherRequests().length), [1, 1, 1], 'one gathering request per worker for 30 asks');
  for (const w of f.workers) await f.reply(w);
  const all = await Promise.all(answers);
  assert.deepEqual(new Set(all.map(total)), new Set(['6']), 'every asker gets 1 + 2 + 3');
  assert.deepEqual(f.workers.map((w) => w.gatherRequests().length), [1, 1, 1]);
});

test('an ask within a second of the last gathering gets its text; one a second later gathers afresh', async () => {
  const f = fakeCluster(2);
  const first = f.ask(f.workers[0]!);
  await tick();
  for (const w of f.workers) await f.reply(w);
  assert.equal(total(await first), '3');

  f.workers[0]!.counter.inc(10);
  f.advance(999);
  const cached = await f.ask(f.workers[1]!);
  assert.equal(total(cached), '3', 'the cached text, not a new count');
  assert.deepEqual(f.workers.map((w) => w.gatherRequests().length), [1, 1], 'no new gathering within the window');

  f.advance(1);
  const fresh = f.ask(f.workers[1]!);
  await tick();
  assert.deepEqual(f.workers.map((w) => w.gatherRequests().length), [2, 2], 'a new gathering once the window is over');
  for (const w of f.workers) await f.reply(w);
  assert.equal(total(await fresh), '13');

  // A clock stepped back must not keep the text forever.
  f.advance(-60_000);
  f.ask(f.workers[0]!);
  await tick();
  assert.deepEqual(f.workers.map((w) => w.gatherRequests().length), [3, 3]);
});

test('a gathering that times out fails its askers, keeps nothing of the replies it got, and ignores late replies', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const gc = (v8.setFlagsFromString('--expose-gc'), runInNewContext('gc')) as () => void;
  const f = fakeCluster(2);
  const [quick, hung] = f.workers as [FakeWorker, FakeWorker];
  const asked = f.ask(quick);
  await tick();
  // The quick worker's reply, referenced weakly only: after the timeout nothing may hold it (prom-client's
  // own gathering kept it in its private map forever).
  const replied = await (async () => {
    const metrics = await quick.registry.getMetricsAsJSON();
    await f.reply(quick, [metrics]);
    return new WeakRef(metrics);
  })();
  t.mock.timers.tick(5_000);
  const answer = await asked;
  assert.match(answer.error ?? '', /did not all answer/);
  await tick();
  gc();
  assert.equal(replied.deref(), undefined, 'the timed-out gathering\'s replies were freed');

  // The hung worker's late reply to the dead gathering neither crashes nor joins the next one.
  await f.reply(hung);
  f.advance(1_000);
  const next = f.ask(quick);
  await tick();
  await f.reply(hung, [[]]);
  await tick();
  assert.deepEqual(f.workers.map((w) => w.gatherRequests().length), [2, 2]);
  await f.reply(quick);
  assert.equal(total(await next), '1', 'the new gathering waited for both replies to itself');
});

test('a worker that leaves mid-gathering, or whose channel is already closed, is not waited for', async () => {
  const f = fakeCluster(3);
  const [a, b, c] = f.workers as [FakeWorker, FakeWorker, FakeWorker];
  const asked = f.ask(a);
  await tick();
  await f.reply(a);
  // b's process exits: its reply will never come.
  b.gone = true;
  f.cluster.emit('disconnect', b);
  await f.reply(c);
  assert.equal(total(await asked), '4', 'a + c, answered without the 5 s timeout');

  // c's channel closes between isConnected() and the write (EPIPE reported to the send's callback).
  b.gone = false;
  f.advance(1_000);
  c.isConnected = () => true;
  c.gone = true;
  const again = f.ask(a);
  await tick();
  await f.reply(a);
  await f.reply(b);
  assert.equal(total(await again), '3', 'a + b');
});
