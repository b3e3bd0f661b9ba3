/**
 * The outbox worker when the database fails after the transport accepted a mail, before it is recorded
 * as sent (the outage review: a restart of PostgreSQL at that moment sent the mail again 120 s later,
 * same Message-ID). On PGlite, and on PostgreSQL when DATABASE_URL is set. The database's failures
 * are a wrapper around it; time is a movable clock, and the worker's waits between tries move it
 * instead of sleeping.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { before, beforeEach, test } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/config.ts';
import type { Database } from '../../src/db/database.ts';
import * as outbox from '../../src/db/repositories/outbox.ts';
import { OutboxWorker, type OutboxWorkerOptions } from '../../src/jobs/outbox-worker.ts';
import { STOP_RECORD_GRACE_MS } from '../../src/jobs/record-retry.ts';
import { enqueueMail } from '../../src/mail/outbox.ts';
import type { MailMessage, MailTransport } from '../../src/mail/types.ts';
import { withDatabases } from '../helpers/pg-database.ts';

const config = loadConfig({ NODE_ENV: 'test', PUBLIC_URL: 'https://auth.example.test' });
const START = new Date('2030-01-01T12:00:00.000Z').getTime();
const LEASE_SECONDS = 120;

withDatabases('outbox: recording a delivery while the database fails', ({ open }) => {
  let db: Database;
  let connectAgain: () => Promise<Database>;
  let now: number;
  const clock = () => new Date(now);
  /** The worker's wait between tries: the clock moves by it, and other tasks get their turn. */
  let onWait: () => Promise<void>;
  const sleep = async (ms: number) => {
    now += ms;
    await new Promise((r) => setImmediate(r));
    await onWait();
  };

  before(async () => {
    const d = await open();
    db = d.db;
    connectAgain = () => d.connectAgain(2);
  });
  beforeEach(async () => {
    await db.query('DELETE FROM outbox');
    now = START;
    onWait = async () => {};
  });

  /**
   * The database as the worker sees it: every statement fails while the outage lasts (`only`: just the
   * statements matching it). `startOutage(seconds)` begins one now; `failures` counts the failed statements.
   */
  function outage(only?: RegExp) {
    const state = {
      until: 0,
      failures: 0,
      startOutage(seconds: number) {
        state.until = now + seconds * 1000;
      },
      db: {
        ...db,
        query: async (sql: string, params?: readonly unknown[]) => {
          if (now < state.until && (!only || only.test(sql))) {
            state.failures++;
            throw new Error('Connection terminated unexpectedly');
          }
          return db.query(sql, params);
        },
      } as Database,
    };
    return state;
  }

  /** A transport that accepts every mail; `onFirstAccept` runs right after the first acceptance (the outage begins). */
  function acceptingTransport(onFirstAccept: () => void) {
    const sent: MailMessage[] = [];
    const transport: MailTransport = {
      name: 'accepting',
      async send(m) {
        sent.push(m);
        if (sent.length === 1) onFirstAccept();
      },
      async close() {},
    };
    return { sent, transport };
  }

  function newWorker(on: Database, transport: MailTransport, extra: Partial<OutboxWorkerOptions> = {}) {
    const lines: Array<Record<string, unknown>> = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    const worker = new OutboxWorker({ db: on, clock, transport, logger: pino({ level: 'info' }, stream), config, leaseSeconds: LEASE_SECONDS, sleep, ...extra });
    return { worker, lines };
  }

  async function queue() {
    return db.transaction((tx) => enqueueMail(tx, { config, clock }, { kind: 'email_otp_login', to: 'alice@example.test', data: { username: 'alice', code: '123456', expiresInMinutes: 10 } }));
  }

  async function row(id: string) {
    const r = await outbox.findById(db, id);
    assert.ok(r, `outbox row ${id} missing`);
    return r;
  }

  test('a database down for 5 s right after the SMTP server accepted: recorded once it is back, delivered exactly once', async () => {
    const id = await queue();
    const down = outage();
    const mail = acceptingTransport(() => down.startOutage(5));
    const { worker, lines } = newWorker(down.db, mail.transport);
    const first = await worker.drain().then(() => 'drained', (err: unknown) => err);
    // Long after the outage and the lease, this instance and another find nothing to send.
    now = Math.max(now, down.until) + (LEASE_SECONDS + 60) * 1000;
    await worker.drain();
    await newWorker(await connectAgain(), mail.transport).worker.drain();
    assert.deepEqual(mail.sent.map((m) => m.id), [id], 'delivered once, not again after the lease');
    assert.equal(first, 'drained', 'the first drain waited for the database and went on');
    assert.ok(down.failures >= 2, `the recording was tried again (${down.failures} failed statements)`);
    const r = await row(id);
    assert.equal(r.sent_at?.getTime(), START, 'recorded as sent at its acceptance');
    assert.equal(r.locked_until, null);
    assert.equal(r.attempts, 1);
    assert.ok(lines.some((l) => l.level === 30 && l.mailId === id && /recorded as sent once the database answered again/.test(String(l.msg))));
    assert.ok(!lines.some((l) => Number(l.level) >= 40), 'no warning or error: nothing was lost or sent twice');
  });

  test('a recording failing for longer than the lease: the lease is extended, so no other instance claims the mail meanwhile', async () => {
    const id = await queue();
    // Only the recording fails (say, a lock on the row): the lease can still be extended.
    const down = outage(/SET sent_at/);
    const mail = acceptingTransport(() => down.startOutage(3 * LEASE_SECONDS));
    const other = newWorker(await connectAgain(), mail.transport).worker;
    const { worker } = newWorker(down.db, mail.transport);
    const otherSent: number[] = [];
    const leases: Array<{ at: number; until: number }> = [];
    onWait = async () => {
      leases.push({ at: now, until: (await row(id)).locked_until!.getTime() });
      // Each time the clock passes another lease's length, the other instance tries to claim.
      if (now - START >= (otherSent.length + 1) * (LEASE_SECONDS + 1) * 1000) otherSent.push(await other.drain());
    };
    await worker.drain();
    assert.ok(otherSent.length >= 2 && otherSent.every((n) => n === 0), `the other instance claimed nothing while the recording was retried (${otherSent})`);
    assert.ok(leases.every((l) => l.until > l.at), 'the lease never ran out');
    assert.ok(Math.max(...leases.map((l) => l.until)) >= START + 3 * LEASE_SECONDS * 1000, 'the lease was pushed on');
    now += (LEASE_SECONDS + 60) * 1000;
    assert.equal(await other.drain(), 0);
    assert.deepEqual(mail.sent.map((m) => m.id), [id], 'delivered once');
    const r = await row(id);
    assert.equal(r.sent_at?.getTime(), START);
    assert.equal(r.locked_until, null);
  });

  test('a database down past the lease: the tries end with the lease, and this instance, claiming the mail again, records it without sending it', async () => {
    const id = await queue();
    const down = outage();
    const mail = acceptingTransport(() => down.startOutage(2 * LEASE_SECONDS));
    const { worker, lines } = newWorker(down.db, mail.transport);
    // The claim after the batch fails too: the database is still down.
    await assert.rejects(worker.drain(), /Connection terminated/);
    assert.ok(lines.some((l) => l.level === 50 && l.mailId === id && /not recorded as sent within its lease/.test(String(l.msg))), 'the give-up is logged');
    assert.ok(now > START + 60_000 && now <= START + LEASE_SECONDS * 1000, `tried until the lease ended, not after (${(now - START) / 1000} s)`);
    assert.equal((await row(id)).sent_at, null);
    now = down.until;
    await worker.drain();
    assert.deepEqual(mail.sent.map((m) => m.id), [id], 'recorded, not sent a second time');
    const r = await row(id);
    assert.equal(r.sent_at?.getTime(), START);
    assert.equal(r.attempts, 2);
    now += (LEASE_SECONDS + 60) * 1000;
    assert.equal(await worker.drain(), 0);
    assert.equal(mail.sent.length, 1);
  });

  for (const { outageSeconds, recorded } of [{ outageSeconds: 3, recorded: true }, { outageSeconds: 600, recorded: false }]) {
    test(`stop() during a failing recording tries on for its grace, bounded (database back after ${outageSeconds} s: ${recorded ? 'recorded' : 'given up'})`, async () => {
      const id = await queue();
      const down = outage();
      const mail = acceptingTransport(() => down.startOutage(outageSeconds));
      const { worker, lines } = newWorker(down.db, mail.transport, { config: { ...config, outbox: { ...config.outbox, pollIntervalMs: 60_000 } } });
      let stopping: Promise<void> | undefined;
      let stoppedAt = 0;
      onWait = async () => {
        if (stopping) return;
        stoppedAt = now;
        stopping = worker.stop();
      };
      worker.start();
      for (let i = 0; i < 300 && !stopping; i++) await new Promise((r) => setTimeout(r, 10));
      await (stopping ?? worker.stop());
      assert.deepEqual(mail.sent.map((m) => m.id), [id]);
      const r = await row(id);
      if (recorded) {
        assert.equal(r.sent_at?.getTime(), START, 'recorded before stop() resolved');
      } else {
        assert.equal(r.sent_at, null);
        assert.ok(lines.some((l) => l.level === 50 && l.mailId === id && /before shutdown/.test(String(l.msg))), 'the give-up is logged');
      }
      assert.ok(stopping && now <= stoppedAt + STOP_RECORD_GRACE_MS, 'stopped while retrying, and no try after the grace');
    });
  }
});
