/**
 * The sign-up choice `mfa: "email"` and a late verification of the address. Verifying it (a link
 * anyone can have re-sent, or an admin vouching for it) turns e-mailed codes on only as the user's
 * first factor. A user who has set up TOTP or a passkey since must not find e-mailed codes added
 * next to it without an aal2 session: with the password and the mailbox, an attacker would log in
 * through an e-mailed code at aal2 and then remove TOTP.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeJwt } from 'jose';
import { isEmailOtpEnabled } from '../../src/db/repositories/email-otps.ts';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { bearer, createUser, describeWithApp, enableTotp, login, loginTokens, nextTotpStep, type TestApp, type TestUser } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall, auditRowsOf } from '../helpers/admin.ts';
import { enableEmailOtp, loginMfa, loginWithEmailCode, mfaChallenge, requestLoginCode } from '../helpers/factors.ts';
import { latestToken } from '../helpers/mail-links.ts';
import { migrate } from '../../src/db/migrate.ts';

const MIGRATION = '0011_signup_mfa_used_once.sql';
import { addPasskey } from '../helpers/passkeys.ts';

const ATTACKER = '203.0.113.77';

/** Has a fresh verification link sent to the user's address and opens it, as anyone reading the mailbox can. */
async function verifyThroughResentLink(ta: TestApp, user: TestUser): Promise<void> {
  const resend = await ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify/resend', payload: { email: user.email }, remoteAddress: ATTACKER });
  assert.equal(resend.statusCode, 202, resend.body);
  const token = await latestToken(ta, user.email, 'verify_email');
  const verified = await ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify', payload: { token }, remoteAddress: ATTACKER });
  assert.equal(verified.statusCode, 200, verified.body);
  assert.deepEqual(verified.json(), { email_verified: true }, 'the address itself is verified');
}

/** The e-mail factor was never turned on: no mfa.enabled entry for it. */
async function assertNoEmailFactorEvent(ta: TestApp, user: TestUser): Promise<void> {
  const rows = await auditRowsOf(ta, user.uuid);
  assert.ok(rows.some((r) => r.type === 'email.verified' || r.type === 'user.updated'), 'the verification itself is recorded');
  assert.deepEqual(rows.filter((r) => r.type === 'mfa.enabled' && (r.data as { method?: string }).method === 'email'), []);
}

describeWithApp('a late e-mail verification never adds e-mailed codes next to another factor', (suite) => {
  test('TOTP on, then the link: e-mailed codes stay off, an e-mailed login code is refused, TOTP stays in force', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app, { mfa: 'email' });
    // The owner turns TOTP on while the address is still unverified (no factor yet: allowed at aal1).
    const { secret } = await enableTotp(ta, user);

    await verifyThroughResentLink(ta, user);
    assert.equal(await isEmailOtpEnabled(ta.deps.db, user.uuid), false, 'no second factor added by the link');
    await assertNoEmailFactorEvent(ta, user);

    // The attacker with password + mailbox: the challenge offers no e-mailed code, and asking is refused.
    ta.clock.advance(61);
    const challenge = await mfaChallenge(ta, user);
    assert.deepEqual(challenge.mfa_methods, ['totp', 'backup_code']);
    const sent = await requestLoginCode(ta, challenge.mfa_token);
    assert.equal(sent.statusCode, 400, sent.body);
    assert.equal(sent.json().code, 'method_not_enabled');
    const guessed = await loginMfa(ta, challenge.mfa_token, 'email', '123456');
    assert.notEqual(guessed.statusCode, 200, 'no aal2 session through an e-mailed code');
    assert.equal(guessed.json().access_token, undefined);

    // TOTP still protects the account and still works for the owner.
    nextTotpStep(ta.clock);
    const owner = await login(ta.app, { username: user.username, password: user.password, security_code: totpCodeAt(secret, ta.clock()) });
    assert.equal(owner.statusCode, 200, owner.body);
    assert.equal(decodeJwt(owner.json().access_token).aal, 'aal2');

    // The owner can still choose e-mailed codes, through the aal2 flow like any added factor.
    await enableEmailOtp(ta, user, owner.json().access_token);
    assert.equal(await isEmailOtpEnabled(ta.deps.db, user.uuid), true);
  });

  test('a passkey, then the link: e-mailed codes stay off', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app, { mfa: 'email' });
    const { access_token } = await loginTokens(ta.app, user);
    await addPasskey(ta, access_token);

    await verifyThroughResentLink(ta, user);
    assert.equal(await isEmailOtpEnabled(ta.deps.db, user.uuid), false);
    await assertNoEmailFactorEvent(ta, user);
    const challenge = await mfaChallenge(ta, user);
    assert.ok(!challenge.mfa_methods.includes('email'), JSON.stringify(challenge.mfa_methods));
    assert.ok(challenge.mfa_methods.includes('passkey'));
  });

  test('an admin vouching for the address (PATCH email_verified) does not add e-mailed codes next to TOTP either', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const user = await createUser(ta.app, { mfa: 'email' });
    await enableTotp(ta, user);

    const res = await adminCall(ta, 'PATCH', `/api/v1/admin/users/${user.uuid}`, { email_verified: true });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(await isEmailOtpEnabled(ta.deps.db, user.uuid), false);
    await assertNoEmailFactorEvent(ta, user);
    ta.clock.advance(61);
    assert.deepEqual((await mfaChallenge(ta, user)).mfa_methods, ['totp', 'backup_code']);
  });

  test('the sign-up choice is used once: e-mailed codes the user turned off stay off when an admin verifies the address again', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const user = await createUser(ta.app, { mfa: 'email' });
    await verifyThroughResentLink(ta, user);
    assert.equal(await isEmailOtpEnabled(ta.deps.db, user.uuid), true, 'the sign-up choice applied');
    const { access_token } = await loginWithEmailCode(ta, user);
    const off = await ta.app.inject({ method: 'DELETE', url: '/api/v1/auth-email-otp', headers: bearer(access_token) });
    assert.equal(off.statusCode, 204, off.body);

    for (const email_verified of [false, true]) {
      const res = await adminCall(ta, 'PATCH', `/api/v1/admin/users/${user.uuid}`, { email_verified });
      assert.equal(res.statusCode, 200, res.body);
    }
    assert.equal(await isEmailOtpEnabled(ta.deps.db, user.uuid), false, 'the factor the user removed did not come back');
    const enabled = (await auditRowsOf(ta, user.uuid)).filter((r) => r.type === 'mfa.enabled');
    assert.equal(enabled.length, 1, 'only the first verification turned e-mailed codes on');
    ta.clock.advance(61);
    const again = await login(ta.app, { username: user.username, password: user.password });
    assert.equal(again.statusCode, 200, 'no second factor is asked for');
  });

  test('no factor yet (TOTP only enrolled, never confirmed): the link still makes e-mailed codes the first factor', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app, { mfa: 'email' });
    const { access_token } = await loginTokens(ta.app, user);
    const enroll = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-totp/enroll', headers: { ...bearer(access_token), accept: 'application/json' } });
    assert.equal(enroll.statusCode, 201, enroll.body);

    await verifyThroughResentLink(ta, user);
    assert.equal(await isEmailOtpEnabled(ta.deps.db, user.uuid), true, 'a pending TOTP secret is no factor: the sign-up choice applies');
    const enabled = (await auditRowsOf(ta, user.uuid)).filter((r) => r.type === 'mfa.enabled');
    assert.deepEqual(enabled.map((r) => r.data), [{ method: 'email', at_sign_up: true }]);
    assert.deepEqual((await mfaChallenge(ta, user)).mfa_methods, ['email']);
  });

  // Migration 0011: the rows an older release left behind (the choice kept after the first verification).
  test('clears the choice of verified and once-verified accounts, keeps it for the never verified', async (t) => {
    const ta = await suite.build(t);
    const verified = await createUser(ta.app, { mfa: 'email' });
    const token = await latestToken(ta, verified.email, 'verify_email');
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify', payload: { token } })).statusCode, 200);
    const unmarked = await createUser(ta.app, { mfa: 'email' });
    const unmarkedToken = await latestToken(ta, unmarked.email, 'verify_email');
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify', payload: { token: unmarkedToken } })).statusCode, 200);
    assert.ok((await auditRowsOf(ta, unmarked.uuid)).some((r) => r.type === 'email.verified'));
    const waiting = await createUser(ta.app, { mfa: 'email' });

    // The rows as an older release left them: the choice still set after the first verification, and
    // one address unmarked by an admin since.
    const db = ta.deps.db;
    await db.query("UPDATE users SET signup_mfa = 'email' WHERE id = ANY($1::uuid[])", [[verified.uuid, unmarked.uuid, waiting.uuid]]);
    await db.query('UPDATE users SET email_verified = false WHERE id = $1', [unmarked.uuid]);
    await db.query('DELETE FROM schema_migrations WHERE version = $1', [MIGRATION]);

    assert.deepEqual(await migrate(db), [MIGRATION]);
    const choice = async (id: string) => (await db.query<{ signup_mfa: string | null }>('SELECT signup_mfa FROM users WHERE id = $1', [id])).rows[0]?.signup_mfa;
    assert.equal(await choice(verified.uuid), null);
    assert.equal(await choice(unmarked.uuid), null);
    assert.equal(await choice(waiting.uuid), 'email', 'the first verification is still to come');
  });
});
