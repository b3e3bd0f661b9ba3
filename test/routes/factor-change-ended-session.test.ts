/**
 * A factor change asked for by a session that ends while the request runs (the owner's password reset
 * or "log out everywhere" committing in between) changes nothing: 401 invalid_token. Otherwise a
 * thief's session could bind its own TOTP or passkey in the instant after the owner recovered the
 * account, and the owner, with the new password, would meet the thief's factor.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { countPasskeys } from '../../src/db/repositories/passkeys/credentials.ts';
import { findTotpFactor } from '../../src/db/repositories/totp-factors.ts';
import { bearer, createUser, describeWithApp, enableTotp, loginTokens, type TestApp } from '../helpers/app.ts';
import { post } from '../helpers/factors.ts';
import { appWithSecondConnection, beforeNextTransaction, untilWaitingForLocks } from '../helpers/holds.ts';
import { addPasskey, registrationOptions, signInWithPasskey, TEST_ORIGIN } from '../helpers/passkeys.ts';
import { SoftwareAuthenticator } from '../helpers/webauthn.ts';

/** The owner ends every session (log out everywhere, from a session of their own). */
async function logoutAll(ta: TestApp, ownerToken: string): Promise<void> {
  const res = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout-all', headers: bearer(ownerToken) });
  assert.equal(res.statusCode, 204, res.body);
}

describeWithApp('a factor change whose session ends while it runs', (suite) => {
  test('TOTP confirmation and passkey registration by a password-only session: refused, nothing bound', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const thief = (await loginTokens(ta.app, user)).access_token;
    const enrol = await post(ta, '/api/v1/auth-totp/enroll', thief, undefined, { accept: 'application/json' });
    const owner = (await loginTokens(ta.app, user)).access_token;
    const hold = beforeNextTransaction(ta, () => logoutAll(ta, owner));
    const confirm = await post(ta, '/api/v1/auth-totp/confirm', thief, { security_code: totpCodeAt(enrol.json().secret, ta.clock()) });
    assert.ok(hold.fired());
    assert.equal(confirm.statusCode, 401, confirm.body);
    assert.equal(confirm.json().code, 'invalid_token');
    assert.ok(!(await findTotpFactor(ta.deps.db, user.uuid))?.active_secret, 'no TOTP bound');

    const thief2 = (await loginTokens(ta.app, user)).access_token;
    const options = await registrationOptions(ta, thief2);
    const owner2 = (await loginTokens(ta.app, user)).access_token;
    const hold2 = beforeNextTransaction(ta, () => logoutAll(ta, owner2));
    const verify = await post(ta, '/api/v1/passkeys/registration/verify', thief2, { credential: new SoftwareAuthenticator(TEST_ORIGIN).create(options).response });
    assert.ok(hold2.fired());
    assert.equal(verify.statusCode, 401, verify.body);
    assert.equal(await countPasskeys(ta.deps.db, user.uuid), 0, 'no passkey bound');
  });

  test('new backup codes and a passkey removal by an aal2 session: refused, nothing changed', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const { tokens } = await enableTotp(ta, user);
    const { body, authenticator } = await addPasskey(ta, tokens.access_token);
    const session = (await signInWithPasskey(ta, authenticator)).json().access_token as string;
    const owner = (await signInWithPasskey(ta, authenticator)).json().access_token as string;
    const before = await ta.deps.db.query<{ code_hash: string }>('SELECT code_hash FROM backup_codes WHERE user_id = $1 ORDER BY code_hash', [user.uuid]);
    beforeNextTransaction(ta, () => logoutAll(ta, owner));
    const codes = await post(ta, '/api/v1/backup-codes', session);
    assert.equal(codes.statusCode, 401, codes.body);
    const after = await ta.deps.db.query<{ code_hash: string }>('SELECT code_hash FROM backup_codes WHERE user_id = $1 ORDER BY code_hash', [user.uuid]);
    assert.deepEqual(after.rows, before.rows, 'the old codes stay, no new set');

    const session2 = (await signInWithPasskey(ta, authenticator)).json().access_token as string;
    const owner2 = (await signInWithPasskey(ta, authenticator)).json().access_token as string;
    beforeNextTransaction(ta, () => logoutAll(ta, owner2));
    const removal = await ta.app.inject({ method: 'DELETE', url: `/api/v1/passkeys/${body.id}`, headers: bearer(session2) });
    assert.equal(removal.statusCode, 401, removal.body);
    assert.equal(await countPasskeys(ta.deps.db, user.uuid), 1, 'the passkey stays');
  });
});

if (process.env.DATABASE_URL) {
  test('a logout-all committing after a confirmation checked its session waits for it: the change is made by a live session, then ended [postgres]', async (t) => {
    const { ta, td, other, monitor } = await appWithSecondConnection(t);
    const user = await createUser(ta.app);
    const thief = (await loginTokens(ta.app, user)).access_token;
    const enrol = await post(ta, '/api/v1/auth-totp/enroll', thief, undefined, { accept: 'application/json' });
    const owner = (await loginTokens(ta.app, user)).access_token;
    const waiters = async () => (await monitor.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rows.length;
    // The TOTP row held: the confirmation passes its session check, then waits at its update.
    await other.query('BEGIN');
    await other.query('SELECT 1 FROM totp_factors WHERE user_id = $1 FOR UPDATE', [user.uuid]);
    const confirm = post(ta, '/api/v1/auth-totp/confirm', thief, { security_code: totpCodeAt(enrol.json().secret, ta.clock()) });
    await untilWaitingForLocks(monitor, 1, 'the confirmation');
    let logoutDone = false;
    const logout = ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout-all', headers: bearer(owner) }).finally(() => {
      logoutDone = true;
    });
    // The logout waits for the confirmation (which holds the thief's session); answered at once, it
    // would have ended the session while its change was still to commit.
    for (let i = 0; (await waiters()) < 2; i++) {
      assert.ok(!logoutDone, 'logout-all ended the session under a factor change in progress');
      assert.ok(i < 500, 'neither waited');
      await new Promise((r) => setTimeout(r, 20));
    }
    await other.query('COMMIT');
    assert.equal((await confirm).statusCode, 200);
    assert.equal((await logout).statusCode, 204);
    const types = (await td.db.query<{ type: string }>('SELECT type FROM audit_log WHERE user_id = $1 ORDER BY id', [user.uuid])).rows.map((r) => r.type);
    assert.ok(types.lastIndexOf('mfa.enabled') < types.lastIndexOf('session.revoked'), 'the factor came on before the sessions ended');
    assert.equal((await td.db.query('SELECT 1 FROM sessions WHERE user_id = $1 AND revoked_at IS NULL', [user.uuid])).rows.length, 0);
  });
}

if (process.env.DATABASE_URL) {
  test('logout-all from an older session while a newer one confirms the first factor: no deadlock, every session ends [postgres]', async (t) => {
    const { ta, td, other, monitor } = await appWithSecondConnection(t);
    const user = await createUser(ta.app);
    // The owner's session is the older row: logout-all used to lock it first, then wait for the
    // confirming session, which the confirmation holds while it goes on to revoke the older one.
    const owner = (await loginTokens(ta.app, user)).access_token;
    const thief = (await loginTokens(ta.app, user)).access_token;
    const enrol = await post(ta, '/api/v1/auth-totp/enroll', thief, undefined, { accept: 'application/json' });
    await other.query('BEGIN');
    await other.query('SELECT 1 FROM totp_factors WHERE user_id = $1 FOR UPDATE', [user.uuid]);
    const confirm = post(ta, '/api/v1/auth-totp/confirm', thief, { security_code: totpCodeAt(enrol.json().secret, ta.clock()) });
    await untilWaitingForLocks(monitor, 1, 'the confirmation');
    const logout = ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout-all', headers: bearer(owner) });
    await untilWaitingForLocks(monitor, 2, 'the logout-all');
    await other.query('COMMIT');
    const [c, l] = await Promise.all([confirm, logout]);
    assert.deepEqual([c.statusCode, l.statusCode], [200, 204], `${c.body} ${l.body}`);
    assert.equal((await td.db.query('SELECT 1 FROM sessions WHERE user_id = $1 AND revoked_at IS NULL', [user.uuid])).rows.length, 0, 'the confirming session ended too');
  });
}
