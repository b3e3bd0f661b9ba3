/**
 * RFC 7662 introspection and role changes. A service that asks `/introspect` instead of verifying
 * the JWT offline does so to see changes at once: a role an admin took away must not be answered
 * any more, while the token lives on. A role granted after the token was issued is not answered
 * either: the token never claimed it, and it arrives with the next token (as offline).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeJwt } from 'jose';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { bearer, createUser, describeWithApp, enableTotp, login, loginTokens, nextTotpStep, type TestApp } from '../helpers/app.ts';
import { beforeNextTransaction } from '../helpers/holds.ts';
import { addPasskey, signInWithPasskey } from '../helpers/passkeys.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';

const INTROSPECT = '/api/v1/auth-jwt/introspect';
const SECRET = 'introspection-secret-for-tests-0123456789';
const env = { ...ADMIN_ENV, INTROSPECTION_SECRET: SECRET };

function introspect(ta: TestApp, token: string) {
  return ta.app.inject({ method: 'POST', url: INTROSPECT, headers: bearer(SECRET), payload: { token } });
}

async function setRoles(ta: TestApp, uuid: string, roles: string[]): Promise<void> {
  const res = await adminCall(ta, 'PATCH', `/api/v1/admin/users/${uuid}`, { roles });
  assert.equal(res.statusCode, 200, res.body);
}

const sorted = (roles: unknown): string[] => [...(roles as string[])].sort();

describeWithApp('introspection answers only the roles the user still holds', (suite) => {
  test('a role removed by an admin disappears from introspection at once; the others stay', async (t) => {
    const ta = await suite.build(t, { env });
    const user = await createUser(ta.app);
    await setRoles(ta, user.uuid, ['billing.admin', 'support']);
    const { access_token } = await loginTokens(ta.app, user);
    assert.deepEqual(sorted(decodeJwt(access_token).roles), ['billing.admin', 'support'], 'the token carries both');

    const before = await introspect(ta, access_token);
    assert.equal(before.statusCode, 200);
    assert.deepEqual(sorted(before.json().roles), ['billing.admin', 'support']);

    await setRoles(ta, user.uuid, ['support']);
    const after = await introspect(ta, access_token);
    assert.equal(after.statusCode, 200);
    const body = after.json();
    assert.equal(body.active, true, 'a role change does not end the session');
    assert.equal(body.sub, user.uuid);
    assert.deepEqual(body.roles, ['support']);
    assert.ok(!body.roles.includes('billing.admin'), 'the removed role must not be granted by introspection');

    await setRoles(ta, user.uuid, []);
    const none = (await introspect(ta, access_token)).json();
    assert.equal(none.active, true);
    assert.deepEqual(none.roles, [], 'every role taken away: none answered');
  });

  test('a role granted after the token was issued is not answered for that token (never more than the token)', async (t) => {
    const ta = await suite.build(t, { env });
    const user = await createUser(ta.app);
    await setRoles(ta, user.uuid, ['support']);
    const { access_token } = await loginTokens(ta.app, user);

    await setRoles(ta, user.uuid, ['support', 'admin']);
    const res = (await introspect(ta, access_token)).json();
    assert.equal(res.active, true);
    assert.deepEqual(res.roles, ['support']);

    // Swapped: the token's role removed, another one added; the answer is empty, not the new role.
    await setRoles(ta, user.uuid, ['admin']);
    const swapped = (await introspect(ta, access_token)).json();
    assert.deepEqual(swapped.roles, []);

    // A token issued now carries the stored roles, and introspection answers them.
    const fresh = await loginTokens(ta.app, user);
    assert.deepEqual((await introspect(ta, fresh.access_token)).json().roles, ['admin']);
  });

  test('a role removed while a login is in flight is not signed into its token (password, two-step, passkey)', async (t) => {
    const ta = await suite.build(t, { env });
    const inFlight = async (uuid: string, start: () => Promise<{ statusCode: number; body: string; json(): { access_token: string } }>) => {
      await setRoles(ta, uuid, ['billing_admin']);
      // The login's checks have passed; the admin's change commits before its transaction.
      const hold = beforeNextTransaction(ta, () => setRoles(ta, uuid, []));
      const res = await start();
      assert.ok(hold.fired());
      assert.equal(res.statusCode, 200, res.body);
      return decodeJwt(res.json().access_token).roles;
    };
    const plain = await createUser(ta.app);
    assert.deepEqual(await inFlight(plain.uuid, () => login(ta.app, { username: plain.username, password: plain.password })), []);

    const twoStep = await createUser(ta.app);
    const { secret } = await enableTotp(ta, twoStep);
    nextTotpStep(ta.clock);
    const challenge = await login(ta.app, { username: twoStep.username, password: twoStep.password });
    assert.equal(challenge.statusCode, 403);
    assert.deepEqual(await inFlight(twoStep.uuid, () => ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/mfa', payload: { mfa_token: challenge.json().mfa_token, method: 'totp', code: totpCodeAt(secret, ta.clock()) } })), []);

    const withKey = await createUser(ta.app);
    const { authenticator } = await addPasskey(ta, (await loginTokens(ta.app, withKey)).access_token);
    assert.deepEqual(await inFlight(withKey.uuid, () => signInWithPasskey(ta, authenticator)), []);
  });
});
