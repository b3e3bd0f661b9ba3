/**
 * Admin changes act on every instance at once: a user locked through both login names on one
 * instance is unlocked through the other's admin API and can log in on the first; a user deactivated
 * on one instance is refused on the other with a token it issued. With REDIS_URL and DATABASE_URL set
 * (CI), the instances are separate PostgreSQL pools with separate limiters sharing one Redis; always,
 * the same scenario also runs on two apps sharing one PGlite and one in-process limiter.
 */
import assert from 'node:assert/strict';
import { loadConfig } from '../../src/config.ts';
import { bearer, createUser, login, loginTokens, type TestApp } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';
import { describeOnTwoInstances, type TwoInstanceScenario } from '../helpers/two-instances.ts';

const env = { ...ADMIN_ENV, LOCKOUT_MAX_FAILURES: '3', LOCKOUT_DURATION: '600' };
const limiterConfig = loadConfig({ NODE_ENV: 'test', ...env });

async function unlockOnOneFreesTheOther(a: TestApp, b: TestApp): Promise<void> {
  const user = await createUser(a.app);
  for (const name of [user.username, user.email]) {
    for (let i = 0; i < 3; i++) assert.equal((await login(a.app, { username: name, password: `wrong guess ${i} here` })).statusCode, 401);
    assert.equal((await login(a.app, { username: name, password: user.password })).statusCode, 429);
  }
  const view = (await adminCall(b, 'GET', `/api/v1/admin/users/${user.uuid}`)).json();
  assert.notEqual(view.locked_until, null, 'the other instance sees the lock');
  assert.equal((await adminCall(b, 'POST', `/api/v1/admin/users/${user.uuid}/unlock`)).statusCode, 204);
  assert.equal((await login(a.app, { username: user.email, password: user.password })).statusCode, 200);
  assert.equal((await login(a.app, { username: user.username, password: user.password })).statusCode, 200);
}

async function deactivationOnOneRefusesOnTheOther(a: TestApp, b: TestApp): Promise<void> {
  const user = await createUser(a.app);
  const tokens = await loginTokens(a.app, user);
  const before = await Promise.all(Array.from({ length: 20 }, () => a.app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(tokens.access_token) })));
  assert.ok(before.every((r) => r.statusCode === 200));
  assert.equal((await adminCall(b, 'PATCH', `/api/v1/admin/users/${user.uuid}`, { is_active: false })).statusCode, 200);
  const after = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(tokens.access_token) })));
  assert.ok(after.every((r) => r.statusCode === 401 || r.statusCode === 403), after.map((r) => r.statusCode).join());
}

const scenarios: TwoInstanceScenario[] = [
  ['an account locked by username and by e-mail on one instance is unlocked through the other', unlockOnOneFreesTheOther],
  ['deactivation through one instance refuses the user\'s live token on both at once', deactivationOnOneRefusesOnTheOther],
];

describeOnTwoInstances('admin changes across two app instances', env, limiterConfig, scenarios);
