/**
 * A username that is also a fixed path under `/api/v1/user/` cannot be taken: its public profile
 * (`GET /api/v1/user/{username}`) would be shadowed by that route. Sign-up, the admin API and the
 * command line (all through registerUser) answer 409 username_taken, in any case; and every such GET
 * route the app serves is on the reserved list, so a route added later cannot shadow a profile.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RESERVED_USERNAMES, USERNAME_PATTERN } from '../../src/security/login-names.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';
import { PASSWORD, buildTestApp } from '../helpers/app.ts';
import { withDatabases } from '../helpers/pg-database.ts';

withDatabases('reserved usernames', ({ open }) => {
  test('a fixed path under /api/v1/user/ cannot be signed up or created as a username', async (t) => {
    const d = await open();
    const ta = await buildTestApp(t, d.db, { env: ADMIN_ENV });
    for (const username of ['security-events', 'Security-Events']) {
      const email = `${username.toLowerCase()}-${Math.random().toString(36).slice(2, 8)}@example.com`;
      const signup = await ta.app.inject({ method: 'POST', url: '/api/v1/user', payload: { username, email, password1: PASSWORD, password2: PASSWORD } });
      assert.equal(signup.statusCode, 409, signup.body);
      assert.equal(signup.json().code, 'username_taken');
      const created = await adminCall(ta, 'POST', '/api/v1/admin/users', { username, email, password1: PASSWORD, password2: PASSWORD });
      assert.equal(created.statusCode, 409, created.body);
      assert.equal(created.json().code, 'username_taken');
    }
    const users = await ta.deps.db.query("SELECT 1 FROM users WHERE lower(username) = 'security-events'");
    assert.equal(users.rows.length, 0, 'no such account was stored');
  });

  test('every GET route at /api/v1/user/<a name a username could have> is reserved', async (t) => {
    const d = await open();
    const ta = await buildTestApp(t, d.db, { env: ADMIN_ENV });
    const doc = (await ta.app.inject({ method: 'GET', url: '/openapi.json' })).json() as { paths: Record<string, Record<string, unknown>> };
    const shadowing = Object.entries(doc.paths)
      .filter(([path, ops]) => 'get' in ops && /^\/api\/v1\/user\/[^/{}]+$/.test(path))
      .map(([path]) => path.slice('/api/v1/user/'.length))
      .filter((segment) => new RegExp(USERNAME_PATTERN).test(segment));
    assert.ok(shadowing.includes('security-events'), `the routes found: ${shadowing.join(', ')}`);
    for (const segment of shadowing) assert.ok(RESERVED_USERNAMES.has(segment.toLowerCase()), `${segment} is not reserved`);
  });
});
