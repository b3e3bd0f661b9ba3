import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { safeEqual } from '../../src/crypto/token-hash.ts';
import { grantRole, revokeRole } from '../../src/services/admin/roles.ts';
import { SYSTEM_CONTEXT } from '../../src/services/audit/record.ts';
import { bearer, createUser, describeWithApp, enableTotp, loginTokens } from '../helpers/app.ts';
import { ADMIN_ENV, ADMIN_KEY, adminCall, createAdmin } from '../helpers/admin.ts';

const AUDIT = '/api/v1/admin/audit';

describeWithApp('admin guard', (suite) => {
  test('401 without credentials; the API key opens it; a wrong, truncated or extended key is 403 admin_required', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const none = await ta.app.inject({ method: 'GET', url: AUDIT });
    assert.equal(none.statusCode, 401);
    assert.equal(none.json().code, 'authentication_required');
    assert.equal((await adminCall(ta, 'GET', AUDIT)).statusCode, 200);
    const lastCharChanged = ADMIN_KEY.slice(0, -1) + (ADMIN_KEY.endsWith('p') ? 'q' : 'p');
    for (const key of [lastCharChanged, ADMIN_KEY.slice(0, -1), `${ADMIN_KEY}x`, ADMIN_KEY.toUpperCase(), 'x']) {
      const res = await adminCall(ta, 'GET', AUDIT, undefined, key);
      assert.equal(res.statusCode, 403, key);
      assert.equal(res.json().code, 'admin_required');
      assert.equal(res.json().events, undefined);
    }
    // The key is a program's Bearer secret; as a cookie it opens nothing.
    const asCookie = await ta.app.inject({ method: 'GET', url: AUDIT, cookies: { access_token: ADMIN_KEY } });
    assert.equal(asCookie.statusCode, 403);
    assert.equal(asCookie.json().code, 'admin_required');
  });

  test('without ADMIN_API_KEY no bearer secret opens the admin API', async (t) => {
    const ta = await suite.build(t);
    for (const key of [ADMIN_KEY, '', 'undefined']) {
      const res = await ta.app.inject({ method: 'GET', url: AUDIT, headers: { authorization: `Bearer ${key}` } });
      assert.ok(res.statusCode === 403 || res.statusCode === 401, `${key}: ${res.statusCode}`);
      assert.notEqual(res.statusCode, 200);
    }
  });

  test('people: non-admin refused, admin at aal1 refused, admin at aal2 admitted; demotion and deactivation act at once', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const plain = await createUser(ta.app);
    const plainToken = (await loginTokens(ta.app, plain)).access_token;
    const r1 = await adminCall(ta, 'GET', AUDIT, undefined, plainToken);
    assert.equal(r1.statusCode, 403);
    assert.equal(r1.json().code, 'admin_required');

    // An aal2 user without the role.
    const strong = await createUser(ta.app);
    const strongToken = (await enableTotp(ta, strong)).tokens.access_token;
    assert.equal((await adminCall(ta, 'GET', AUDIT, undefined, strongToken)).json().code, 'admin_required');

    // The admin role with a password alone (aal1).
    const weakAdmin = await createUser(ta.app);
    await grantRole(ta.deps, weakAdmin.username, 'admin', SYSTEM_CONTEXT);
    const weakToken = (await loginTokens(ta.app, weakAdmin)).access_token;
    const r2 = await adminCall(ta, 'GET', AUDIT, undefined, weakToken);
    assert.equal(r2.statusCode, 403);
    assert.equal(r2.json().code, 'admin_required');

    // The role granted after the token was signed: the token does not carry it (next token does).
    const stale = await createUser(ta.app);
    const staleToken = (await enableTotp(ta, stale)).tokens.access_token;
    await grantRole(ta.deps, stale.username, 'admin', SYSTEM_CONTEXT);
    assert.equal((await adminCall(ta, 'GET', AUDIT, undefined, staleToken)).statusCode, 403);

    const admin = await createAdmin(ta);
    assert.equal((await adminCall(ta, 'GET', AUDIT, undefined, admin.token)).statusCode, 200);
    const viaCookie = await ta.app.inject({ method: 'GET', url: AUDIT, cookies: { access_token: admin.token } });
    assert.equal(viaCookie.statusCode, 200);
    // Cookie-borne admin calls obey the CSRF rule.
    const crossSite = await ta.app.inject({ method: 'POST', url: '/api/v1/admin/users', cookies: { access_token: admin.token }, headers: { origin: 'https://evil.example' }, payload: {} });
    assert.equal(crossSite.statusCode, 403);
    assert.equal(crossSite.json().code, 'csrf_rejected');

    // Demotion closes the admin API at once, although the token still says admin.
    await revokeRole(ta.deps, admin.username, 'admin', SYSTEM_CONTEXT);
    assert.equal((await adminCall(ta, 'GET', AUDIT, undefined, admin.token)).json().code, 'admin_required');
    await grantRole(ta.deps, admin.username, 'admin', SYSTEM_CONTEXT);
    assert.equal((await adminCall(ta, 'GET', AUDIT, undefined, admin.token)).statusCode, 200);

    // Deactivation refuses the live token at once.
    await ta.deps.db.query('UPDATE users SET is_active = false WHERE id = $1', [admin.uuid]);
    const inactive = await adminCall(ta, 'GET', AUDIT, undefined, admin.token);
    assert.equal(inactive.statusCode, 403);
    assert.equal(inactive.json().code, 'account_inactive');
  });

  test('a forged or tampered token is 401 invalid_token; authentication comes before the body (no 415/422 for strangers)', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const admin = await createAdmin(ta);
    const [h, p, s] = admin.token.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, roles: ['admin'], aal: 'aal2', sub: '00000000-0000-4000-8000-000000000000' })).toString('base64url')}.${s}`;
    const res = await adminCall(ta, 'GET', AUDIT, undefined, forged);
    assert.equal(res.statusCode, 401);
    assert.equal(res.json().code, 'invalid_token');
    const stranger = await ta.app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: { 'content-type': 'text/plain' }, payload: 'x' });
    assert.equal(stranger.statusCode, 401);
    const nonAdmin = await ta.app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: { ...bearer('nope'), 'content-type': 'application/json' }, payload: '{not json' });
    assert.equal(nonAdmin.statusCode, 403);
  });
});

describeWithApp('every admin endpoint is guarded', (suite) => {
  test('each documented /api/v1/admin route: 401 without credentials, 403 admin_required for a user, an aal1 admin and a wrong key', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const strong = await createUser(ta.app);
    const strongToken = (await enableTotp(ta, strong)).tokens.access_token;
    const weakAdmin = await createUser(ta.app);
    await grantRole(ta.deps, weakAdmin.username, 'admin', SYSTEM_CONTEXT);
    const weakToken = (await loginTokens(ta.app, weakAdmin)).access_token;
    const paths = (ta.app.swagger() as { paths: Record<string, Record<string, unknown>> }).paths;
    const routes = Object.entries(paths)
      .filter(([path]) => path.startsWith('/api/v1/admin/'))
      .flatMap(([path, ops]) => Object.keys(ops).map((m) => [m.toUpperCase(), path.replace(/\{[^}]+\}/g, '00000000-0000-4000-8000-000000000000')] as const));
    assert.ok(routes.length >= 10, `${routes.length} admin routes`);
    for (const [method, url] of routes) {
      const inject = (headers: Record<string, string>) => ta.app.inject({ method: method as 'GET', url, headers: { ...headers, 'content-type': 'application/json' }, payload: method === 'GET' ? undefined : '{}' });
      const none = await inject({});
      assert.equal(none.statusCode, 401, `${method} ${url} without credentials`);
      for (const [who, token] of [['aal2 user', strongToken], ['aal1 admin', weakToken], ['wrong key', ADMIN_KEY.replace(/.$/, '_')]] as const) {
        const res = await inject(bearer(token));
        assert.equal(res.statusCode, 403, `${method} ${url} as ${who}`);
        assert.equal(res.json().code, 'admin_required', `${method} ${url} as ${who}`);
      }
    }
  });
});

test('ADMIN_API_KEY shorter than 32 characters stops start-up, naming the variable', () => {
  assert.throws(() => loadConfig({ NODE_ENV: 'test', ADMIN_API_KEY: 'a'.repeat(31) }), (e: unknown) => e instanceof ConfigError && /ADMIN_API_KEY/.test(e.message));
  assert.equal(loadConfig({ NODE_ENV: 'test', ADMIN_API_KEY: 'a'.repeat(32) }).adminApiKey, 'a'.repeat(32));
  assert.equal(loadConfig({ NODE_ENV: 'test' }).adminApiKey, undefined);
});

test('the key comparison is constant-time: equal-length digests through timingSafeEqual, whatever the lengths', () => {
  // safeEqual hashes both sides (SHA-256) and compares the digests with crypto.timingSafeEqual: the
  // time depends on neither the common prefix nor the length of a guess. Different lengths must not throw.
  assert.equal(safeEqual(ADMIN_KEY, ADMIN_KEY), true);
  assert.equal(safeEqual(ADMIN_KEY.slice(0, -1), ADMIN_KEY), false);
  assert.equal(safeEqual('', ADMIN_KEY), false);
  assert.equal(safeEqual('x'.repeat(10_000), ADMIN_KEY), false);
});
