/**
 * The admin unlock checks its admin again inside its transaction, like every other admin change: an
 * admin demoted or erased while the unlock is under way either unlocked before that change (its entry
 * comes first, and the change waited for it) or is refused (403 admin_required) and nothing is
 * recorded. Checked outside a transaction, the unlock passed the check, let the demotion commit, and
 * then cleared the locks and recorded the act of an admin who no longer was one.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { ADMIN_ENV, adminCall, createAdmin } from '../helpers/admin.ts';
import { bearer, createUser, describeWithApp, type TestApp } from '../helpers/app.ts';
import { beforeNextTransaction } from '../helpers/holds.ts';

const USERS = '/api/v1/admin/users';
const ROUNDS = 30;

/** Audit ids of a user's entries of `type` that `pick` accepts, in order. */
async function entryIds(ta: TestApp, userId: string, type: string, pick: (data: Record<string, unknown>) => boolean): Promise<bigint[]> {
  // ORDER BY the column: the text alias would sort '10' before '9'.
  const rows = (await ta.deps.db.query<{ id: string; data: Record<string, unknown> }>('SELECT id::text AS id, data FROM audit_log WHERE user_id = $1 AND type = $2 ORDER BY audit_log.id', [userId, type])).rows;
  return rows.filter((r) => pick(r.data)).map((r) => BigInt(r.id));
}

const isUnlock = (d: Record<string, unknown>) => d.action === 'unlock';
const isDemotion = (d: Record<string, unknown>) => JSON.stringify(d).includes('"to":[]');

/**
 * Resolves once some backend of the suite's PostgreSQL database waits for a lock (the server says so,
 * no sleep stands in for it), or once `done()`; bounded.
 */
async function untilLockWaitOrDone(ta: TestApp, done: () => boolean): Promise<void> {
  for (let i = 0; !done(); i++) {
    const waiting = await ta.deps.db.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
    if (waiting.rows.length > 0) return;
    if (i >= 500) throw new Error('the demotion neither finished nor waited for a lock');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describeWithApp('admin unlock re-checks its admin in its transaction', (suite) => {
  test('the admin is demoted (API key) at the moment the unlock clears the locks: the demotion waits for the unlock, which is recorded first', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const admin = await createAdmin(ta);
    const target = await createUser(ta.app);
    const limiter = ta.deps.limiter;
    const realClear = limiter.clearAccounts.bind(limiter);
    let demotion: Promise<LightMyRequestResponse> | undefined;
    limiter.clearAccounts = async (accounts) => {
      limiter.clearAccounts = realClear;
      // On PGlite (one connection) a transaction asked for while another is open waits for it; on
      // PostgreSQL the demotion waits for the admin's row. Either way it is not awaited while blocked.
      let requested!: () => void;
      const asked = new Promise<void>((resolve) => (requested = resolve));
      beforeNextTransaction(ta, async () => requested());
      let finished = false;
      demotion = adminCall(ta, 'PATCH', `${USERS}/${admin.uuid}`, { roles: [] }).finally(() => (finished = true));
      if (suite.kind === 'pglite') await Promise.race([demotion, asked]);
      else await Promise.race([demotion, untilLockWaitOrDone(ta, () => finished)]);
      return realClear(accounts);
    };
    const unlock = await ta.app.inject({ method: 'POST', url: `${USERS}/${target.uuid}/unlock`, headers: bearer(admin.token) });
    assert.ok(demotion, 'the unlock reached the limiter');
    assert.equal((await demotion).statusCode, 200);
    assert.equal(unlock.statusCode, 204, unlock.body);
    const [unlocks, demotions] = [await entryIds(ta, target.uuid, 'admin.action', isUnlock), await entryIds(ta, admin.uuid, 'user.updated', isDemotion)];
    assert.equal(unlocks.length, 1);
    assert.equal(demotions.length, 1);
    assert.ok(unlocks[0]! < demotions[0]!, 'the unlock, done by an admin, committed before the demotion');
  });

  test(`an unlock racing its admin's demotion (${ROUNDS} rounds at once): either it came first, or it is refused and unrecorded`, async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const admin = await createAdmin(ta);
    const target = await createUser(ta.app);
    for (let round = 0; round < ROUNDS; round++) {
      assert.equal((await adminCall(ta, 'PATCH', `${USERS}/${admin.uuid}`, { roles: ['admin'] })).statusCode, 200);
      const before = (await entryIds(ta, target.uuid, 'admin.action', isUnlock)).length;
      const [u, d] = await Promise.all([
        ta.app.inject({ method: 'POST', url: `${USERS}/${target.uuid}/unlock`, headers: bearer(admin.token) }),
        (async () => {
          // A different start each round, so the demotion lands at different points of the unlock.
          for (let i = 0; i < round; i++) await null;
          return adminCall(ta, 'PATCH', `${USERS}/${admin.uuid}`, { roles: [] });
        })(),
      ]);
      assert.equal(d.statusCode, 200, d.body);
      const unlocks = (await entryIds(ta, target.uuid, 'admin.action', isUnlock)).slice(before);
      const demotion = (await entryIds(ta, admin.uuid, 'user.updated', isDemotion)).at(-1)!;
      if (u.statusCode === 204) {
        assert.equal(unlocks.length, 1);
        assert.ok(unlocks[0]! < demotion, `round ${round}: the unlock was recorded after its admin's demotion had committed`);
      } else {
        assert.equal(u.statusCode, 403, u.body);
        assert.equal(u.json().code, 'admin_required');
        assert.deepEqual(unlocks, [], `round ${round}: a refused unlock recorded nothing`);
      }
    }
  });

  test('an unlock racing the erasure of its admin: never recorded after the erasure', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const target = await createUser(ta.app);
    for (let round = 0; round < 8; round++) {
      const admin = await createAdmin(ta);
      const before = (await entryIds(ta, target.uuid, 'admin.action', isUnlock)).length;
      const [u, d] = await Promise.all([
        ta.app.inject({ method: 'POST', url: `${USERS}/${target.uuid}/unlock`, headers: bearer(admin.token) }),
        (async () => {
          for (let i = 0; i < round; i++) await null;
          return adminCall(ta, 'DELETE', `${USERS}/${admin.uuid}`);
        })(),
      ]);
      assert.equal(d.statusCode, 204, d.body);
      const unlocks = (await entryIds(ta, target.uuid, 'admin.action', isUnlock)).slice(before);
      const erased = (await entryIds(ta, admin.uuid, 'user.deleted', () => true))[0]!;
      // 401 when the guard already found the session erased.
      assert.ok([204, 401, 403].includes(u.statusCode), `${u.statusCode} ${u.body}`);
      if (u.statusCode === 204) assert.ok(unlocks.length === 1 && unlocks[0]! < erased, `round ${round}: recorded after the erasure`);
      else assert.deepEqual(unlocks, []);
    }
  });
});
