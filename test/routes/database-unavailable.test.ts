/**
 * While PostgreSQL refuses connections (its sessions terminated, new ones refused), API requests get
 * 503 service_unavailable with Retry-After, a problem document that names no internals, instead of
 * a bare 500 (the OpenID provider's pages: a try-again page, 503); once the database takes
 * connections again the same requests succeed. The database is
 * one of the test's own: `ALLOW_CONNECTIONS false` refuses new sessions (FATAL 55000) and
 * pg_terminate_backend ends the pool's (57P01, or "Connection terminated unexpectedly" for an idle one).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { bearer, buildTestApp, createTestClock, createUser, loginTokens, quietLogger, PASSWORD } from '../helpers/app.ts';
import { ADMIN_ENV, ADMIN_KEY } from '../helpers/admin.ts';
import { adminQuery, createTestDatabase } from '../helpers/pg-database.ts';

function assertUnavailable(res: LightMyRequestResponse, what: string): void {
  assert.equal(res.statusCode, 503, `${what}: ${res.body}`);
  assert.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8', what);
  assert.equal(res.json().code, 'service_unavailable', what);
  assert.equal(res.headers['retry-after'], '5', what);
  assert.doesNotMatch(res.body, /accepting|terminat|SELECT|postgres|at /i, what);
}

if (process.env.DATABASE_URL) {
  test('a database refusing connections: login, user-info and an admin call answer 503 with Retry-After, and work again after [postgres]', async (t) => {
    const adminUrl = process.env.DATABASE_URL!;
    const td = await createTestDatabase('postgres');
    const name = new URL(td.url!).pathname.slice(1);
    t.after(async () => {
      await adminQuery(adminUrl, `ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
      await td.cleanup();
    });
    const ta = await buildTestApp(t, td.db, { clock: createTestClock(new Date()), env: ADMIN_ENV, logger: quietLogger() });
    const user = await createUser(ta.app);
    const { access_token: access } = await loginTokens(ta.app, user);
    const calls = {
      login: () => ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: { username: user.username, password: PASSWORD } }),
      userInfo: () => ta.app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(access) }),
      admin: () => ta.app.inject({ method: 'GET', url: '/api/v1/admin/users', headers: bearer(ADMIN_KEY) }),
    };

    await adminQuery(adminUrl, `ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
    await adminQuery(adminUrl, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${name}'`);
    // Each call twice: the first may meet a pooled connection the server ended, the second opens a new one.
    for (const [what, call] of Object.entries(calls)) {
      assertUnavailable(await call(), what);
      assertUnavailable(await call(), `${what} again`);
    }
    const ready = await ta.app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 503);
    // The OpenID provider's error page (its engine looks the client up in the database): a try-again page.
    const page = await ta.app.inject({ method: 'GET', url: '/oidc/auth?client_id=some-app&response_type=code&scope=openid&redirect_uri=https://app.example/cb', headers: { accept: 'text/html' } });
    assert.equal(page.statusCode, 503, page.body);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.equal(page.headers['retry-after'], '5');
    assert.match(page.body, /temporarily_unavailable.*Try again in a few seconds/s);
    assert.doesNotMatch(page.body, /accepting|terminat|SELECT|postgres/i);

    await adminQuery(adminUrl, `ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
    assert.equal((await calls.login()).statusCode, 200);
    assert.equal((await calls.userInfo()).statusCode, 200);
    assert.equal((await calls.admin()).statusCode, 200);
  });
}
