/**
 * A backup-code login whose database goes away just after its transaction committed (a connection
 * ended, a failover). The code is spent and the session exists by then: the answer must carry the
 * tokens. The count of codes left was read in a statement of its own after the commit; when that read
 * failed, the login answered 500, and the same code was refused on the next try (spent), so the user
 * lost a single-use code and got no session. Now the count is taken inside the login's transaction.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { Database } from '../../src/db/database.ts';
import { buildTestApp, createUser, enableTotp, login, quietLogger, type TestApp, type TestUser } from '../helpers/app.ts';
import { loginMfa, mfaChallenge } from '../helpers/factors.ts';
import { withDatabases, type TestDatabase } from '../helpers/pg-database.ts';

/**
 * The database as the app sees it, which fails every statement outside a transaction from the moment
 * a transaction commits while `armed` (the server ended the pool's connections just then).
 */
function goneAfterCommit(d: TestDatabase): { db: Database; arm(): void; restore(): void } {
  let armed = false;
  let gone = false;
  const db: Database = Object.create(d.db) as Database;
  db.query = async (sql, params) => {
    if (gone) throw Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
    return d.db.query(sql, params);
  };
  db.transaction = async (fn) => {
    const out = await d.db.transaction(fn);
    if (armed) gone = true;
    return out;
  };
  return {
    db,
    arm: () => (armed = true),
    restore: () => {
      armed = false;
      gone = false;
    },
  };
}

async function codesLeft(d: TestDatabase, user: TestUser): Promise<number> {
  return (await d.db.query<{ n: number }>('SELECT count(*)::int AS n FROM backup_codes WHERE user_id = $1', [user.uuid])).rows[0]!.n;
}

async function setUp(t: TestContext, d: TestDatabase): Promise<{ ta: TestApp; user: TestUser; codes: string[]; outage: ReturnType<typeof goneAfterCommit> }> {
  const outage = goneAfterCommit(d);
  const ta = await buildTestApp(t, outage.db, { logger: quietLogger() });
  const user = await createUser(ta.app);
  const { backupCodes } = await enableTotp(ta, user);
  return { ta, user, codes: backupCodes, outage };
}

withDatabases('a backup-code login whose database goes away after the commit', ({ open }) => {
  test('one step (login with backup_code): 200 with the tokens and the count of codes left', async (t) => {
    const d = await open();
    const { ta, user, codes, outage } = await setUp(t, d);
    const before = await codesLeft(d, user);
    outage.arm();
    const res = await login(ta.app, { username: user.username, password: user.password, backup_code: codes[0] });
    outage.restore();
    assert.equal(res.statusCode, 200, res.body);
    assert.ok(res.json().access_token);
    assert.equal(res.json().backup_codes_remaining, before - 1);
    assert.equal(await codesLeft(d, user), before - 1);
  });

  test('second step (/login/mfa with a backup code): 200 with the tokens and the count of codes left', async (t) => {
    const d = await open();
    const { ta, user, codes, outage } = await setUp(t, d);
    const before = await codesLeft(d, user);
    const { mfa_token } = await mfaChallenge(ta, user);
    outage.arm();
    const res = await loginMfa(ta, mfa_token, 'backup_code', codes[1]!);
    outage.restore();
    assert.equal(res.statusCode, 200, res.body);
    assert.ok(res.json().access_token);
    assert.equal(res.json().backup_codes_remaining, before - 1);
  });
});
