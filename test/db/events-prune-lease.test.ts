/**
 * A webhook batch that prunes old events first claims its heads with a lease counted from after the
 * prune. The claim used the clock reading taken before it: a prune longer than the lease left the
 * heads a lease that had already ended, and another instance could claim and send the same event at
 * the same time. Here the prune "takes" longer than the lease by moving the clock while it runs.
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
import { webhookLane } from '../../src/jobs/event-delivery.ts';
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
        if (/^\s*DELETE FROM events e WHERE/.test(sql)) now += 600_000;
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
