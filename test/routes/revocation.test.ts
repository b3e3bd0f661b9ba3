import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeJwt } from 'jose';
import { bearer, createUser, describeWithApp, loginTokens } from '../helpers/app.ts';

describeWithApp('every way of revoking a session refuses its access token at once', (suite) => {
  const userInfo = (app: import('fastify').FastifyInstance, token: string) => app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(token) });

  test('logout, logout-all, revoking the session, and a password change elsewhere', async (t) => {
    const { app } = await suite.build(t);
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
});
