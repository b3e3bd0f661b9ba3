/**
 * GET /api/v1/admin/keys and POST /api/v1/admin/keys/rotate: behind the admin guard, audited as
 * admin.action, 201 with the new key in state next, served by the JWKS at once; concurrent rotations
 * each make one key and leave exactly one current. A fresh database per test: rotations change what
 * every app on a database signs with.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { decodeProtectedHeader } from 'jose';
import { grantRole } from '../../src/services/admin/roles.ts';
import { SYSTEM_CONTEXT } from '../../src/services/audit/record.ts';
import { buildTestApp, createUser, loginTokens, type TestApp } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall, createAdmin } from '../helpers/admin.ts';
import { withDatabases } from '../helpers/pg-database.ts';

const KEYS = '/api/v1/admin/keys';
const ROTATE = '/api/v1/admin/keys/rotate';

withDatabases('admin keys API', ({ open }) => {
  async function fresh(t: TestContext): Promise<TestApp> {
    const database = await open();
    return buildTestApp(t, database.db, { env: ADMIN_ENV });
  }
  const keyCount = async (ta: TestApp) => Number((await ta.deps.db.query<{ n: string }>('SELECT count(*)::text AS n FROM signing_keys')).rows[0]!.n);

  test('refused without credentials (401), to a non-admin and to an aal1 admin (403 admin_required); a refused rotation makes no key', async (t) => {
    const ta = await fresh(t);
    for (const [method, url] of [['GET', KEYS], ['POST', ROTATE]] as const) {
      const none = await ta.app.inject({ method, url });
      assert.equal(none.statusCode, 401, `${method} ${url}`);
      assert.equal(none.json().code, 'authentication_required');
    }
    const plain = await createUser(ta.app);
    const weakAdmin = await createUser(ta.app);
    await grantRole(ta.deps, weakAdmin.username, 'admin', SYSTEM_CONTEXT);
    for (const user of [plain, weakAdmin]) {
      const token = (await loginTokens(ta.app, user)).access_token;
      for (const [method, url] of [['GET', KEYS], ['POST', ROTATE]] as const) {
        const res = await adminCall(ta, method, url, undefined, token);
        assert.equal(res.statusCode, 403, `${user.username} ${method} ${url}`);
        assert.equal(res.json().code, 'admin_required');
        assert.equal(res.json().keys, undefined);
      }
    }
    assert.equal(await keyCount(ta), 1, 'no key was made by a refused call');
  });

  test('the API key lists and rotates: 201 the new key in state next, in the JWKS at once, audited as admin.action', async (t) => {
    const ta = await fresh(t);
    const listed = await adminCall(ta, 'GET', KEYS);
    assert.equal(listed.statusCode, 200);
    const [first] = listed.json().keys;
    assert.deepEqual(Object.keys(first).sort(), ['activates_at', 'alg', 'created_at', 'kid', 'state']);
    assert.equal(first.state, 'current');
    assert.equal(listed.headers['cache-control'], 'no-store');

    const res = await adminCall(ta, 'POST', ROTATE);
    assert.equal(res.statusCode, 201, res.body);
    const key = res.json();
    assert.equal(key.state, 'next');
    assert.equal(key.alg, 'RS256');
    assert.equal(new Date(key.activates_at).getTime() - new Date(key.created_at).getTime(), ta.deps.config.jwtKeyActivationDelaySeconds * 1000);
    assert.equal(JSON.stringify(key).includes('"d"'), false, 'no private key member');

    const after = (await adminCall(ta, 'GET', KEYS)).json().keys;
    assert.deepEqual(after.map((k: { kid: string; state: string }) => [k.kid, k.state]), [[key.kid, 'next'], [first.kid, 'current']]);
    assert.ok(after[1].retires_at, 'the current key has a retirement date once a successor exists');
    const jwks = (await ta.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json();
    assert.deepEqual(jwks.keys.map((k: { kid: string }) => k.kid), [first.kid, key.kid]);
    assert.ok(jwks.keys.every((k: Record<string, unknown>) => k.d === undefined && k.p === undefined), 'public parts only');

    const audit = (await ta.deps.db.query<{ actor_kind: string; data: Record<string, unknown> }>("SELECT actor_kind, data FROM audit_log WHERE type = 'admin.action'")).rows;
    assert.deepEqual(audit, [{ actor_kind: 'api_key', data: { action: 'keys.rotate', kid: key.kid, activates_at: key.activates_at } }]);

    // Until the activation the old key signs; from it the new one.
    const user = await createUser(ta.app);
    assert.equal(decodeProtectedHeader((await loginTokens(ta.app, user)).access_token).kid, first.kid);
    ta.clock.set(key.activates_at);
    assert.equal(decodeProtectedHeader((await loginTokens(ta.app, user)).access_token).kid, key.kid);
  });

  test('an aal2 admin rotates; the audit entry names the admin', async (t) => {
    const ta = await fresh(t);
    const admin = await createAdmin(ta);
    const res = await adminCall(ta, 'POST', ROTATE, undefined, admin.token);
    assert.equal(res.statusCode, 201, res.body);
    const row = (await ta.deps.db.query<{ actor_kind: string; actor_id: string }>("SELECT actor_kind, actor_id FROM audit_log WHERE type = 'admin.action'")).rows;
    assert.deepEqual(row, [{ actor_kind: 'admin', actor_id: admin.uuid }]);
  });

  test('20 concurrent rotations: 20 distinct next keys, one current, one audit entry each', async (t) => {
    const ta = await fresh(t);
    const results = await Promise.all(Array.from({ length: 20 }, () => adminCall(ta, 'POST', ROTATE)));
    assert.deepEqual(results.map((r) => r.statusCode), Array(20).fill(201));
    assert.equal(new Set(results.map((r) => r.json().kid)).size, 20);
    const keys = (await adminCall(ta, 'GET', KEYS)).json().keys as Array<{ state: string }>;
    assert.equal(keys.length, 21);
    assert.equal(keys.filter((k) => k.state === 'current').length, 1);
    assert.equal(keys.filter((k) => k.state === 'next').length, 20);
    assert.equal((await ta.deps.db.query("SELECT 1 FROM audit_log WHERE type = 'admin.action'")).rows.length, 20);
    ta.clock.advance(ta.deps.config.jwtKeyActivationDelaySeconds);
    const later = (await adminCall(ta, 'GET', KEYS)).json().keys as Array<{ state: string }>;
    assert.deepEqual(later.map((k) => k.state), ['current', ...Array(20).fill('previous')]);
  });
});
