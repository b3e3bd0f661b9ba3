/**
 * An admin's request already past the guard when that admin is deactivated and demoted: the change
 * must not land. The guard authorises on arrival; each change checks its admin again in its own
 * transaction. The defender's change is made, with the API key, in the instant between the guard
 * and the rogue's transaction (held there by the test).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADMIN_ENV, adminCall, createAdmin } from '../helpers/admin.ts';
import { bearer, describeWithApp, PASSWORD, uniqueName, type TestApp } from '../helpers/app.ts';
import { beforeNextTransaction } from '../helpers/holds.ts';

const USERS = '/api/v1/admin/users';

/** The API key deactivates and demotes `id`, while the rogue's request waits before its transaction. */
function defendDuringNextChange(ta: TestApp, id: string) {
  return beforeNextTransaction(ta, async () => {
    const res = await adminCall(ta, 'PATCH', `${USERS}/${id}`, { is_active: false, roles: [] });
    assert.equal(res.statusCode, 200, res.body);
  });
}

async function stateOf(ta: TestApp, id: string) {
  return (await ta.deps.db.query<{ is_active: boolean; roles: string[] }>('SELECT is_active, roles FROM users WHERE id = $1', [id])).rows[0]!;
}

describeWithApp('admin changes check their admin again', (suite) => {
  test('a rogue admin\'s request to re-activate and re-promote itself, in flight during its deactivation: refused, nothing undone', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const rogue = await createAdmin(ta);
    const held = defendDuringNextChange(ta, rogue.uuid);
    const res = await ta.app.inject({ method: 'PATCH', url: `${USERS}/${rogue.uuid}`, headers: bearer(rogue.token), payload: { is_active: true, roles: ['admin'] } });
    assert.equal(held.fired(), true);
    assert.equal(res.statusCode, 403, res.body);
    assert.equal(res.json().code, 'admin_required');
    assert.deepEqual(await stateOf(ta, rogue.uuid), { is_active: false, roles: [] });
  });

  test('a request creating another admin, in flight during its admin\'s deactivation: refused, no account made', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const rogue = await createAdmin(ta);
    const username = uniqueName('backdoor');
    defendDuringNextChange(ta, rogue.uuid);
    const res = await ta.app.inject({
      method: 'POST', url: USERS, headers: bearer(rogue.token),
      payload: { username, email: `${username}@example.com`, password1: PASSWORD, password2: PASSWORD, roles: ['admin'] },
    });
    assert.equal(res.statusCode, 403, res.body);
    assert.equal((await ta.deps.db.query('SELECT 1 FROM users WHERE username = $1', [username])).rows.length, 0);
  });

  test('a webhook registration in flight during its admin\'s demotion: refused, no endpoint', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const rogue = await createAdmin(ta);
    defendDuringNextChange(ta, rogue.uuid);
    const res = await ta.app.inject({ method: 'POST', url: '/api/v1/admin/webhooks', headers: bearer(rogue.token), payload: { url: 'https://exfil.example.com/hook', events: ['*'] } });
    assert.equal(res.statusCode, 403, res.body);
    assert.equal((await ta.deps.db.query('SELECT 1 FROM webhook_endpoints')).rows.length, 0);
  });

  test('an admin still in office acts on itself and on others as before (the check passes, and demoting oneself works)', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const [a, b] = [await createAdmin(ta), await createAdmin(ta)];
    assert.equal((await ta.app.inject({ method: 'PATCH', url: `${USERS}/${b.uuid}`, headers: bearer(a.token), payload: { roles: [] } })).statusCode, 200);
    assert.equal((await ta.app.inject({ method: 'PATCH', url: `${USERS}/${a.uuid}`, headers: bearer(a.token), payload: { roles: [] } })).statusCode, 200);
    assert.deepEqual([(await stateOf(ta, a.uuid)).roles, (await stateOf(ta, b.uuid)).roles], [[], []]);
  });
});
