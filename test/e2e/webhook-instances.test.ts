/**
 * Two real service processes on one PostgreSQL database deliver one stream of events (issue 10):
 * users signed up through both instances, every user.created reaches the receiver exactly once, in
 * order of creation, although both instances' outbox workers compete for the same deliveries.
 * Needs a PostgreSQL server (DATABASE_URL); without it this file registers no test.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { freePort } from '../helpers/net.ts';
import { startService } from '../helpers/service-process.ts';
import { startReceiver } from '../helpers/webhook-receiver.ts';

const ADMIN_KEY = 'instances-test-admin-key-0123456789abcdef';

async function admin(url: string, sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

if (process.env.DATABASE_URL) {
  test('two instances on PostgreSQL deliver one stream: each event once, in order of creation', async (t) => {
    const adminUrl = process.env.DATABASE_URL!;
    const name = `twofold_test_${randomBytes(6).toString('hex')}`;
    await admin(adminUrl, `CREATE DATABASE ${name}`);
    t.after(() => admin(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    const u = new URL(adminUrl);
    u.pathname = `/${name}`;
    const receiver = await startReceiver();
    t.after(() => receiver.close());
    const dirs = [mkdtempSync(join(tmpdir(), 'twofold-i1-')), mkdtempSync(join(tmpdir(), 'twofold-i2-'))];
    t.after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
    const common = {
      HOST: '127.0.0.1', LOG_LEVEL: 'warn', NODE_ENV: 'development', DATABASE_URL: u.toString(), SMTP_URL: '', REDIS_URL: '', EVENTS_AMQP_URL: '',
      RATE_LIMIT_DISABLED: 'true', ADMIN_API_KEY: ADMIN_KEY, WEBHOOK_ALLOW_PRIVATE: 'true', OUTBOX_POLL_INTERVAL_MS: '50',
      // One signing key for both (as a shared key store would give them).
      TOKEN_HASH_KEY: randomBytes(32).toString('base64'), TOTP_ENCRYPTION_KEY: `k1:${randomBytes(32).toString('base64')}`,
    };
    const ports = [String(await freePort()), String(await freePort())];
    // One after the other: the first migrates the database.
    await startService({ ...common, PORT: ports[0]!, DATA_DIR: dirs[0]! }, t);
    await startService({ ...common, PORT: ports[1]!, DATA_DIR: dirs[1]! }, t);
    const bases = ports.map((p) => `http://127.0.0.1:${p}`);
    const reg = await fetch(`${bases[0]}/api/v1/admin/webhooks`, {
      method: 'POST', headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ url: receiver.url, events: ['user.created'] }),
    });
    assert.equal(reg.status, 201);
    receiver.secrets = [(await reg.json() as { secret: string }).secret];
    const password = 'a long and unusual passphrase 7';
    const uuids: string[] = [];
    for (let i = 0; i < 16; i++) {
      const res = await fetch(`${bases[i % 2]}/api/v1/user`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: `inst_${i}`, email: `inst_${i}@example.com`, password1: password, password2: password }),
      });
      assert.equal(res.status, 201);
      uuids.push((await res.json() as { uuid: string }).uuid);
    }
    await receiver.waitFor(16);
    // Both workers keep polling: give a duplicate every chance to show up before counting.
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(receiver.received.length, 16, 'no event twice');
    assert.ok(receiver.received.every((x) => x.verified?.type === 'user.created'));
    assert.deepEqual(receiver.received.map((x) => x.verified!.data.user_id), uuids, 'in order of creation');
    assert.equal(new Set(receiver.received.map((x) => x.id)).size, 16);
  });
}
