/**
 * An address an admin vouches for (PATCH or POST /api/v1/admin/users with `email_verified: true`) is
 * recorded and announced as `email.verified`, as the user's own link is: a service that follows only
 * that event type must hear of it too. The entry has the link's data plus `by_admin: true` and names
 * the admin; a PATCH that does not turn the flag from false to true records none.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TestApp } from '../helpers/app.ts';
import { PASSWORD, createUser, describeWithApp, uniqueName } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall, auditRowsOf, auditTypesOf, createAdmin } from '../helpers/admin.ts';

const USERS = '/api/v1/admin/users';

/** A webhook endpoint that follows only email.verified (events are stored only for a subscriber). */
async function followVerifications(ta: TestApp): Promise<void> {
  const res = await adminCall(ta, 'POST', '/api/v1/admin/webhooks', { url: 'https://hooks.example.com/verified', events: ['email.verified'] });
  assert.equal(res.statusCode, 201, res.body);
}

/** The data of the email.verified events about `userId`, oldest first. */
async function verifiedEvents(ta: TestApp, userId: string): Promise<Record<string, unknown>[]> {
  const r = await ta.deps.db.query<{ data: Record<string, unknown> }>("SELECT data FROM events WHERE type = 'email.verified' AND data->>'user_id' = $1 ORDER BY seq", [userId]);
  return r.rows.map((row) => row.data);
}

async function verifiedEntries(ta: TestApp, userId: string) {
  return (await auditRowsOf(ta, userId)).filter((r) => r.type === 'email.verified').map((r) => ({ actor: r.actor_kind, data: r.data }));
}

describeWithApp('an address vouched for by an admin', (suite) => {
  test('PATCH email_verified false→true records and announces email.verified; true→true and →false do not', async (t) => {
    const ta = await suite.build(t, { env: { ...ADMIN_ENV, REQUIRE_EMAIL_VERIFICATION: 'true' } });
    await followVerifications(ta);
    const user = await createUser(ta.app);
    const patched = await adminCall(ta, 'PATCH', `${USERS}/${user.uuid}`, { email_verified: true });
    assert.equal(patched.statusCode, 200, patched.body);
    assert.equal(patched.json().is_active, true, 'inactive only until verified: now active');
    assert.deepEqual(await auditTypesOf(ta, user.uuid), ['user.created', 'email.verified', 'user.updated']);
    assert.deepEqual(await verifiedEntries(ta, user.uuid), [{ actor: 'api_key', data: { is_active: true, by_admin: true } }]);
    assert.deepEqual(await verifiedEvents(ta, user.uuid), [{ user_id: user.uuid, is_active: true, by_admin: true }]);

    // Already verified: nothing changes, nothing is recorded. Unverifying is a user.updated only.
    assert.equal((await adminCall(ta, 'PATCH', `${USERS}/${user.uuid}`, { email_verified: true })).statusCode, 200);
    assert.equal((await adminCall(ta, 'PATCH', `${USERS}/${user.uuid}`, { email_verified: false })).statusCode, 200);
    assert.equal((await adminCall(ta, 'PATCH', `${USERS}/${user.uuid}`, { email_verified: false })).statusCode, 200);
    assert.deepEqual(await auditTypesOf(ta, user.uuid), ['user.created', 'email.verified', 'user.updated', 'user.updated']);
    assert.equal((await verifiedEvents(ta, user.uuid)).length, 1);

    // Vouched for again in the PATCH that deactivates: is_active is the account's state after it.
    assert.equal((await adminCall(ta, 'PATCH', `${USERS}/${user.uuid}`, { email_verified: true, is_active: false })).statusCode, 200);
    assert.deepEqual((await verifiedEntries(ta, user.uuid)).at(-1), { actor: 'api_key', data: { is_active: false, by_admin: true } });
    assert.deepEqual((await verifiedEvents(ta, user.uuid)).at(-1), { user_id: user.uuid, is_active: false, by_admin: true });
  });

  test('POST with email_verified: true records and announces email.verified naming the admin; without it, none', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    await followVerifications(ta);
    const admin = await createAdmin(ta);
    const name = uniqueName('vouched');
    const created = await adminCall(ta, 'POST', USERS, { username: name, email: `${name}@example.com`, password1: PASSWORD, password2: PASSWORD, email_verified: true }, admin.token);
    assert.equal(created.statusCode, 201, created.body);
    const uuid = created.json().uuid as string;
    const rows = await auditRowsOf(ta, uuid);
    assert.deepEqual(rows.map((r) => r.type), ['user.created', 'email.verified']);
    assert.deepEqual([rows[1]!.actor_kind, rows[1]!.actor_id, rows[1]!.data], ['admin', admin.uuid, { is_active: true, by_admin: true }]);
    assert.deepEqual(await verifiedEvents(ta, uuid), [{ user_id: uuid, is_active: true, by_admin: true }]);

    const other = uniqueName('plain');
    const plain = await adminCall(ta, 'POST', USERS, { username: other, email: `${other}@example.com`, password1: PASSWORD, password2: PASSWORD, email_verified: false });
    assert.equal(plain.statusCode, 201, plain.body);
    assert.deepEqual(await auditTypesOf(ta, plain.json().uuid), ['user.created']);
    assert.deepEqual(await verifiedEvents(ta, plain.json().uuid), []);
  });
});
