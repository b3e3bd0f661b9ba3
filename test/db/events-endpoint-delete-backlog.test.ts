/**
 * Deleting a webhook endpoint with a backlog: logins announcing events do not wait for the removal of
 * its deliveries (marked deleted first, removed in batches, the row last), it gets and sends nothing
 * from the mark on, and a removal cut short is finished by the webhook worker. Purgers at once (the
 * request, workers) take turns, and the endpoint row goes only once none of its deliveries is left.
 */
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import type { Database } from '../../src/db/database.ts';
import { markEndpointDeleted } from '../../src/db/repositories/events/endpoints.ts';
import { webhookLane } from '../../src/jobs/event-delivery.ts';
import { finishEndpointDeletions } from '../../src/services/events/endpoints.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';
import { buildTestApp, createTestClock, PASSWORD, uniqueName, type TestApp } from '../helpers/app.ts';
import { untilWaitingForLocks } from '../helpers/holds.ts';
import { withDatabases } from '../helpers/pg-database.ts';

const HOOKS = '/api/v1/admin/webhooks';

async function signUp(ta: TestApp) {
  const username = uniqueName();
  return ta.app.inject({ method: 'POST', url: '/api/v1/user', payload: { username, email: `${username}@example.com`, password1: PASSWORD, password2: PASSWORD } });
}

/** `n` queued deliveries for the endpoint (events of its own, as a receiver down for days leaves). */
async function backlog(ta: TestApp, endpointId: string, n: number): Promise<void> {
  await ta.deps.db.query(
    `WITH ev AS (
       INSERT INTO events (id, type, occurred_at, data)
       SELECT gen_random_uuid(), 'login.succeeded', now(), '{}'::jsonb FROM generate_series(1, $2) RETURNING id, seq
     )
     INSERT INTO event_deliveries (event_id, target, endpoint_id, seq, created_at, age_from, next_attempt_at)
     SELECT ev.id, $1::text, $1::uuid, ev.seq, now(), now(), now() + interval '1 hour' FROM ev`,
    [endpointId, n],
  );
}

/**
 * Notes, for every endpoint row deleted, how many deliveries of it were still there (committed) at
 * that moment: what the cascade of that one statement then had to delete. Returns the notes.
 */
async function watchRemovals(db: Database): Promise<() => Promise<number[]>> {
  await db.exec(`
    CREATE TABLE test_endpoint_removals (endpoint_id uuid NOT NULL, deliveries_left int NOT NULL);
    CREATE FUNCTION test_note_endpoint_removal() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO test_endpoint_removals SELECT OLD.id, count(*) FROM event_deliveries WHERE endpoint_id = OLD.id;
      RETURN OLD;
    END $$;
    CREATE TRIGGER test_note_endpoint_removal BEFORE DELETE ON webhook_endpoints
      FOR EACH ROW EXECUTE FUNCTION test_note_endpoint_removal();`);
  return async () => (await db.query<{ n: number }>('SELECT deliveries_left AS n FROM test_endpoint_removals')).rows.map((r) => r.n);
}

/** The statement the removal ran before each purger took its turn: a stand-in for another purger mid-batch. */
const PURGE_WITHOUT_TURN = `DELETE FROM event_deliveries WHERE ctid = ANY (ARRAY(
  SELECT d.ctid FROM event_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id
   WHERE d.endpoint_id = $1 AND w.deleted_at IS NOT NULL LIMIT $2))`;

/** A connection to hold locks with and one that watches (never inside a transaction), closed with the test. */
async function holderAndMonitor(t: TestContext, url: string): Promise<[pg.Client, pg.Client]> {
  const [other, monitor] = [new pg.Client({ connectionString: url }), new pg.Client({ connectionString: url })];
  await Promise.all([other.connect(), monitor.connect()]);
  t.after(() => Promise.all([other.end(), monitor.end()]));
  return [other, monitor];
}

withDatabases('deleting a webhook endpoint with a backlog', ({ kind, open }) => {
  test('the endpoint and every delivery of it are removed; other endpoints keep theirs; a later event skips it', async (t) => {
    const d = await open();
    const ta = await buildTestApp(t, d.db, { env: ADMIN_ENV, clock: createTestClock(new Date()) });
    const gone = (await adminCall(ta, 'POST', HOOKS, { url: 'https://hooks.example.com/gone', events: ['*'] })).json<{ id: string }>();
    const kept = (await adminCall(ta, 'POST', HOOKS, { url: 'https://hooks.example.com/kept', events: ['*'] })).json<{ id: string }>();
    await backlog(ta, gone.id, 12_000);
    await backlog(ta, kept.id, 10);
    assert.equal((await adminCall(ta, 'DELETE', `${HOOKS}/${gone.id}`)).statusCode, 204);
    const count = async (id: string) => (await d.db.query<{ n: number }>('SELECT count(*)::int AS n FROM event_deliveries WHERE endpoint_id = $1', [id])).rows[0]!.n;
    assert.equal(await count(gone.id), 0);
    assert.equal(await count(kept.id), 10);
    assert.equal((await d.db.query('SELECT 1 FROM webhook_endpoints WHERE id = $1', [gone.id])).rows.length, 0);
    assert.equal((await signUp(ta)).statusCode, 201);
    assert.equal(await count(kept.id), 11);
    assert.equal((await adminCall(ta, 'DELETE', `${HOOKS}/${gone.id}`)).statusCode, 404);
  });

  test('a deletion cut short (marked, not removed): gone from the API, no new deliveries, not served; the worker finishes it', async (t) => {
    const d = await open();
    const ta = await buildTestApp(t, d.db, { env: ADMIN_ENV, clock: createTestClock(new Date()) });
    const ep = (await adminCall(ta, 'POST', HOOKS, { url: 'https://hooks.example.com/cut', events: ['*'] })).json<{ id: string }>();
    await backlog(ta, ep.id, 3);
    // What an instance stopped right after the deletion's commit leaves.
    await d.db.query('UPDATE webhook_endpoints SET deleted_at = now() WHERE id = $1', [ep.id]);
    await d.db.query("UPDATE event_deliveries SET next_attempt_at = now() - interval '1 minute' WHERE endpoint_id = $1", [ep.id]);
    assert.deepEqual((await adminCall(ta, 'GET', HOOKS)).json(), []);
    for (const [method, path] of [['DELETE', ''], ['POST', '/rotate-secret'], ['GET', '/deliveries'], ['POST', '/retry']] as const) {
      assert.equal((await adminCall(ta, method, `${HOOKS}/${ep.id}${path}`)).statusCode, 404, `${method} ${path}`);
    }
    assert.equal((await signUp(ta)).statusCode, 201);
    const lane = webhookLane({ db: d.db, clock: ta.deps.clock, logger: pino({ level: 'silent' }), secretBox: ta.deps.secretBox, config: ta.deps.config });
    // Its due deliveries are not claimed (nothing is sent to a deleted endpoint), and the removal is finished.
    assert.deepEqual(await lane.runBatch(), { claimed: 0, sent: 0, more: false });
    assert.equal((await d.db.query('SELECT 1 FROM event_deliveries WHERE endpoint_id = $1', [ep.id])).rows.length, 0);
    assert.equal((await d.db.query('SELECT 1 FROM webhook_endpoints WHERE id = $1', [ep.id])).rows.length, 0);
  });

  test('a worker serving the endpoint when its deletion is marked sends nothing more after the request in flight', async (t) => {
    const d = await open();
    const ta = await buildTestApp(t, d.db, { env: { ...ADMIN_ENV, WEBHOOK_ALLOW_PRIVATE: 'true' }, clock: createTestClock(new Date()) });
    let got = 0;
    let held: ServerResponse | undefined;
    let arrived = () => {};
    const server = createServer((req, res) => {
      got += 1;
      req.resume();
      req.on('end', () => {
        if (got === 1) {
          held = res;
          arrived();
        } else res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    t.after(() => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }));
    const ep = (await adminCall(ta, 'POST', HOOKS, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, events: ['*'] })).json<{ id: string }>();
    for (let i = 0; i < 30; i++) assert.equal((await signUp(ta)).statusCode, 201);
    const lane = webhookLane({ db: d.db, clock: ta.deps.clock, logger: pino({ level: 'silent' }), secretBox: ta.deps.secretBox, config: ta.deps.config });
    const firstHeld = new Promise<void>((r) => (arrived = r));
    const batch = lane.runBatch();
    await firstHeld;
    // The deletion's mark has committed; its backlog is still being removed (a large one takes a while).
    await d.db.transaction((tx) => markEndpointDeleted(tx, ep.id, new Date()));
    held!.writeHead(204).end();
    await batch;
    await lane.settle?.();
    assert.equal(got, 1, 'only the request already in flight');
  });

  if (kind === 'postgres') {
    test('logins announcing events to the endpoint do not wait while its backlog is being removed', async (t) => {
      const d = await open();
      const ta = await buildTestApp(t, d.db, { env: ADMIN_ENV, clock: createTestClock(new Date()) });
      const ep = (await adminCall(ta, 'POST', HOOKS, { url: 'https://hooks.example.com/slow-delete', events: ['*'] })).json<{ id: string }>();
      await backlog(ta, ep.id, 50);
      const [other, monitor] = [new pg.Client({ connectionString: d.url }), new pg.Client({ connectionString: d.url })];
      await Promise.all([other.connect(), monitor.connect()]);
      t.after(() => Promise.all([other.end(), monitor.end()]));
      // One of its deliveries is held (as a worker's claim or a slow disk would): the removal stops there.
      await other.query('BEGIN');
      await other.query('SELECT 1 FROM event_deliveries WHERE endpoint_id = $1 ORDER BY seq DESC LIMIT 1 FOR UPDATE', [ep.id]);
      const deletion = adminCall(ta, 'DELETE', `${HOOKS}/${ep.id}`);
      await untilWaitingForLocks(monitor, 1, 'the removal');
      // Dozens of sign-ups, each announcing user.created, while the removal waits: none waits with it.
      const signups = Promise.all(Array.from({ length: 24 }, () => signUp(ta)));
      const outcome = await Promise.race([
        signups.then((rs) => ({ done: true as const, codes: rs.map((r) => r.statusCode) })),
        untilWaitingForLocks(monitor, 2, 'a sign-up').then(() => ({ done: false as const, codes: [] })),
      ]);
      assert.equal(outcome.done, true, 'a sign-up waited for the endpoint\'s removal');
      assert.deepEqual(outcome.codes, Array(24).fill(201));
      await other.query('COMMIT');
      assert.equal((await deletion).statusCode, 204);
      assert.equal((await d.db.query('SELECT 1 FROM event_deliveries WHERE endpoint_id = $1', [ep.id])).rows.length, 0);
    });
  }

  test('a batch cut short by another deleting its rows is not taken for the end: the endpoint goes once none of its deliveries is left', async (t) => {
    const d = await open();
    const ta = await buildTestApp(t, d.db, { env: ADMIN_ENV, clock: createTestClock(new Date()) });
    const ep = (await adminCall(ta, 'POST', HOOKS, { url: 'https://hooks.example.com/contended', events: ['*'] })).json<{ id: string }>();
    await backlog(ta, ep.id, 12_000);
    const removals = await watchRemovals(d.db);
    await d.db.query('UPDATE webhook_endpoints SET deleted_at = now() WHERE id = $1', [ep.id]);
    let removed: Promise<number>;
    if (kind === 'postgres') {
      // Another purger is deleting the first 5,000 (not committed yet). The worker's first batch lists
      // the same rows, waits for them, and then skips them all: it comes back with 0 and 7,000 left.
      const [other, monitor] = await holderAndMonitor(t, d.url!);
      await other.query('BEGIN');
      assert.equal((await other.query(PURGE_WITHOUT_TURN, [ep.id, 5000])).rowCount, 5000);
      removed = finishEndpointDeletions(d.db, 20);
      await untilWaitingForLocks(monitor, 1, 'the removal');
      await other.query('COMMIT');
    } else {
      // One statement at a time: no batch is cut short here; the same end is checked.
      removed = finishEndpointDeletions(d.db, 20);
    }
    assert.equal(await removed, 1);
    assert.deepEqual(await removals(), [0], 'the endpoint row was deleted with deliveries left: one statement cascaded over them');
    assert.equal((await d.db.query('SELECT 1 FROM event_deliveries WHERE endpoint_id = $1', [ep.id])).rows.length, 0);
    assert.equal((await d.db.query('SELECT 1 FROM webhook_endpoints WHERE id = $1', [ep.id])).rows.length, 0);
  });

  test('the request and a worker at once: the worker skips the endpoint without waiting, and the request removes it', async (t) => {
    const d = await open();
    const ta = await buildTestApp(t, d.db, { env: ADMIN_ENV, clock: createTestClock(new Date()) });
    const ep = (await adminCall(ta, 'POST', HOOKS, { url: 'https://hooks.example.com/two-purgers', events: ['*'] })).json<{ id: string }>();
    await backlog(ta, ep.id, 12_000);
    const removals = await watchRemovals(d.db);
    // Another instance's worker (on PGlite, the same single connection).
    const instance = await d.connectAgain(2);
    let deletion: ReturnType<typeof adminCall>;
    if (kind === 'postgres') {
      const [other, monitor] = await holderAndMonitor(t, d.url!);
      // Every delivery held (as a worker's claim or a slow disk would): the request's first batch waits there.
      await other.query('BEGIN');
      await other.query('SELECT 1 FROM event_deliveries WHERE endpoint_id = $1 FOR UPDATE', [ep.id]);
      deletion = adminCall(ta, 'DELETE', `${HOOKS}/${ep.id}`);
      await untilWaitingForLocks(monitor, 1, "the request's removal");
      const step = finishEndpointDeletions(instance, 4).catch((err: unknown) => err);
      const outcome = await Promise.race([
        step.then((removed) => ({ waited: false, removed })),
        untilWaitingForLocks(monitor, 2, 'the worker').then(() => ({ waited: true, removed: 0 }), () => ({ waited: false, removed: 0 })),
      ]);
      const left = (await d.db.query<{ n: number }>('SELECT count(*)::int AS n FROM event_deliveries WHERE endpoint_id = $1', [ep.id])).rows[0]!.n;
      await other.query('COMMIT');
      await step;
      assert.deepEqual(outcome, { waited: false, removed: 0 }, "the worker queued behind the request's batch instead of leaving the endpoint to it");
      assert.equal(left, 12_000);
    } else {
      deletion = adminCall(ta, 'DELETE', `${HOOKS}/${ep.id}`);
      await finishEndpointDeletions(instance, 4);
    }
    assert.equal((await deletion).statusCode, 204);
    assert.deepEqual(await removals(), [0], 'the endpoint row was deleted with deliveries left: one statement cascaded over them');
    assert.equal((await d.db.query('SELECT 1 FROM event_deliveries WHERE endpoint_id = $1', [ep.id])).rows.length, 0);
    assert.equal((await d.db.query('SELECT 1 FROM webhook_endpoints WHERE id = $1', [ep.id])).rows.length, 0);
  });
});
