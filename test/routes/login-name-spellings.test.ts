/**
 * Login names that PostgreSQL's lower() folds onto an account but JavaScript's toLowerCase() does not:
 * the dotted capital İ (U+0130) is "i" to the database and "i̇" (i + U+0307) to the limiter's key. Such
 * a spelling reached the account under a counter of its own: a fresh lockout budget per spelling, a
 * locked account still logged into (the e-mail routes' schemas already refuse such an address). Usernames
 * and addresses are ASCII (the sign-up schemas), so a login name with anything else names no account.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createUser, describeWithApp, login, uniqueName } from '../helpers/app.ts';

describeWithApp('login names with a dotted capital İ', (suite) => {
  test('a locked account is not reached through an İ spelling of its username or address, and the spellings get no budget of their own', async (t) => {
    const ta = await suite.build(t, { env: { LOCKOUT_MAX_FAILURES: '3', RATE_LIMIT_IP_MAX_FAILURES: '100' } });
    const user = await createUser(ta.app, { username: `vi${uniqueName().slice(0, 20)}`, email: `mailbox.${uniqueName()}@icloud.example` });
    const spellings = [user.username.replace('i', '\u0130'), user.email.replace('i', '\u0130'), user.username.toUpperCase().replace('I', '\u0130')];
    // The right password under each spelling, before any failure: not the account.
    for (const name of spellings) assert.equal((await login(ta.app, { username: name, password: user.password })).statusCode, 401, name);
    // Lock the account by its username, then try the right password under every spelling.
    for (let i = 0; i < 3; i++) assert.equal((await login(ta.app, { username: user.username, password: 'wrong password here' })).statusCode, 401);
    assert.equal((await login(ta.app, { username: user.username, password: user.password })).statusCode, 429, 'locked');
    for (const name of spellings) {
      const res = await login(ta.app, { username: name, password: user.password });
      assert.notEqual(res.statusCode, 200, `${name}: ${res.body}`);
      assert.ok(!res.body.includes('access_token'), name);
    }
  });
});
