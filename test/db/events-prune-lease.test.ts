/**
 * Pruning of old events by the webhook lane.
 *
 * Leases: a webhook batch that prunes old events first claims its heads with a lease counted from
 * after the prune. The claim used the clock reading taken before it: a prune longer than the lease left
 * the heads a lease that had already ended, and another instance could claim and send the same event
 * at the same time. Here the prune "takes" longer than the lease by moving the clock while it runs.
 *
 * Batches: the prune was one DELETE over every event due (at steady traffic, hundreds of thousands of
 * events and over a million cascaded deliveries in one statement, the lane stalled meanwhile). It is
 * now cut in statements of bounded events and deliveries, a few per run, the rest at later runs, with
 * the same rule for what may go.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/config.ts';
import { SecretBox } from '../../src/crypto/secret-box.ts';
import type { Database, Queryable } from '../../src/db/database.ts';
import { pruneEvents } from '../../src/db/repositories/events/deliveries.ts';
import {
  EVENT_RETENTION_SECONDS,
  PRUNE_BATCHES_PER_RUN,
  PRUNE_CATCH_UP_INTERVAL_MS,
  PRUNE_INTERVAL_MS,
  webhookLane,
} from '../../src/jobs/event-delivery.ts';
import type { OutboxWorkerLogger } from '../../src/jobs/outbox-worker.ts';
import { SYSTEM_CONTEXT } from '../../src/services/audit/record.ts';
import * as endpoints from '../../src/services/events/endpoints.ts';
import { enqueueEvent } from '../../src/services/events/publish.ts';
import { withDatabases } from '../helpers/pg-database.ts';

const config = loadConfig({ NODE_ENV: 'test', WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_TIMEOUT: '10' });

withDatabases('webhook leases after a prune', ({ open }) => {
  test('the heads claimed after a long prune hold a lease that has not ended yet', async (t) => {
    const { db } = await open();
    let now = Date.now();
    const clock = () => new Date(now);
    // The prune statement moves the clock on by ten minutes while it runs (a prune of a large table).
    const slowPrune: Queryable = {
      async query(sql, params) {
        const result = await db.query(sql, params);
        if (/\bDELETE FROM events\b/.test(sql)) now += 600_000;
        return result as never;
      },
    };
    // A receiver that answers only when the test has looked at the lease.
    const held: ServerResponse[] = [];
    const server = createServer((_req: IncomingMessage, res: ServerResponse) => void held.push(res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    t.after(() => new Promise<void>((r) => server.close(() => r())));
    const deps = { config, db, clock, secretBox: new SecretBox([{ kid: 't', key: randomBytes(32) }]) };
    await endpoints.createEndpoint(deps, SYSTEM_CONTEXT, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, events: ['*'] });
    await db.transaction((tx) => enqueueEvent(tx, deps, 'user.created', { user_id: 'u1' }));

    const lane = webhookLane({ db: slowPrune as Database, clock, logger: pino({ level: 'silent' }), secretBox: deps.secretBox, config, random: () => 0.5 });
    const batch = lane.runBatch();
    for (let i = 0; held.length === 0; i++) {
      assert.ok(i < 500, 'the head was never sent');
      await new Promise((r) => setTimeout(r, 20));
    }
    const lease = await db.query<{ locked_until: Date }>("SELECT locked_until FROM event_deliveries WHERE target <> 'amqp'");
    assert.equal(lease.rows.length, 1);
    assert.ok(lease.rows[0]!.locked_until.getTime() > clock().getTime(), `the lease ends ${lease.rows[0]!.locked_until.toISOString()}, before now (${clock().toISOString()})`);
    held[0]!.writeHead(204).end();
    assert.equal((await batch).sent, 1);
  });
});

const DAY_MS = 86_400_000;
const RETENTION_MS = EVENT_RETENTION_SECONDS * 1000;

/** Three endpoints, as a deployment registers them (the secret is never opened: nothing here is due). */
async function addEndpoints(db: Queryable, count: number): Promise<void> {
  await db.query(
    `INSERT INTO webhook_endpoints (id, url, event_types, secret_sealed, created_at)
     SELECT gen_random_uuid(), 'http://127.0.0.1:9/hook', ARRAY['*'], 'unused', now() FROM generate_series(1, $1)`,
    [count],
  );
}

/**
 * `count` events `label`led in their data, one second apart from `newest` back, each with a delivery to
 * every endpoint and to the broker, delivered at the event's time. Returns their ids.
 */
async function addEvents(db: Queryable, count: number, newest: Date, label: string): Promise<string[]> {
  const r = await db.query<{ id: string }>(
    `INSERT INTO events (id, type, occurred_at, data)
     SELECT gen_random_uuid(), 'user.created', $1::timestamptz - make_interval(secs => g), jsonb_build_object('label', $3::text)
       FROM generate_series(0, $2 - 1) g
     RETURNING id`,
    [newest, count, label],
  );
  await db.query(
    `INSERT INTO event_deliveries (event_id, target, endpoint_id, seq, created_at, age_from, next_attempt_at, delivered_at, attempts)
     SELECT e.id, t.target, t.endpoint_id, e.seq, e.occurred_at, e.occurred_at, e.occurred_at, e.occurred_at, 1
       FROM events e
      CROSS JOIN (SELECT id::text AS target, id AS endpoint_id FROM webhook_endpoints UNION ALL SELECT 'amqp', NULL) t
      WHERE e.data->>'label' = $1`,
    [label],
  );
  return r.rows.map((row) => row.id);
}

async function eventIds(db: Queryable): Promise<Set<string>> {
  return new Set((await db.query<{ id: string }>('SELECT id FROM events')).rows.map((r) => r.id));
}

async function count(db: Queryable, table: 'events' | 'event_deliveries'): Promise<number> {
  return (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n;
}

/**
 * Old events the rule keeps or lets go, beside the bulk: returns the ids it keeps. Kept: one whose
 * webhook delivery is waiting for its backoff, one whose broker delivery is pending, one whose delivery
 * is leased (in flight). Let go: one whose delivery was given up, one with no delivery left.
 */
async function addSpecialOldEvents(db: Queryable, oldTime: Date): Promise<string[]> {
  const [backoff] = await addEvents(db, 1, oldTime, 'backoff');
  const [broker] = await addEvents(db, 1, oldTime, 'broker');
  const [leased] = await addEvents(db, 1, oldTime, 'leased');
  const [givenUp] = await addEvents(db, 1, oldTime, 'given-up');
  const [bare] = await addEvents(db, 1, oldTime, 'bare');
  const later = new Date(oldTime.getTime() + 400 * DAY_MS);
  await db.query(
    `UPDATE event_deliveries SET delivered_at = NULL, next_attempt_at = $2 WHERE event_id = $1 AND ctid = (SELECT min(ctid) FROM event_deliveries WHERE event_id = $1 AND target <> 'amqp')`,
    [backoff, later],
  );
  await db.query(`UPDATE event_deliveries SET delivered_at = NULL WHERE event_id = $1 AND target = 'amqp'`, [broker]);
  await db.query(
    `UPDATE event_deliveries SET delivered_at = NULL, locked_until = $2 WHERE event_id = $1 AND ctid = (SELECT min(ctid) FROM event_deliveries WHERE event_id = $1 AND target <> 'amqp')`,
    [leased, later],
  );
  await db.query(`UPDATE event_deliveries SET delivered_at = NULL, failed_at = $2 WHERE event_id = $1`, [givenUp, oldTime]);
  await db.query(`DELETE FROM event_deliveries WHERE event_id = $1`, [bare]);
  return [backoff!, broker!, leased!];
}

/** A logger that keeps what the lane reports of its pruning. */
function pruneLog(): { logger: OutboxWorkerLogger; pruned: number[] } {
  const pruned: number[] = [];
  const info = (obj: { pruned?: number }, msg?: string) => {
    if (msg === 'old events pruned') pruned.push(obj.pruned ?? 0);
  };
  return { logger: { info, warn: () => {}, error: () => {} } as unknown as OutboxWorkerLogger, pruned };
}

withDatabases('pruning old events in batches', ({ open, kind }) => {
  const secretBox = new SecretBox([{ kid: 't', key: randomBytes(32) }]);
  // The lane's bounds scaled down (the production ones, 5,000 events a statement, made this file insert
  // 40,000 events): the same shape, four statements per run and room for four deliveries per event.
  const pruneBounds = { events: 250, deliveries: 1000, statementsPerRun: PRUNE_BATCHES_PER_RUN };

  test('one run prunes at most its batches, the next runs the rest while more is due, and the rule keeps what it kept', async () => {
    const { db } = await open();
    let now = Date.UTC(2030, 0, 1);
    const clock = () => new Date(now);
    await addEndpoints(db, 3);
    const perRun = pruneBounds.statementsPerRun * pruneBounds.events;
    const oldTime = new Date(now - RETENTION_MS - DAY_MS);
    // More than one run prunes: four deliveries each (three endpoints and the broker), full batches.
    await addEvents(db, perRun + 75, oldTime, 'old');
    const keptOld = await addSpecialOldEvents(db, oldTime);
    // Within the retention by a day: kept (the clock moves by an hour here).
    const recent = await addEvents(db, 20, new Date(now - RETENTION_MS + DAY_MS), 'recent');
    const total = await count(db, 'events');
    const deliveriesBefore = await count(db, 'event_deliveries');

    const statements: string[] = [];
    const counting: Queryable = {
      query(sql, params) {
        if (/\bDELETE FROM events\b/.test(sql)) statements.push(sql);
        return db.query(sql, params);
      },
    };
    const { logger, pruned } = pruneLog();
    const lane = webhookLane({ db: counting as Database, clock, logger, secretBox, config, random: () => 0.5, pruneBounds });

    await lane.runBatch();
    assert.equal(total - (await count(db, 'events')), perRun, 'the first run prunes its batches, no more');
    // With their deliveries, four each (the one event without any may be among them).
    const deliveriesPruned = deliveriesBefore - (await count(db, 'event_deliveries'));
    assert.ok(deliveriesPruned >= (perRun - 1) * 4 && deliveriesPruned <= perRun * 4, `${deliveriesPruned} deliveries pruned`);
    assert.equal(statements.length, PRUNE_BATCHES_PER_RUN);

    // Not at every batch: the next run comes after the catch-up interval.
    now += PRUNE_CATCH_UP_INTERVAL_MS - 1;
    await lane.runBatch();
    assert.equal(statements.length, PRUNE_BATCHES_PER_RUN);
    now += 1;
    await lane.runBatch();
    assert.deepEqual(await eventIds(db), new Set([...keptOld, ...recent]), 'every event the rule lets go is gone, the others kept');
    assert.equal(pruned.reduce((a, n) => a + n, 0), total - keptOld.length - recent.length, 'each event counted once');

    // Caught up: the next prune is an interval later, not a catch-up interval later.
    const runs = statements.length;
    now += PRUNE_CATCH_UP_INTERVAL_MS;
    await lane.runBatch();
    assert.equal(statements.length, runs);
    now += PRUNE_INTERVAL_MS;
    await lane.runBatch();
    assert.equal(statements.length, runs + 1);
    assert.deepEqual(await eventIds(db), new Set([...keptOld, ...recent]));
  });

  test('a statement stops where its events\' deliveries would pass the budget; its first event always goes', async () => {
    const { db } = await open();
    const now = Date.UTC(2030, 0, 1);
    const before = new Date(now - RETENTION_MS);
    await addEndpoints(db, 3);
    await addEvents(db, 10, new Date(before.getTime() - 1000), 'old');
    // Four deliveries each: 9 fit 3 events within 10 events listed, 2 fit one (the first, over the budget).
    assert.deepEqual(await pruneEvents(db, before, 10, 9), { pruned: 2, full: true });
    assert.equal(await count(db, 'event_deliveries'), 8 * 4);
    assert.deepEqual(await pruneEvents(db, before, 10, 2), { pruned: 1, full: true });
    // Room for all: not full, nothing left.
    assert.deepEqual(await pruneEvents(db, before, 10, 1000), { pruned: 7, full: false });
    assert.deepEqual(await pruneEvents(db, before, 10, 1000), { pruned: 0, full: false });
    assert.equal(await count(db, 'events'), 0);
    assert.equal(await count(db, 'event_deliveries'), 0);
  });

  test('the rule is the same: strictly older than the cut, nothing pending', async () => {
    const { db } = await open();
    const now = Date.UTC(2030, 0, 1);
    const before = new Date(now - RETENTION_MS);
    await addEndpoints(db, 2);
    const keptOld = await addSpecialOldEvents(db, new Date(before.getTime() - 1));
    const atTheCut = await addEvents(db, 1, before, 'at-the-cut');
    await addEvents(db, 7, new Date(before.getTime() - 1), 'old');
    let batches = 0;
    for (;;) {
      const batch = await pruneEvents(db, before, 2, 100);
      assert.ok(batch);
      batches += 1;
      if (!batch.full) break;
    }
    assert.ok(batches >= 5, `${batches} batches of two for nine events`);
    assert.deepEqual(await eventIds(db), new Set([...keptOld, ...atTheCut]));
  });

  // PostgreSQL only: PGlite has one connection, so no statement runs beside another there.
  if (kind === 'postgres') test('while another pruner\'s statement has the turn, a prune gets null and deletes nothing', async () => {
    const { db, connectAgain } = await open();
    const other = await connectAgain(1);
    const before = new Date(Date.UTC(2030, 0, 1) - RETENTION_MS);
    await addEndpoints(db, 1);
    await addEvents(db, 6, new Date(before.getTime() - 1000), 'old');
    await db.transaction(async (tx) => {
      // The turn lasts as long as the transaction of the statement that took it.
      assert.deepEqual(await pruneEvents(tx, before, 2, 100), { pruned: 2, full: true });
      assert.equal(await pruneEvents(other, before, 2, 100), null);
    });
    assert.equal(await count(db, 'events'), 4);
    assert.deepEqual(await pruneEvents(other, before, 10, 100), { pruned: 4, full: false });
  });

  test('two instances pruning at once delete every event due once, without an error', async () => {
    const { db, connectAgain } = await open();
    const second = await connectAgain(2);
    let now = Date.UTC(2030, 0, 1);
    const clock = () => new Date(now);
    await addEndpoints(db, 3);
    const oldTime = new Date(now - RETENTION_MS - DAY_MS);
    await addEvents(db, pruneBounds.statementsPerRun * pruneBounds.events + 35, oldTime, 'old');
    const keptOld = await addSpecialOldEvents(db, oldTime);
    const recent = await addEvents(db, 5, new Date(now - RETENTION_MS + DAY_MS), 'recent');
    const total = await count(db, 'events');
    const a = pruneLog();
    const b = pruneLog();
    const lanes = [
      webhookLane({ db, clock, logger: a.logger, secretBox, config, random: () => 0.5, pruneBounds }),
      webhookLane({ db: second, clock, logger: b.logger, secretBox, config, random: () => 0.5, pruneBounds }),
    ];
    for (let run = 0; run < 8; run++) {
      await Promise.all(lanes.map((lane) => lane.runBatch()));
      now += PRUNE_CATCH_UP_INTERVAL_MS;
    }
    assert.deepEqual(await eventIds(db), new Set([...keptOld, ...recent]));
    const reported = [...a.pruned, ...b.pruned].reduce((x, n) => x + n, 0);
    assert.equal(reported, total - keptOld.length - recent.length, 'each event counted once, by the instance that deleted it');
  });
});
