/**
 * The outbox and its worker on a real engine (PGlite; also PostgreSQL when DATABASE_URL is set).
 * Time is a movable clock: backoff and leases are checked by moving it, never by sleeping.
 */
import assert from 'node:assert/strict';
import { before, beforeEach, test } from 'node:test';
import { Writable } from 'node:stream';
import pino from 'pino';
import { loadConfig } from '../../src/config.ts';
import type { Database } from '../../src/db/database.ts';
import * as outbox from '../../src/db/repositories/outbox.ts';
import { backoffSeconds, OutboxWorker, type OutboxWorkerOptions } from '../../src/jobs/outbox-worker.ts';
import { enqueueMail } from '../../src/mail/outbox.ts';
import type { MailMessage, MailTransport } from '../../src/mail/types.ts';
import { withDatabases } from '../helpers/pg-database.ts';

const config = loadConfig({ NODE_ENV: 'test', PUBLIC_URL: 'https://auth.example.test' });
const START = new Date('2030-01-01T12:00:00.000Z');

/** A clock tests move by hand. */
function movableClock(start = START) {
  let now = start.getTime();
  return {
    clock: () => new Date(now),
    advance(seconds: number) {
      now += seconds * 1000;
    },
    set(d: Date) {
      now = d.getTime();
    },
  };
}

/** A transport that records what it was given and fails while `failing` is set. */
function recordingTransport(opts: { delayMs?: number } = {}) {
  const sent: MailMessage[] = [];
  const state = {
    failing: false,
    calls: 0,
    sent,
    transport: {
      name: 'recording',
      async send(m: MailMessage) {
        state.calls++;
        if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
        if (state.failing) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
        sent.push(m);
      },
      async close() {},
    } satisfies MailTransport,
  };
  return state;
}

/** A pino logger whose lines are kept for assertions. */
function capturingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

function newWorker(db: Database, clock: () => Date, transport: MailTransport, extra: Partial<OutboxWorkerOptions> = {}) {
  const { logger, lines } = capturingLogger();
  const worker = new OutboxWorker({ db, clock, transport, logger, config, ...extra });
  return { worker, lines };
}

async function queue(db: Database, clock: () => Date, to = 'alice@example.test') {
  return db.transaction((tx) =>
    enqueueMail(tx, { config, clock }, { kind: 'email_otp_login', to, data: { username: 'alice', code: '123456', expiresInMinutes: 10 } }),
  );
}

async function row(db: Database, id: string) {
  const r = await outbox.findById(db, id);
  assert.ok(r, `outbox row ${id} missing`);
  return r;
}

test('backoffSeconds: doubles from 2 s with ±20 % jitter, capped', () => {
  assert.equal(backoffSeconds(1, 300, () => 0), 1.6);
  assert.equal(backoffSeconds(1, 300, () => 0.5), 2);
  assert.ok(backoffSeconds(1, 300, () => 0.999999) < 2.4);
  assert.equal(backoffSeconds(3, 300, () => 0.5), 8);
  assert.equal(backoffSeconds(20, 300, () => 0), 300);
  assert.equal(backoffSeconds(5000, 300, () => 0.5), 300);
});

withDatabases('outbox', ({ kind, open }) => {
  let db: Database;
  let connectAgain: (poolSize?: number) => Promise<Database>;
  let t0: ReturnType<typeof movableClock>;

  // One database per suite (opening and migrating PGlite takes seconds); every test starts from an empty outbox.
  before(async () => {
    const d = await open();
    db = d.db;
    connectAgain = (n) => d.connectAgain(n);
  });
  beforeEach(async () => {
    await db.query('DELETE FROM outbox');
    t0 = movableClock();
  });

  test('enqueue in a transaction that rolls back queues nothing', async () => {
    await assert.rejects(
      db.transaction(async (tx) => {
        await enqueueMail(tx, { config, clock: t0.clock }, { kind: 'password_changed', to: 'a@example.test', data: { username: 'a' } });
        throw new Error('the change failed');
      }),
      /the change failed/,
    );
    assert.equal((await outbox.listRecent(db, 10)).length, 0);
    const rec = recordingTransport();
    assert.equal(await newWorker(db, t0.clock, rec.transport).worker.drain(), 0);
    assert.equal(rec.calls, 0);
  });

  test('a committed mail is stored rendered, due now, and delivered once by drain', async () => {
    const id = await queue(db, t0.clock);
    const r = await row(db, id);
    assert.equal(r.kind, 'email_otp_login');
    assert.equal(r.to_address, 'alice@example.test');
    assert.match(r.text_body, /\b123456\b/);
    assert.equal(r.created_at.getTime(), START.getTime());
    assert.equal(r.next_attempt_at.getTime(), START.getTime());
    assert.equal(r.attempts, 0);

    const rec = recordingTransport();
    const { worker } = newWorker(db, t0.clock, rec.transport);
    assert.equal(await worker.drain(), 1);
    assert.equal(rec.sent.length, 1);
    assert.equal(rec.sent[0]?.id, id);
    assert.equal(rec.sent[0]?.subject, r.subject);
    const after = await row(db, id);
    assert.equal(after.sent_at?.getTime(), START.getTime());
    assert.equal(after.locked_until, null);
    assert.equal(after.attempts, 1);

    t0.advance(3600);
    assert.equal(await worker.drain(), 0, 'a sent mail is never sent again');
    assert.equal(rec.calls, 1);
  });

  test('drain delivers a backlog larger than one batch, oldest first', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      ids.push(await queue(db, t0.clock, `u${i}@example.test`));
      t0.advance(1);
    }
    const rec = recordingTransport();
    const { worker } = newWorker(db, t0.clock, rec.transport, { batchSize: 5 });
    assert.equal(await worker.drain(), 12);
    assert.deepEqual(
      rec.sent.map((m) => m.id),
      ids,
    );
  });

  test('a failing transport schedules a retry with backoff, counts attempts, keeps the error, and gives up after maxAge', async () => {
    const id = await queue(db, t0.clock);
    const rec = recordingTransport();
    rec.failing = true;
    const { worker, lines } = newWorker(db, t0.clock, rec.transport);

    assert.equal(await worker.drain(), 0);
    let r = await row(db, id);
    assert.equal(r.attempts, 1);
    assert.equal(r.locked_until, null, 'the lease is released at once');
    assert.equal(r.sent_at, null);
    assert.equal(r.failed_at, null);
    assert.match(r.last_error ?? '', /ECONNREFUSED/);
    let wait = (r.next_attempt_at.getTime() - t0.clock().getTime()) / 1000;
    assert.ok(wait >= 1.6 && wait <= 2.4, `first retry after ~2 s, got ${wait}`);
    assert.ok(lines.some((l) => l.level === 40 && l.mailId === id), 'a warning is logged');

    // Not due yet: nothing is attempted.
    t0.advance(1);
    assert.equal(await worker.drain(), 0);
    assert.equal(rec.calls, 1);

    // Each retry waits about twice as long, never more than maxBackoffSeconds.
    let previous = wait;
    for (let attempt = 2; attempt <= 12; attempt++) {
      t0.set(r.next_attempt_at);
      assert.equal(await worker.drain(), 0);
      r = await row(db, id);
      assert.equal(r.attempts, attempt);
      wait = (r.next_attempt_at.getTime() - t0.clock().getTime()) / 1000;
      assert.ok(wait <= config.outbox.maxBackoffSeconds, `attempt ${attempt}: ${wait} s over the cap`);
      assert.ok(wait >= Math.min(0.8 * 2 ** attempt, config.outbox.maxBackoffSeconds), `attempt ${attempt}: ${wait} s too short`);
      if (2 ** attempt * 1.2 < config.outbox.maxBackoffSeconds) assert.ok(wait > previous, 'backoff grows');
      previous = wait;
    }
    assert.equal(rec.calls, 12);
    assert.equal(r.failed_at, null);

    // Past maxAge, the next failure gives up for good and says so in an error line.
    t0.set(new Date(START.getTime() + config.outbox.maxAgeSeconds * 1000));
    assert.equal(await worker.drain(), 0);
    r = await row(db, id);
    assert.equal(r.failed_at?.getTime(), t0.clock().getTime());
    assert.equal(r.sent_at, null);
    assert.match(r.last_error ?? '', /ECONNREFUSED/);
    assert.ok(lines.some((l) => l.level === 50 && l.mailId === id && /giving up/.test(String(l.msg))));

    // A failed mail is never tried again, even when the transport works again.
    rec.failing = false;
    t0.advance(3600);
    assert.equal(await worker.drain(), 0);
    assert.equal(rec.calls, 13);
  });

  test('a mail queued while the transport is down is delivered exactly once when it comes back', async () => {
    const id = await queue(db, t0.clock);
    const rec = recordingTransport();
    rec.failing = true;
    const { worker } = newWorker(db, t0.clock, rec.transport);
    assert.equal(await worker.drain(), 0);
    rec.failing = false;
    t0.advance(config.outbox.maxBackoffSeconds);
    assert.equal(await worker.drain(), 1);
    assert.equal(await worker.drain(), 0);
    assert.deepEqual(
      rec.sent.map((m) => m.id),
      [id],
    );
    const r = await row(db, id);
    assert.ok(r.sent_at);
    assert.equal(r.attempts, 2);
  });

  test('a row claimed by a worker that crashed is delivered after its lease expires, not before', async () => {
    const id = await queue(db, t0.clock);
    // A worker claims the row and dies before sending or recording anything.
    const claimed = await outbox.claimDue(db, t0.clock(), 10, 60);
    assert.deepEqual(
      claimed.map((c) => c.id),
      [id],
    );

    const rec = recordingTransport();
    const { worker } = newWorker(db, t0.clock, rec.transport, { leaseSeconds: 60 });
    t0.advance(59);
    assert.equal(await worker.drain(), 0, 'still leased');
    assert.equal(rec.calls, 0);
    t0.advance(1);
    assert.equal(await worker.drain(), 1, 'lease expired');
    assert.equal(await worker.drain(), 0);
    assert.deepEqual(
      rec.sent.map((m) => m.id),
      [id],
    );
    assert.equal((await row(db, id)).attempts, 2);
  });

  test('a delivered mail keeps no body (codes and links must not outlive delivery), unless keepBodies', async () => {
    const gone = await queue(db, t0.clock);
    assert.ok((await newWorker(db, t0.clock, recordingTransport().transport).worker.drain()) >= 1);
    const sent = await row(db, gone);
    assert.ok(sent.sent_at);
    assert.equal(sent.text_body, '');
    assert.equal(sent.html_body, '');
    assert.equal(sent.subject.length > 0, true, 'metadata stays for operators');
    const kept = await queue(db, t0.clock);
    await newWorker(db, t0.clock, recordingTransport().transport, { keepBodies: true }).worker.drain();
    assert.match((await row(db, kept)).text_body, /\b123456\b/);
  });

  test('a worker whose lease ran out cannot overwrite the newer claim, but its delivery is still recorded', async () => {
    const id = await queue(db, t0.clock);
    const first = await outbox.claimDue(db, t0.clock(), 1, 60);
    t0.advance(61);
    const second = await outbox.claimDue(db, t0.clock(), 1, 60);
    assert.equal(first[0]?.attempts, 1);
    assert.equal(second[0]?.attempts, 2);
    const stale = { id, attempts: 1 };
    assert.equal(await outbox.markRetry(db, stale, t0.clock(), 'late failure'), false);
    assert.equal(await outbox.markFailed(db, stale, t0.clock(), 'late failure', false), false);
    assert.equal((await row(db, id)).last_error, null);
    // The stale worker did deliver: record it, so that no one sends it again.
    assert.equal(await outbox.markSent(db, id, t0.clock(), false), true);
    assert.equal(await outbox.markSent(db, id, t0.clock(), false), false, 'recorded once');
    assert.equal(await outbox.markRetry(db, { id, attempts: 2 }, t0.clock(), 'x'), false, 'a sent row stays sent');
    t0.advance(3600);
    assert.equal((await outbox.claimDue(db, t0.clock(), 10, 60)).length, 0);
  });

  test('two workers draining at once deliver every mail exactly once', async () => {
    const n = 40;
    const ids = new Set<string>();
    for (let i = 0; i < n; i++) ids.add(await queue(db, t0.clock, `u${i}@example.test`));
    // Two instances: on PostgreSQL each has its own pool, so their claims really run concurrently.
    const db2 = await connectAgain(5);
    const rec = recordingTransport({ delayMs: 2 });
    const a = newWorker(db, t0.clock, rec.transport, { batchSize: 3 }).worker;
    const b = newWorker(db2, t0.clock, rec.transport, { batchSize: 3 }).worker;
    const [sentA, sentB] = await Promise.all([a.drain(), b.drain()]);
    assert.equal(sentA + sentB, n);
    const perId = new Map<string, number>();
    for (const m of rec.sent) perId.set(m.id, (perId.get(m.id) ?? 0) + 1);
    assert.equal(perId.size, n);
    for (const [id, count] of perId) {
      assert.ok(ids.has(id));
      assert.equal(count, 1, `mail ${id} delivered ${count} times`);
    }
    if (kind === 'postgres') assert.ok(sentA > 0 && sentB > 0, `both instances took part (${sentA}/${sentB})`);
  });

  test('start() polls, kick() runs soon, stop() waits for the batch in flight; errors never escape the timer', async () => {
    const rec = recordingTransport({ delayMs: 5 });
    const { logger, lines } = capturingLogger();
    const fast = { ...config, outbox: { ...config.outbox, pollIntervalMs: 10 } };
    // A database that fails once, to prove a failed run is logged and polling goes on.
    let failOnce = true;
    const flaky: Database = {
      ...db,
      query: async (sql, params) => {
        if (failOnce && sql.includes('WITH due')) {
          failOnce = false;
          throw new Error('connection reset');
        }
        return db.query(sql, params);
      },
    };
    const worker = new OutboxWorker({ db: flaky, clock: t0.clock, transport: rec.transport, logger, config: fast });
    worker.start();
    const id = await queue(db, t0.clock);
    worker.kick();
    for (let i = 0; i < 200 && rec.sent.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    await worker.stop();
    assert.deepEqual(
      rec.sent.map((m) => m.id),
      [id],
    );
    assert.ok((await row(db, id)).sent_at, 'recorded as sent before stop() resolved');
    assert.ok(lines.some((l) => l.level === 50 && /delivery run failed/.test(String(l.msg))));
    // Stopped: no more polling, drain is a no-op.
    await queue(db, t0.clock);
    assert.equal(await worker.drain(), 0);
  });
});
