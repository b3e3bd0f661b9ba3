/**
 * An admin's retry of a given-up delivery against the prune of old events. A given-up delivery is old
 * enough to go with its event, and the prune's DELETE does not look again at the deliveries it listed:
 * - a retry committed while a prune statement ran was then deleted by the cascade, after the admin had
 *   been answered 202 (and the audit log said it was requeued);
 * - a retry of a delivery pruned after the route had read it was answered 202 with nothing requeued.
 * Now a retry holds pruning's turn for its transaction (a prune meanwhile leaves the work to later),
 * waits for a prune statement in flight, and answers 404 when the delivery went.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { SecretBox } from '../../src/crypto/secret-box.ts';
import type { Database, Queryable } from '../../src/db/database.ts';
import { pruneEvents } from '../../src/db/repositories/events/deliveries.ts';
import type { Deps } from '../../src/deps.ts';
import { AppError } from '../../src/errors.ts';
import { EVENT_RETENTION_SECONDS } from '../../src/jobs/event-delivery.ts';
import { SYSTEM_CONTEXT } from '../../src/services/audit/record.ts';
import * as endpoints from '../../src/services/events/endpoints.ts';
import { withDatabases } from '../helpers/pg-database.ts';

const config = loadConfig({ NODE_ENV: 'test', WEBHOOK_ALLOW_PRIVATE: 'true' });
const NOW = Date.UTC(2030, 0, 1);
const CUT = new Date(NOW - EVENT_RETENTION_SECONDS * 1000);

/** `db` with a hook after each statement (in and out of transactions) that sees its SQL. */
function hooked(db: Database, after: (sql: string) => Promise<void>): Database {
  const wrap = (q: Queryable): Queryable => ({
    async query(sql, params) {
      const r = await q.query(sql, params);
      await after(sql);
      return r as never;
    },
  });
  const outer = wrap(db);
  return {
    kind: db.kind,
    query: outer.query,
    transaction: (fn) => db.transaction((tx) => fn(wrap(tx))),
    exec: (sql) => db.exec(sql),
    ping: () => db.ping(),
    close: () => db.close(),
  };
}

/** An endpoint and one event two days past the retention, whose delivery to it was given up. */
async function givenUpDelivery(db: Database): Promise<{ deps: Deps; endpointId: string; eventId: string }> {
  const deps = { config, db, clock: () => new Date(NOW), secretBox: new SecretBox([{ kid: 't', key: randomBytes(32) }]) } as unknown as Deps;
  const endpoint = await endpoints.createEndpoint(deps, SYSTEM_CONTEXT, { url: 'http://127.0.0.1:9/hook', events: ['*'] });
  const old = new Date(CUT.getTime() - 2 * 86_400_000);
  const r = await db.query<{ id: string }>(
    `WITH e AS (INSERT INTO events (id, type, occurred_at, data) VALUES (gen_random_uuid(), 'user.created', $1, '{}') RETURNING id, seq)
     INSERT INTO event_deliveries (event_id, target, endpoint_id, seq, created_at, age_from, next_attempt_at, attempts, failed_at, last_error)
     SELECT e.id, $2::text, $2::uuid, e.seq, $1, $1, $1, 9, $1, 'HTTP 500' FROM e RETURNING event_id AS id`,
    [old, endpoint.id],
  );
  return { deps, endpointId: endpoint.id, eventId: r.rows[0]!.id };
}

async function deliveryState(db: Queryable, eventId: string): Promise<{ failed_at: Date | null } | undefined> {
  return (await db.query<{ failed_at: Date | null }>('SELECT failed_at FROM event_deliveries WHERE event_id = $1', [eventId])).rows[0];
}

async function retriedEntries(db: Queryable): Promise<number> {
  return (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_log WHERE type = 'admin.action' AND data->>'action' = 'webhook.retried'")).rows[0]!.n;
}

function codeOf(outcome: unknown): string {
  return outcome instanceof AppError ? outcome.code : String(outcome);
}

withDatabases('an admin retry against the prune of old events', ({ open, kind }) => {
  test('a delivery pruned after the retry read it is answered 404, not 202 for nothing', async () => {
    const { db } = await open();
    const { deps, endpointId, eventId } = await givenUpDelivery(db);
    let pruned: unknown;
    const db2 = hooked(db, async (sql) => {
      // The prune runs to its end just after the route has read the delivery.
      if (pruned === undefined && /^SELECT delivered_at FROM event_deliveries/.test(sql)) pruned = await pruneEvents(db, CUT, 100, 1000);
    });
    const outcome = await endpoints.retryDelivery({ ...deps, db: db2 }, SYSTEM_CONTEXT, endpointId, eventId).then(() => 'accepted', (e: unknown) => e);
    assert.deepEqual(pruned, { pruned: 1, full: false });
    assert.equal(codeOf(outcome), 'not_found');
    assert.equal(await retriedEntries(db), 0, 'nothing requeued, nothing audited');
  });

  // PostgreSQL only: PGlite has one connection, so no statement runs beside another there.
  if (kind === 'postgres') test('a retry committed while a prune is due keeps its delivery: the prune leaves it to a later run', async () => {
    const { db, connectAgain } = await open();
    const other = await connectAgain(1);
    const { deps, endpointId, eventId } = await givenUpDelivery(db);
    let prune: Promise<unknown> | undefined;
    const db2 = hooked(db, async (sql) => {
      // The requeue is done, its transaction not committed yet: a prune starts beside it.
      if (!prune && /retry_asked = COALESCE/.test(sql)) {
        prune = pruneEvents(other, CUT, 100, 1000);
        await sleep(300);
      }
    });
    await endpoints.retryDelivery({ ...deps, db: db2 }, SYSTEM_CONTEXT, endpointId, eventId);
    assert.equal(await prune, null, 'the prune did not have the turn');
    assert.deepEqual(await deliveryState(db, eventId), { failed_at: null }, 'the retried delivery is pending, not pruned');
    assert.equal(await pruneEvents(other, CUT, 100, 1000).then((b) => b?.pruned), 0, 'and later prunes keep it while it is pending');
    assert.equal(await retriedEntries(db), 1);
  });

  if (kind === 'postgres') test('a retry meeting a prune statement in flight waits for it, then answers 404', async () => {
    const { db, connectAgain } = await open();
    const other = await connectAgain(1);
    const { deps, endpointId, eventId } = await givenUpDelivery(db);
    let retry: Promise<unknown> | undefined;
    await other.transaction(async (tx) => {
      assert.deepEqual(await pruneEvents(tx, CUT, 100, 1000), { pruned: 1, full: false });
      retry = endpoints.retryDelivery(deps, SYSTEM_CONTEXT, endpointId, eventId).then(() => 'accepted', (e: unknown) => e);
      await sleep(300);
    });
    assert.equal(codeOf(await retry), 'not_found');
    assert.equal(await deliveryState(db, eventId), undefined);
    assert.equal(await retriedEntries(db), 0);
  });
});
