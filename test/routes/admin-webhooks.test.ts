/**
 * Issue 10 over HTTP: /api/v1/admin/webhooks* behind the admin guard, SSRF refusals at registration,
 * and the events of real flows (sign-up, login, logout, password change) fed by the audit follower,
 * delivered by the outbox worker's webhook lane to a receiver that verifies with `standardwebhooks`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { webhookLane } from '../../src/jobs/event-delivery.ts';
import { OutboxWorker } from '../../src/jobs/outbox-worker.ts';
import { EVENT_TYPES } from '../../src/services/events/publish.ts';
import { bearer, createTestClock, createUser, describeWithApp, login, loginTokens, testSecretBox, type TestApp } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';
import { startReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.ts';

const HOOKS = '/api/v1/admin/webhooks';
const ALLOW = { ...ADMIN_ENV, WEBHOOK_ALLOW_PRIVATE: 'true' };

function deliverer(ta: TestApp) {
  const { db, config, logger } = ta.deps;
  return new OutboxWorker({ db, clock: ta.clock, transport: ta.mail, logger, config, lanes: [webhookLane({ db, clock: ta.clock, logger, secretBox: testSecretBox, config })] });
}

async function receiverFor(t: { after(fn: () => Promise<void>): void }): Promise<WebhookReceiver> {
  const r = await startReceiver();
  t.after(() => r.close());
  return r;
}

describeWithApp('admin webhooks', (suite) => {
  // Receivers verify like real ones: the webhook-timestamp must be near their own clock.
  const build = (t: Parameters<typeof suite.build>[0], env: Record<string, string> = ALLOW) => suite.build(t, { env, clock: createTestClock(new Date()) });

  test('guarded: 401 without credentials, 403 admin_required for a user; secret shown once, never listed, stored sealed', async (t) => {
    const ta = await build(t);
    const user = await createUser(ta.app);
    const { access_token: token } = await loginTokens(ta.app, user);
    const routes: Array<['GET' | 'POST' | 'DELETE', string]> = [
      ['GET', HOOKS], ['POST', HOOKS], ['DELETE', `${HOOKS}/01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e11`],
      ['GET', `${HOOKS}/01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e11/deliveries`],
      ['POST', `${HOOKS}/01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e11/deliveries/01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e12/retry`],
      ['POST', `${HOOKS}/01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e11/retry`], ['POST', `${HOOKS}/01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e11/rotate-secret`],
    ];
    for (const [method, url] of routes) {
      const none = await ta.app.inject({ method, url, payload: method === 'POST' ? { url: 'http://x.example', events: ['*'] } : undefined });
      assert.equal(none.statusCode, 401, `${method} ${url}`);
      const asUser = await ta.app.inject({ method, url, headers: bearer(token), payload: method === 'POST' ? { url: 'http://x.example', events: ['*'] } : undefined });
      assert.equal(asUser.statusCode, 403, `${method} ${url}`);
      assert.equal(asUser.json().code, 'admin_required');
    }
    assert.equal((await adminCall(ta, 'GET', HOOKS)).json().length, 0, 'nothing was created by the refused calls');

    const created = await adminCall(ta, 'POST', HOOKS, { url: 'https://billing.example.com/hooks', events: ['session.revoked', 'user.deleted'], description: 'billing' });
    assert.equal(created.statusCode, 201);
    const body = created.json();
    assert.match(body.secret, /^whsec_[A-Za-z0-9+/]+=*$/);
    assert.deepEqual(body.events, ['session.revoked', 'user.deleted']);
    assert.equal(body.status, 'active');
    const list = await adminCall(ta, 'GET', HOOKS);
    assert.equal(list.statusCode, 200);
    assert.deepEqual(list.json().map((e: { id: string }) => e.id), [body.id]);
    assert.ok(!list.body.includes(body.secret) && !list.body.includes('secret'), 'no secret in the list');
    const stored = (await ta.deps.db.query<{ secret_sealed: string }>('SELECT secret_sealed FROM webhook_endpoints')).rows[0]!;
    assert.ok(!stored.secret_sealed.includes(body.secret.slice(6)), 'the secret is sealed at rest');
    const audit = (await ta.deps.db.query<{ data: { action: string }; actor_kind: string }>(`SELECT data, actor_kind FROM audit_log WHERE type = 'admin.action'`)).rows;
    assert.deepEqual(audit.map((a) => [a.data.action, a.actor_kind]), [['webhook.created', 'api_key']]);

    const rotated = await adminCall(ta, 'POST', `${HOOKS}/${body.id}/rotate-secret`);
    assert.equal(rotated.statusCode, 200);
    assert.notEqual(rotated.json().secret, body.secret);
    assert.equal((await adminCall(ta, 'DELETE', `${HOOKS}/${body.id}`)).statusCode, 204);
    assert.equal((await adminCall(ta, 'DELETE', `${HOOKS}/${body.id}`)).statusCode, 404);
    assert.equal((await adminCall(ta, 'GET', `${HOOKS}/${body.id}/deliveries`)).statusCode, 404);
  });

  test('SSRF: private, loopback, link-local and local-name targets are refused with 422 validation_failed; bad URLs and types too', async (t) => {
    const ta = await build(t, ADMIN_ENV);
    for (const url of [
      'http://127.0.0.1:8000/hook', 'http://localhost/hook', 'http://[::1]/hook', 'http://169.254.169.254/latest/meta-data', 'http://10.1.2.3/',
      'http://192.168.0.10/', 'http://172.20.0.1/', 'http://[::ffff:127.0.0.1]/', 'http://[fe80::1]/', 'http://0.0.0.0/', 'http://2130706433/',
      'http://0x7f.1/', 'http://api.localhost/', 'http://metadata/', 'ftp://files.example.com/', 'https://user:pw@hooks.example.com/', 'not a url', 'http://1.1.1.1:0/',
    ]) {
      const res = await adminCall(ta, 'POST', HOOKS, { url, events: ['*'] });
      assert.equal(res.statusCode, 422, url);
      assert.equal(res.json().code, 'validation_failed', url);
      assert.equal(res.json().errors[0].field, 'url', url);
    }
    for (const events of [[], ['user.exploded'], ['*', 'user.created'], ['login.failed']]) {
      const res = await adminCall(ta, 'POST', HOOKS, { url: 'https://hooks.example.com/', events });
      assert.equal(res.statusCode, 422, JSON.stringify(events));
    }
    assert.equal((await adminCall(ta, 'GET', HOOKS)).json().length, 0);
    assert.equal((await adminCall(ta, 'POST', HOOKS, { url: 'https://hooks.example.com/twofold', events: [...EVENT_TYPES] })).statusCode, 201);
  });

  test('real flows announce their events, signed and verifiable; session.revoked carries data.sid; no secret in any body', async (t) => {
    const ta = await build(t);
    const r = await receiverFor(t);
    const created = (await adminCall(ta, 'POST', HOOKS, { url: r.url, events: ['*'] })).json();
    r.secrets = [created.secret];
    const user = await createUser(ta.app);
    const { access_token: access } = await loginTokens(ta.app, user);
    assert.equal((await login(ta.app, { username: user.username, password: 'wrong password here' })).statusCode, 401);
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: bearer(access) })).statusCode, 204);
    await deliverer(ta).drain();
    const types = r.received.map((x) => x.verified?.type);
    assert.deepEqual(types, ['user.created', 'login.succeeded', 'session.revoked'], 'in order of creation; login.failed is not announced');
    for (const x of r.received) {
      assert.ok(x.verified, 'verified with standardwebhooks');
      assert.equal(x.verified.data.user_id, user.uuid);
      assert.ok(!x.body.includes(user.password) && !x.body.includes(access));
    }
    const sid = JSON.parse(Buffer.from(access.split('.')[1]!, 'base64url').toString()).sid as string;
    assert.equal(r.received[2]!.verified!.data.sid, sid);
    const log = (await adminCall(ta, 'GET', `${HOOKS}/${created.id}/deliveries`)).json();
    assert.deepEqual(log.map((d: { type: string; status: string }) => [d.type, d.status]), [['session.revoked', 'delivered'], ['login.succeeded', 'delivered'], ['user.created', 'delivered']]);
    assert.deepEqual(Object.keys(log[0]).sort(), ['attempts', 'created_at', 'delivered_at', 'event_id', 'failed_at', 'last_attempt_at', 'last_error', 'last_status_code', 'next_attempt_at', 'status', 'type']);
    // `limit`: the newest ones only; out of range or not a number is a 422, never a 500.
    const newest = (await adminCall(ta, 'GET', `${HOOKS}/${created.id}/deliveries?limit=2`)).json();
    assert.deepEqual(newest.map((d: { type: string }) => d.type), ['session.revoked', 'login.succeeded']);
    for (const bad of ['0', '101', 'x', '-1']) {
      const res = await adminCall(ta, 'GET', `${HOOKS}/${created.id}/deliveries?limit=${bad}`);
      assert.equal(res.statusCode, 422, `limit=${bad}`);
      assert.equal(res.json().code, 'validation_failed');
    }
    const again = await adminCall(ta, 'POST', `${HOOKS}/${created.id}/deliveries/${log[0].event_id}/retry`);
    assert.equal(again.statusCode, 409);
    assert.equal(again.json().code, 'already_delivered');
    assert.equal((await adminCall(ta, 'POST', `${HOOKS}/${created.id}/deliveries/01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e12/retry`)).statusCode, 404);
  });

  test('an admin erasing a user announces user.deleted; a password change announces password.changed and the other sessions revoked', async (t) => {
    const ta = await build(t);
    const r = await receiverFor(t);
    r.secrets = [(await adminCall(ta, 'POST', HOOKS, { url: r.url, events: ['user.deleted', 'password.changed', 'session.revoked'] })).json().secret];
    const user = await createUser(ta.app);
    const first = await loginTokens(ta.app, user);
    const second = await loginTokens(ta.app, user);
    const newPassword = 'another long and unusual passphrase';
    const changed = await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/change', headers: bearer(second.access_token), payload: { current_password: user.password, password1: newPassword, password2: newPassword } });
    assert.equal(changed.statusCode, 204, changed.body);
    assert.equal((await adminCall(ta, 'DELETE', `/api/v1/admin/users/${user.uuid}`)).statusCode, 204);
    await deliverer(ta).drain();
    const got = r.received.map((x) => [x.verified?.type, x.verified?.data.user_id]);
    const firstSid = JSON.parse(Buffer.from(first.access_token.split('.')[1]!, 'base64url').toString()).sid as string;
    assert.deepEqual(got[0], ['password.changed', user.uuid]);
    assert.deepEqual(r.received[1]!.verified!.data.sid, firstSid, 'the other session, revoked by the change');
    assert.deepEqual(got.at(-1), ['user.deleted', user.uuid]);
    assert.ok(r.received.every((x) => !x.body.includes(newPassword) && !x.body.includes(user.password)));
  });

  test('retry over HTTP: a failing receiver, one delivery and then all retried once it is back', async (t) => {
    const ta = await build(t);
    const r = await receiverFor(t);
    r.mode = { kind: 'status', status: 500 };
    const ep = (await adminCall(ta, 'POST', HOOKS, { url: r.url, events: ['user.created'] })).json();
    await createUser(ta.app);
    await createUser(ta.app);
    const w = deliverer(ta);
    await w.drain();
    assert.equal(r.received.length, 1, 'the second waits behind the first');
    let log = (await adminCall(ta, 'GET', `${HOOKS}/${ep.id}/deliveries`)).json();
    assert.deepEqual(log.map((d: { status: string; last_status_code: number | null }) => [d.status, d.last_status_code]), [['pending', null], ['pending', 500]]);
    r.mode = { kind: 'status', status: 200 };
    const one = await adminCall(ta, 'POST', `${HOOKS}/${ep.id}/deliveries/${log[1].event_id}/retry`);
    assert.equal(one.statusCode, 202);
    await w.drain();
    log = (await adminCall(ta, 'GET', `${HOOKS}/${ep.id}/deliveries`)).json();
    assert.deepEqual(log.map((d: { status: string }) => d.status), ['delivered', 'delivered']);
    const all = await adminCall(ta, 'POST', `${HOOKS}/${ep.id}/retry`);
    assert.equal(all.statusCode, 202);
    assert.equal(all.json().requeued, 0, 'nothing left to retry');
  });

  test('nothing audited and not announced: under dozens of simultaneous logins every audited catalogue entry has its event', async (t) => {
    const ta = await build(t);
    const ep = (await adminCall(ta, 'POST', HOOKS, { url: 'https://hooks.example.com/all', events: ['*'] })).json();
    const user = await createUser(ta.app);
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => login(ta.app, { username: user.username, password: i % 3 ? user.password : 'not the password' })));
    const ok = results.filter((x) => x.statusCode === 200).length;
    assert.ok(ok > 0);
    const count = async (sql: string) => Number((await ta.deps.db.query<{ n: string }>(sql)).rows[0]!.n);
    // The suite's database is shared with the other tests: count this user's rows only.
    const audited = await count(`SELECT count(*) AS n FROM audit_log WHERE user_id = '${user.uuid}' AND type = ANY ('{${EVENT_TYPES.join(',')}}'::text[])`);
    const mine = `FROM events WHERE data->>'user_id' = '${user.uuid}'`;
    assert.equal(await count(`SELECT count(*) AS n ${mine} AND type = 'login.succeeded'`), ok);
    assert.equal(await count(`SELECT count(*) AS n ${mine}`), audited);
    assert.equal(await count(`SELECT count(*) AS n FROM event_deliveries WHERE endpoint_id = '${ep.id}' AND event_id IN (SELECT id ${mine})`), audited, 'one delivery per event for the endpoint');
  });
});
