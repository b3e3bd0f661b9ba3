/**
 * Issue 7 attacks, each tried for real with simultaneous requests (Promise.all over app.inject), on
 * PGlite and, with DATABASE_URL, on PostgreSQL: bursts against the brute-force limits, a login in
 * flight across a password reset, two valid codes for one MFA challenge, a method switched off by
 * MFA_METHODS, enumeration through the lock, a stranger using up the owner's reset mails.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { enableEmailOtpFactor, findEmailOtp } from '../../src/db/repositories/email-otps.ts';
import { PASSWORD, bearer, createUser, describeWithApp, enableTotp, login, loginTokens, nextTotpStep, uniqueName } from '../helpers/app.ts';
import { lastCode, loginMfa, mfaChallenge, post, verifyEmail, wrongCode } from '../helpers/factors.ts';
import { latestToken, mailsTo, settleAndDeliver } from '../helpers/mail-links.ts';

const MAX = 5;
const BURST = 100;
const limits = { LOCKOUT_MAX_FAILURES: String(MAX), LOCKOUT_DURATION: '900', RATE_LIMIT_IP_MAX_FAILURES: '100000' };

function statuses(results: { statusCode: number }[]): Record<number, number> {
  const out: Record<number, number> = {};
  for (const r of results) out[r.statusCode] = (out[r.statusCode] ?? 0) + 1;
  return out;
}

describeWithApp('issue 7: limits under concurrency', (suite) => {
  test(`a burst of ${BURST} wrong passwords gets at most LOCKOUT_MAX_FAILURES checked; then the right one is 429`, async (t) => {
    const ta = await suite.build(t, { env: limits });
    const user = await createUser(ta.app);
    let verified = 0;
    // check() is the login's one password comparison (it also tells a pre-NFKC hash apart).
    const check = ta.deps.passwords.check.bind(ta.deps.passwords);
    ta.deps.passwords.check = async (hash, password) => {
      verified += 1; // counts the expensive checks the limiter let through
      return check(hash, password);
    };
    const burst = await Promise.all(
      Array.from({ length: BURST }, (_, i) => login(ta.app, { username: user.username, password: `wrong guess ${i}` })),
    );
    const seen = statuses(burst);
    assert.ok(verified <= MAX, `${verified} passwords checked`);
    assert.equal(seen[401] ?? 0, verified);
    assert.equal(seen[429], BURST - verified);
    const right = await login(ta.app, { username: user.username, password: PASSWORD });
    assert.equal(right.statusCode, 429, 'the right password inside the lock is refused');
  });

  test('a right password inside a burst is checked only if it came within the limit; never more than the limit get through', async (t) => {
    const ta = await suite.build(t, { env: limits });
    const user = await createUser(ta.app);
    const bodies = Array.from({ length: 60 }, (_, i) => ({ username: user.username, password: i === 40 ? PASSWORD : `wrong ${i}` }));
    const results = await Promise.all(bodies.map((b) => login(ta.app, b)));
    const checked = results.filter((r) => r.statusCode !== 429).length;
    assert.ok(checked <= MAX, `${checked} attempts were checked`);
  });

  test('bursts of wrong backup codes (one step), password changes and /qrcode stay within the limit', async (t) => {
    const ta = await suite.build(t, { env: limits });
    const owner = await createUser(ta.app);
    const { tokens } = await enableTotp(ta, owner);
    const oneStep = await Promise.all(
      Array.from({ length: 40 }, () => login(ta.app, { username: owner.username, password: PASSWORD, backup_code: 'AAAA-BBBB-CCCC' })),
    );
    assert.ok((statuses(oneStep)[401] ?? 0) <= MAX, JSON.stringify(statuses(oneStep)));

    const changer = await createUser(ta.app);
    const session = await loginTokens(ta.app, changer);
    const changes = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        post(ta, '/api/v1/user/password/change', session.access_token, { current_password: `nope ${i}`, password1: 'a brand new passphrase', password2: 'a brand new passphrase' }),
      ),
    );
    assert.ok((statuses(changes)[401] ?? 0) <= MAX, JSON.stringify(statuses(changes)));

    const target = await createUser(ta.app);
    const qr = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        ta.app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', headers: { accept: 'application/json' }, payload: { username: target.username, password: `nope ${i}` } }),
      ),
    );
    assert.ok((statuses(qr)[401] ?? 0) <= MAX, JSON.stringify(statuses(qr)));
    assert.equal((await post(ta, '/api/v1/auth-jwt/logout', tokens.access_token)).statusCode < 500, true);
  });

  test('a burst of wrong e-mailed codes at enable time compares at most EMAIL_OTP_MAX_ATTEMPTS', async (t) => {
    const ta = await suite.build(t, { env: { ...limits, EMAIL_OTP_COOLDOWN: '0' } });
    const user = await createUser(ta.app);
    await verifyEmail(ta, user);
    const { access_token } = await loginTokens(ta.app, user);
    assert.equal((await post(ta, '/api/v1/auth-email-otp/enable', access_token)).statusCode, 202);
    const code = await lastCode(ta, 'email_otp_enable', user.email);
    const burst = await Promise.all(Array.from({ length: 40 }, () => post(ta, '/api/v1/auth-email-otp/confirm', access_token, { code: wrongCode(code) })));
    assert.deepEqual(statuses(burst), { 401: 40 });
    assert.equal((await findEmailOtp(ta.deps.db, user.uuid, 'enable'))?.attempts, 5, 'the sixth and later guesses were never compared');
    assert.equal((await post(ta, '/api/v1/auth-email-otp/confirm', access_token, { code })).statusCode, 401, 'the code is dead');
  });
});

describeWithApp('issue 7: sessions, challenges, factors', (suite) => {
  /** A new user who asked for a password reset, with the reset mail's token. */
  async function userWithResetToken(s: typeof suite, t: Parameters<typeof s.build>[0]) {
    const ta = await s.build(t);
    const user = await createUser(ta.app);
    await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/forgot', payload: { email: user.email } });
    await settleAndDeliver(ta);
    return { ta, user, token: await latestToken(ta, user.email, 'password_reset') };
  }

  test('a login in flight across a password reset opens no session', async (t) => {
    const { ta, user, token } = await userWithResetToken(suite, t);
    // The login's password check finishes only after the reset committed: the race, made certain.
    const check = ta.deps.passwords.check.bind(ta.deps.passwords);
    let resetDone: Promise<unknown> | undefined;
    ta.deps.passwords.check = async (hash, password) => {
      const ok = await check(hash, password);
      resetDone ??= ta.app.inject({ method: 'POST', url: '/api/v1/user/password/reset', payload: { token, password1: 'the new passphrase 42', password2: 'the new passphrase 42' } });
      const res = (await resetDone) as { statusCode: number };
      assert.equal(res.statusCode, 204);
      return ok;
    };
    const inFlight = await login(ta.app, { username: user.username, password: PASSWORD });
    assert.equal(inFlight.statusCode, 401);
    assert.equal(inFlight.json().code, 'invalid_credentials');
    assert.equal(inFlight.json().refresh_token, undefined);
    const live = await ta.deps.db.query('SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL', [user.uuid]);
    assert.equal(live.rows.length, 0, 'no session was created for the old password');
  });

  test('a password reset committing in the middle of a login\'s transaction: no live session for the old password', async (t) => {
    const { ta, user, token } = await userWithResetToken(suite, t);
    // The reset starts once the login's transaction has inserted the session (at its audit entry).
    // On PostgreSQL it commits meanwhile, unless the login already holds the user row (then it waits
    // for the login's commit); PGlite's one connection runs it after the login's commit. Either way,
    // no session opened with the old password may stay live.
    const db = ta.deps.db;
    const transaction = db.transaction.bind(db);
    let reset: Promise<{ statusCode: number }> | undefined;
    db.transaction = (fn) => transaction((tx) => fn({
      async query(sql: string, params?: readonly unknown[]) {
        if (!reset && /INSERT INTO audit_log/.test(sql) && params?.includes('login.succeeded')) {
          reset = ta.app.inject({ method: 'POST', url: '/api/v1/user/password/reset', payload: { token, password1: 'the new passphrase 42', password2: 'the new passphrase 42' } });
          if (db.kind === 'postgres') await Promise.race([reset, new Promise((r) => setTimeout(r, 500))]);
        }
        return tx.query(sql, params);
      },
    } as typeof tx));
    t.after(() => {
      db.transaction = transaction;
    });
    const res = await login(ta.app, { username: user.username, password: PASSWORD });
    assert.ok(reset, 'the reset ran during the login');
    assert.equal((await reset).statusCode, 204);
    db.transaction = transaction;
    assert.ok([200, 401].includes(res.statusCode), `login answered ${res.statusCode}`);
    const live = await db.query('SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL', [user.uuid]);
    assert.equal(live.rows.length, 0, 'no live session for the old password');
    if (res.statusCode === 200) {
      const refreshed = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: res.json().refresh_token } });
      assert.equal(refreshed.statusCode, 401, 'its refresh token is refused');
    }
  });

  test('two dozen logins of one account at once with a password reset among them: no 500, no live session for the old password', async (t) => {
    const { ta, user, token } = await userWithResetToken(suite, t);
    const logins = Array.from({ length: 24 }, () => login(ta.app, { username: user.username, password: PASSWORD }));
    const reset = ta.app.inject({ method: 'POST', url: '/api/v1/user/password/reset', payload: { token, password1: 'the new passphrase 42', password2: 'the new passphrase 42' } });
    const [results, resetRes] = await Promise.all([Promise.all(logins), reset]);
    assert.equal(resetRes.statusCode, 204);
    // Each login either committed before the reset (its session then revoked by it), was refused, or
    // met the account's attempt limit (counted before the check, so a burst passes only that many);
    // a deadlock between logins, or between a login and the reset, would answer 500.
    assert.deepEqual(results.filter((r) => ![200, 401, 429].includes(r.statusCode)).map((r) => `${r.statusCode} ${r.body}`), []);
    assert.ok(results.filter((r) => r.statusCode !== 429).length >= 2, 'several logins raced the reset');
    const live = await ta.deps.db.query('SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL', [user.uuid]);
    assert.equal(live.rows.length, 0, 'no live session for the old password');
    const after = await login(ta.app, { username: user.username, password: 'the new passphrase 42' });
    assert.equal(after.statusCode, 200, 'the new password works');
  });

  test('two different valid codes (TOTP and backup code) for one challenge at once: one login, one code spent', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const { secret, tokens } = await enableTotp(ta, user);
    // A fresh set through the aal2 session (independent of how the first set was handed out).
    const backupCodes: string[] = (await post(ta, '/api/v1/backup-codes', tokens.access_token)).json().backup_codes;
    assert.equal(backupCodes.length, 10);
    nextTotpStep(ta.clock);
    const { mfa_token } = await mfaChallenge(ta, user);
    const totp = totpCodeAt(secret, ta.clock());
    const [a, b] = await Promise.all([loginMfa(ta, mfa_token, 'totp', totp), loginMfa(ta, mfa_token, 'backup_code', backupCodes[0]!)]);
    assert.deepEqual([a.statusCode, b.statusCode].sort(), [200, 401]);
    const remaining = (await ta.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM backup_codes WHERE user_id = $1', [user.uuid])).rows[0]!.n;
    const again = await mfaChallenge(ta, user);
    const totpAgain = await loginMfa(ta, again.mfa_token, 'totp', totp);
    if (a.statusCode === 200) {
      assert.equal(remaining, 10, 'the losing backup code was not spent');
      assert.equal(totpAgain.statusCode, 401, 'the winning TOTP step was spent');
    } else {
      assert.equal(remaining, 9, 'the winning backup code was spent');
      assert.equal(totpAgain.statusCode, 200, 'the losing TOTP code was not spent');
    }
  });

  test('five challenges, each sent two different valid backup codes at once: five logins, five codes spent', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const { tokens } = await enableTotp(ta, user);
    const codes: string[] = (await post(ta, '/api/v1/backup-codes', tokens.access_token)).json().backup_codes;
    const challenges = await Promise.all([0, 1, 2, 3, 4].map(() => mfaChallenge(ta, user)));
    const results = await Promise.all(
      challenges.flatMap(({ mfa_token }, i) => [loginMfa(ta, mfa_token, 'backup_code', codes[2 * i]!), loginMfa(ta, mfa_token, 'backup_code', codes[2 * i + 1]!)]),
    );
    assert.equal(results.filter((r) => r.statusCode === 200).length, 5, 'one login per challenge');
    const remaining = (await ta.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM backup_codes WHERE user_id = $1', [user.uuid])).rows[0]!.n;
    assert.equal(remaining, 5, 'each challenge spent exactly one code');
  });

  test('MFA_METHODS no longer offering a user\'s only factor keeps the second factor required; /qrcode never binds by password', async (t) => {
    const before = await suite.build(t, { env: { MFA_METHODS: 'totp,email' } });
    const user = await createUser(before.app);
    const aal1 = (await loginTokens(before.app, user)).access_token;
    await verifyEmail(before, user);
    await before.deps.db.transaction((tx) => enableEmailOtpFactor(tx, user.uuid, before.clock()));
    const codes = (await before.app.inject({ method: 'POST', url: '/api/v1/backup-codes', headers: bearer(aal1) })).statusCode;
    assert.equal(codes, 403, 'aal1 cannot mint codes');

    const after = await suite.build(t, { env: { MFA_METHODS: 'totp' } });
    const res = await login(after.app, { username: user.username, password: PASSWORD });
    assert.equal(res.statusCode, 403);
    assert.equal(res.json().code, 'mfa_required');
    assert.equal(res.json().access_token, undefined);
    const qr = await after.app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', headers: { accept: 'application/json' }, payload: { username: user.username, password: PASSWORD } });
    assert.equal(qr.statusCode, 409);
    assert.equal(qr.json().secret, undefined);
    const enroll = await post(after, '/api/v1/auth-totp/enroll', aal1, undefined, { accept: 'application/json' });
    assert.equal(enroll.statusCode, 403);
    assert.equal(enroll.json().code, 'step_up_required');
  });

  test('a first login that activates TOTP returns the 10 backup codes once; a backup-code login says how many are left', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app, { mfa: 'totp' });
    const signup = await ta.deps.db.query<{ pending_secret: string }>('SELECT pending_secret FROM totp_factors WHERE user_id = $1', [user.uuid]);
    const secret = ta.deps.secretBox.open(signup.rows[0]!.pending_secret);
    const first = await login(ta.app, { username: user.username, password: PASSWORD, security_code: totpCodeAt(secret, ta.clock()) });
    assert.equal(first.statusCode, 200);
    const codes: string[] = first.json().backup_codes;
    assert.equal(codes.length, 10);
    assert.equal(new Set(codes).size, 10);
    nextTotpStep(ta.clock);
    const second = await login(ta.app, { username: user.username, password: PASSWORD, security_code: totpCodeAt(secret, ta.clock()) });
    assert.equal(second.statusCode, 200);
    assert.equal(second.json().backup_codes, undefined, 'shown once');
    const byBackup = await login(ta.app, { username: user.username, password: PASSWORD, backup_code: codes[0] });
    assert.equal(byBackup.statusCode, 200);
    assert.equal(byBackup.json().backup_codes_remaining, 9);
    const { mfa_token } = await mfaChallenge(ta, user);
    const twoStep = await loginMfa(ta, mfa_token, 'backup_code', codes[1]!);
    assert.equal(twoStep.json().backup_codes_remaining, 8);
  });
});

describeWithApp('issue 7: enumeration and mail quotas', (suite) => {
  test('a lock earned through the username does not show on the e-mail address: it answers as an unknown address does', async (t) => {
    const ta = await suite.build(t, { env: { LOCKOUT_MAX_FAILURES: '3', RATE_LIMIT_IP_MAX_FAILURES: '1000' } });
    const user = await createUser(ta.app);
    for (let i = 0; i < 3; i++) await login(ta.app, { username: user.username, password: `wrong ${i}` });
    assert.equal((await login(ta.app, { username: user.username, password: 'wrong again' })).statusCode, 429);
    const byEmail = await login(ta.app, { username: user.email, password: 'wrong again' });
    const ghost = await login(ta.app, { username: `${uniqueName('ghost')}@example.com`, password: 'wrong again' });
    assert.equal(byEmail.statusCode, ghost.statusCode);
    assert.equal(byEmail.json().code, ghost.json().code);
    assert.equal(byEmail.statusCode, 401);
  });

  test('a stranger cannot use up the owner\'s reset mails; the owner (an address it logged in from) still gets one', async (t) => {
    const ta = await suite.build(t, { env: { RATE_LIMIT_EMAIL_MAX_PER_HOUR: '2', RATE_LIMIT_IP_MAX_REQUESTS_PER_MINUTE: '1000' } });
    const user = await createUser(ta.app);
    const home = '192.0.2.77';
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: { username: user.username, password: PASSWORD }, remoteAddress: home })).statusCode, 200);
    // Strangers from many addresses fire requests for the victim's address.
    const flood = await Promise.all(
      Array.from({ length: 20 }, (_, i) => ta.app.inject({ method: 'POST', url: '/api/v1/user/password/forgot', payload: { email: user.email }, remoteAddress: `203.0.113.${i + 1}` })),
    );
    assert.ok(flood.every((r) => r.statusCode === 202));
    await settleAndDeliver(ta);
    assert.equal(mailsTo(ta, user.email, 'password_reset').length, 2, 'the strangers together got the address\'s shared budget only');
    const own = await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/forgot', payload: { email: user.email }, remoteAddress: home });
    assert.equal(own.statusCode, 202);
    await settleAndDeliver(ta);
    assert.equal(mailsTo(ta, user.email, 'password_reset').length, 3, 'the owner\'s own request went through');
  });
  test('a stranger cannot use up the verification mails of a new account; the address it signed up from still gets one', async (t) => {
    const ta = await suite.build(t, { env: { RATE_LIMIT_EMAIL_MAX_PER_HOUR: '2', RATE_LIMIT_IP_MAX_REQUESTS_PER_MINUTE: '1000', REQUIRE_EMAIL_VERIFICATION: 'true' } });
    const home = '192.0.2.78';
    const username = uniqueName('fresh');
    const email = `${username}@example.com`;
    const signup = await ta.app.inject({ method: 'POST', url: '/api/v1/user', payload: { username, email, password1: PASSWORD, password2: PASSWORD }, remoteAddress: home });
    assert.equal(signup.statusCode, 201);
    await settleAndDeliver(ta);
    const before = mailsTo(ta, email, 'verify_email').length;
    const flood = await Promise.all(
      Array.from({ length: 20 }, (_, i) => ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify/resend', payload: { email }, remoteAddress: `203.0.113.${i + 1}` })),
    );
    assert.ok(flood.every((r) => r.statusCode === 202));
    await settleAndDeliver(ta);
    assert.equal(mailsTo(ta, email, 'verify_email').length, before + 2, 'the strangers together got the address\'s shared budget only');
    const own = await ta.app.inject({ method: 'POST', url: '/api/v1/user/email/verify/resend', payload: { email }, remoteAddress: home });
    assert.equal(own.statusCode, 202);
    await settleAndDeliver(ta);
    assert.equal(mailsTo(ta, email, 'verify_email').length, before + 3, 'the request from the sign-up address went through');
  });
});
