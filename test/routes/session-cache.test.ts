import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeJwt } from 'jose';
import { bearer, createUser, describeWithApp, loginTokens } from '../helpers/app.ts';

const CACHE = { SESSION_CHECK_CACHE_MS: '500' };

describeWithApp('session-check cache (SESSION_CHECK_CACHE_MS=500)', (suite) => {
  const userInfo = (app: import('fastify').FastifyInstance, token: string) => app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(token) });

  test('revocations made by this instance refuse the token at once, though the session was just checked', async (t) => {
    const { app } = await suite.build(t, { env: CACHE });
    const user = await createUser(app);
    const revokers: Array<[string, (a: { access_token: string; refresh_token: string }, b: { access_token: string }) => Promise<number>]> = [
      ['logout', async (a) => (await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: bearer(a.access_token) })).statusCode],
      ['logout-all from another session', async (_a, b) => (await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout-all', headers: bearer(b.access_token) })).statusCode],
      ['revoking it from another session', async (a, b) => (await app.inject({ method: 'DELETE', url: `/api/v1/auth-jwt/sessions/${decodeJwt(a.access_token).sid}`, headers: bearer(b.access_token) })).statusCode],
      ['password change in another session', async (_a, b) => (await app.inject({ method: 'POST', url: '/api/v1/user/password/change', headers: bearer(b.access_token), payload: { current_password: user.password, password1: user.password, password2: user.password } })).statusCode],
    ];
    for (const [label, revoke] of revokers) {
      const a = await loginTokens(app, user);
      const b = await loginTokens(app, user);
      assert.equal((await userInfo(app, a.access_token)).statusCode, 200, `${label}: live before`);
      assert.equal(await revoke(a, b), 204, label);
      const after = await userInfo(app, a.access_token);
      assert.equal(after.statusCode, 401, `${label}: refused at once`);
      assert.equal(after.json().code, 'invalid_token');
    }
  });

  test('a revocation by another instance is refused within the cache time (well inside 1 s)', async (t) => {
    const { app, deps } = await suite.build(t, { env: CACHE });
    const user = await createUser(app);
    const tokens = await loginTokens(app, user);
    t.mock.timers.enable({ apis: ['Date'], now: Date.now() });
    assert.equal((await userInfo(app, tokens.access_token)).statusCode, 200);
    // Another instance revokes: straight in the shared database, bypassing this process.
    await deps.db.query("UPDATE sessions SET revoked_at = $2, revoked_reason = 'elsewhere' WHERE id = $1", [decodeJwt(tokens.access_token).sid, deps.clock()]);
    t.mock.timers.tick(501);
    const res = await userInfo(app, tokens.access_token);
    assert.equal(res.statusCode, 401);
    assert.equal(res.json().code, 'invalid_token');
  });

  test('the cache never admits an unknown or ended session', async (t) => {
    const { app, deps } = await suite.build(t, { env: CACHE });
    const user = await createUser(app);
    const tokens = await loginTokens(app, user);
    await deps.db.query("UPDATE sessions SET revoked_at = $2, revoked_reason = 'test' WHERE id = $1", [decodeJwt(tokens.access_token).sid, deps.clock()]);
    assert.equal((await userInfo(app, tokens.access_token)).statusCode, 401, 'a session never seen live is checked in the database');
  });
});
