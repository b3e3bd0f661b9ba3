import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeJwt } from 'jose';
import { upsertLink } from '../../src/db/repositories/oidc/links.ts';
import { bearer, createUser, describeWithApp, loginTokens } from '../helpers/app.ts';

// The OpenID provider is built on first use (src/oidc/engine.ts). These tests run in order: the first
// needs a database without session links.
describeWithApp('the OpenID provider is loaded when something needs it, and only once', (suite) => {
  test('the JSON API and a sweep with nothing to end leave it unloaded', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const tokens = await loginTokens(app, user);
    assert.equal((await app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(tokens.access_token) })).statusCode, 200);
    assert.equal((await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: bearer(tokens.access_token) })).statusCode, 204);
    await app.oidc.sweeper.run();
    assert.equal(app.oidc.engine.loaded, false);
    assert.equal(app.oidc.engine.builds, 0);
  });

  test('thirty simultaneous first requests build one provider and all get the discovery document', async (t) => {
    const { app } = await suite.build(t);
    const answers = await Promise.all(Array.from({ length: 30 }, () => app.inject({ method: 'GET', url: '/.well-known/openid-configuration' })));
    assert.deepEqual(answers.map((a) => a.statusCode), Array(30).fill(200));
    assert.equal(new Set(answers.map((a) => a.body)).size, 1);
    assert.equal(answers[0]!.json().issuer, 'http://127.0.0.1:8000');
    assert.equal(app.oidc.engine.loaded, true);
    assert.equal(app.oidc.engine.builds, 1);
  });

  test('an instance that never served OpenID still ends the application sessions another instance logged in', async (t) => {
    const first = await suite.build(t);
    const other = await suite.build(t, { db: first.deps.db });
    const user = await createUser(first.app);
    const tokens = await loginTokens(first.app, user);
    const sessionId = String(decodeJwt(tokens.access_token).sid);
    // What the first instance records when a login through the provider resumes (mount.ts).
    await upsertLink(first.deps.db, 'provider-session-of-another-instance', sessionId, user.uuid, first.clock());
    // Ended in the database, not through a route: a logout would start the first instance's own sweep.
    await first.deps.db.query('UPDATE sessions SET revoked_at = $2 WHERE id = $1', [sessionId, first.clock()]);
    assert.equal(other.app.oidc.engine.loaded, false);
    await other.app.oidc.sweeper.run();
    assert.equal(other.app.oidc.engine.loaded, true);
    const left = await first.deps.db.query('SELECT 1 FROM oidc_session_links WHERE provider_session_uid = $1', ['provider-session-of-another-instance']);
    assert.equal(left.rows.length, 0, 'the sweep ended the link');
  });
});
