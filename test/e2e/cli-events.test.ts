/**
 * Changes made with the `twofold` command line are announced like the server's: the spawned CLI
 * (bin/twofold.js) writes, in the transaction of the change, the event and one delivery per
 * subscribed webhook endpoint (and one for the broker when its EVENTS_AMQP_URL is set), for the
 * running server's outbox worker to deliver. On the embedded database and, with DATABASE_URL, on PostgreSQL.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Database } from '../../src/db/database.ts';
import { insertEndpoint } from '../../src/db/repositories/events/endpoints.ts';
import { createTestDatabase } from '../helpers/pg-database.ts';
import { peekCliDatabase, runTwofold } from '../helpers/cli.ts';

const BOX_KEY = randomBytes(32);
const PASSWORD = 'a long and unusual passphrase 9';

async function ok(args: string[], env: Record<string, string>, stdin = ''): Promise<void> {
  const r = await runTwofold(args, { TOTP_ENCRYPTION_KEY: `test:${BOX_KEY.toString('base64')}`, ...env }, stdin);
  assert.equal(r.code, 0, `twofold ${args.join(' ')} failed (${r.code}):\n${r.stdout}${r.stderr}`);
}

const engines = process.env.DATABASE_URL ? ['pglite', 'postgres'] as const : ['pglite'] as const;

for (const kind of engines) {
  describe(`twofold CLI announces its changes as events [${kind}]`, () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'twofold-cli-events-'));
    const env: Record<string, string> = { DATA_DIR: dataDir };
    let pgDatabase: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
    before(async () => {
      if (kind === 'postgres') {
        pgDatabase = await createTestDatabase('postgres');
        env.DATABASE_URL = pgDatabase.url!;
      } else {
        await ok(['migrate'], env);
      }
    });
    after(async () => {
      await pgDatabase?.cleanup();
      rmSync(dataDir, { recursive: true, force: true });
    });

    /** Runs `fn` on the CLI's database between two commands. */
    const peek = <T>(fn: (db: Database) => Promise<T>): Promise<T> => peekCliDatabase(dataDir, pgDatabase?.db, fn);

    test('users create and users promote: an event and a delivery each, for the endpoint subscribed to *', async () => {
      const endpointId = '01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e11';
      await peek((db) => insertEndpoint(db, { id: endpointId, url: 'https://hooks.example.com/', description: '', eventTypes: ['*'], secretSealed: 'sealed', createdAt: new Date() }));
      await ok(['users', 'create', 'announced', 'announced@example.com', '--password-stdin', '--verified'], env, `${PASSWORD}\n`);
      await ok(['users', 'promote', 'announced', 'admin'], env);

      const rows = await peek(async (db) => (await db.query<{ type: string; target: string; endpoint_id: string | null; user_id: string }>(
        `SELECT e.type, d.target, d.endpoint_id, e.data->>'user_id' AS user_id FROM events e JOIN event_deliveries d ON d.event_id = e.id ORDER BY e.seq`)).rows);
      const user = await peek(async (db) => (await db.query<{ id: string }>(`SELECT id FROM users WHERE username = 'announced'`)).rows[0]!);
      assert.deepEqual(rows, [
        { type: 'user.created', target: endpointId, endpoint_id: endpointId, user_id: user.id },
        // --verified: the operator vouches for the address, announced as the link's verification is.
        { type: 'email.verified', target: endpointId, endpoint_id: endpointId, user_id: user.id },
        { type: 'user.updated', target: endpointId, endpoint_id: endpointId, user_id: user.id },
      ]);
    });

    test('with EVENTS_AMQP_URL in its environment, the CLI queues its events for the broker too', async () => {
      await peek((db) => db.query('DELETE FROM webhook_endpoints'));
      await ok(['users', 'create', 'brokered', 'brokered@example.com', '--password-stdin'], { ...env, EVENTS_AMQP_URL: 'amqp://guest:guest@127.0.0.1:5672' }, `${PASSWORD}\n`);
      const rows = await peek(async (db) => (await db.query<{ type: string; target: string }>(
        `SELECT e.type, d.target FROM events e JOIN event_deliveries d ON d.event_id = e.id WHERE e.data->>'user_id' = (SELECT id::text FROM users WHERE username = 'brokered')`)).rows);
      assert.deepEqual(rows, [{ type: 'user.created', target: 'amqp' }]);
    });
  });
}
