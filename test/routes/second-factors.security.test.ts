/** Security and concurrency cases of second factors and the MFA challenge. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { findEmailOtp } from '../../src/db/repositories/email-otps.ts';
import type { MfaChallengeRow } from '../../src/db/repositories/mfa-challenges.ts';
import { backupCodeHash } from '../../src/services/second-factors.ts';
import { bearer, createUser, describeWithApp, enableTotp, login, loginTokens, nextTotpStep, type TestApp, type TestUser } from '../helpers/app.ts';
import { enableEmailOtp, get, lastCode, loginMfa, mailsOf, mfaChallenge, post, requestLoginCode, verifyEmail, wrongCode } from '../helpers/factors.ts';

const CONCURRENCY = 10;

function statuses(responses: LightMyRequestResponse[]): number[] {
  return responses.map((r) => r.statusCode).sort();
}

function challengeId(mfaToken: string): string {
  return JSON.parse(Buffer.from(mfaToken.split('.')[1]!, 'base64url').toString('utf8')).jti;
}

async function challengeRow(t: TestApp, mfaToken: string): Promise<MfaChallengeRow | undefined> {
  return (await t.deps.db.query<MfaChallengeRow>('SELECT * FROM mfa_challenges WHERE id = $1', [challengeId(mfaToken)])).rows[0];
}

/** Sessions of the user, to prove a refused request created none. */
async function sessionCount(t: TestApp, user: TestUser): Promise<number> {
  return (await t.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM sessions WHERE user_id = $1', [user.uuid])).rows[0]!.n;
}

/** A user with TOTP and a first set of backup codes (confirmed by an aal1 session). */
async function userWithTotpAndCodes(t: TestApp): Promise<{ user: TestUser; secret: string; codes: string[] }> {
  const user = await createUser(t.app);
  const aal1 = (await loginTokens(t.app, user)).access_token;
  const secret: string = (await post(t, '/api/v1/auth-totp/enroll', aal1, undefined, { accept: 'application/json' })).json().secret;
  const confirm = await post(t, '/api/v1/auth-totp/confirm', aal1, { security_code: totpCodeAt(secret, t.clock()) });
  assert.equal(confirm.statusCode, 200, confirm.body);
  nextTotpStep(t.clock);
  return { user, secret, codes: confirm.json().backup_codes };
}

describeWithApp('Second factors: security', (suite) => {
  test('the same backup code in 10 concurrent one-step logins: exactly one 200', async (t) => {
    const app = await suite.build(t);
    const { user, codes } = await userWithTotpAndCodes(app);
    const before = await sessionCount(app, user);
    const responses = await Promise.all(
      Array.from({ length: CONCURRENCY }, () => login(app.app, { username: user.username, password: user.password, backup_code: codes[0] })),
    );
    const ok = responses.filter((r) => r.statusCode === 200);
    assert.equal(ok.length, 1, `statuses ${statuses(responses).join(',')}`);
    for (const r of responses.filter((x) => x.statusCode !== 200)) {
      // The losers' codes are wrong guesses, counted against the account: once the failures reach
      // LOCKOUT_MAX_FAILURES, the logins still arriving find it locked (429).
      assert.ok(r.statusCode === 401 || r.statusCode === 429, String(r.statusCode));
      assert.equal(r.json().code, r.statusCode === 401 ? 'invalid_security_code' : 'too_many_requests');
      assert.equal(r.headers['set-cookie'], undefined);
    }
    assert.equal(await sessionCount(app, user), before + 1, 'one session, not ten');
    const remaining = await app.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM backup_codes WHERE user_id = $1', [user.uuid]);
    assert.equal(remaining.rows[0]!.n, 9);
  });

  test('the same backup code on 10 different challenges at once: exactly one 200', async (t) => {
    const app = await suite.build(t);
    const { user, codes } = await userWithTotpAndCodes(app);
    const challenges = [];
    for (let i = 0; i < CONCURRENCY; i++) challenges.push((await mfaChallenge(app, user)).mfa_token);
    const responses = await Promise.all(challenges.map((token) => loginMfa(app, token, 'backup_code', codes[1]!)));
    assert.equal(responses.filter((r) => r.statusCode === 200).length, 1, `statuses ${statuses(responses).join(',')}`);
    for (const r of responses.filter((x) => x.statusCode !== 200)) {
      assert.equal(r.json().code, 'invalid_security_code');
      assert.equal(r.json().access_token, undefined);
    }
  });

  test('10 concurrent /login/mfa with the same e-mailed code: exactly one 200', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    await enableEmailOtp(app, user, (await loginTokens(app.app, user)).access_token);
    const { mfa_token } = await mfaChallenge(app, user);
    assert.equal((await requestLoginCode(app, mfa_token)).statusCode, 202);
    const code = await lastCode(app, 'email_otp_login', user.email);
    const before = await sessionCount(app, user);

    const responses = await Promise.all(Array.from({ length: CONCURRENCY }, () => loginMfa(app, mfa_token, 'email', code)));
    assert.equal(responses.filter((r) => r.statusCode === 200).length, 1, `statuses ${statuses(responses).join(',')}`);
    for (const r of responses.filter((x) => x.statusCode !== 200)) {
      assert.equal(r.statusCode, 401);
      assert.ok(['invalid_security_code', 'invalid_token'].includes(r.json().code), r.body);
      assert.equal(r.headers['set-cookie'], undefined);
    }
    assert.equal(await sessionCount(app, user), before + 1);
    assert.ok((await challengeRow(app, mfa_token))!.attempts <= 5, 'never more tries than the challenge allows');
  });

  test('10 concurrent confirmations with the same e-mailed code: exactly one turns the factor on', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { access_token } = await loginTokens(app.app, user);
    await verifyEmail(app, user);
    await post(app, '/api/v1/auth-email-otp/enable', access_token);
    const code = await lastCode(app, 'email_otp_enable', user.email);
    const responses = await Promise.all(Array.from({ length: CONCURRENCY }, () => post(app, '/api/v1/auth-email-otp/confirm', access_token, { code })));
    const ok = responses.filter((r) => r.statusCode === 200);
    assert.equal(ok.length, 1, `statuses ${statuses(responses).join(',')}`);
    assert.equal(ok[0]!.json().backup_codes.length, 10);
    for (const r of responses.filter((x) => x.statusCode !== 200)) assert.ok([401, 409].includes(r.statusCode), r.body);
    assert.equal((await mailsOf(app, 'factor_added', user.email)).length, 1, 'one notice');
    assert.deepEqual((await get(app, '/api/v1/backup-codes', access_token)).json(), { remaining: 10 });
  });

  test('10 concurrent TOTP confirmations: one activation, one set of backup codes', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { access_token } = await loginTokens(app.app, user);
    const secret: string = (await post(app, '/api/v1/auth-totp/enroll', access_token, undefined, { accept: 'application/json' })).json().secret;
    const code = totpCodeAt(secret, app.clock());
    const responses = await Promise.all(Array.from({ length: CONCURRENCY }, () => post(app, '/api/v1/auth-totp/confirm', access_token, { security_code: code })));
    assert.equal(responses.filter((r) => r.statusCode === 200).length, 1, `statuses ${statuses(responses).join(',')}`);
    for (const r of responses.filter((x) => x.statusCode !== 200)) {
      assert.equal(r.statusCode, 409);
      assert.equal(r.json().code, 'totp_not_pending');
    }
    assert.deepEqual((await get(app, '/api/v1/backup-codes', access_token)).json(), { remaining: 10 });
  });

  test('10 concurrent regenerations leave exactly one complete set', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { tokens } = await enableTotp(app, user);
    const responses = await Promise.all(Array.from({ length: CONCURRENCY }, () => post(app, '/api/v1/backup-codes', tokens.access_token)));
    assert.deepEqual(statuses(responses), Array(CONCURRENCY).fill(201));
    const stored = new Set((await app.deps.db.query<{ code_hash: string }>('SELECT code_hash FROM backup_codes WHERE user_id = $1', [user.uuid])).rows.map((r) => r.code_hash));
    assert.equal(stored.size, 10, 'never two sets at once');
    const winners = responses.filter((r) => (r.json().backup_codes as string[]).every((c) => stored.has(backupCodeHash(app.deps, user.uuid, c))));
    assert.equal(winners.length, 1, 'the stored set is one answer\'s set, whole');
  });

  test('an MFA challenge dies after 5 wrong codes: the 6th try fails with invalid_token even with the right code', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { secret } = await enableTotp(app, user);
    nextTotpStep(app.clock);
    const { mfa_token } = await mfaChallenge(app, user);
    const right = totpCodeAt(secret, app.clock());
    for (let i = 1; i <= 5; i++) {
      const res = await loginMfa(app, mfa_token, 'totp', wrongCode(right));
      assert.equal(res.statusCode, 401);
      assert.equal(res.json().code, 'invalid_security_code');
      assert.equal((await challengeRow(app, mfa_token))?.attempts, i, 'each failed request is counted, not rolled back');
    }
    const sixth = await loginMfa(app, mfa_token, 'totp', right);
    assert.equal(sixth.statusCode, 401);
    assert.equal(sixth.json().code, 'invalid_token');
    assert.equal(sixth.headers['set-cookie'], undefined);
    assert.equal((await challengeRow(app, mfa_token))?.attempts, 5, 'a dead challenge counts no further');
    // The code itself was not spent: a new challenge accepts it.
    const fresh = await mfaChallenge(app, user);
    assert.equal((await loginMfa(app, fresh.mfa_token, 'totp', right)).statusCode, 200);
  });

  test('an MFA challenge is used up by success', async (t) => {
    const app = await suite.build(t);
    const { user, secret, codes } = await userWithTotpAndCodes(app);
    const { mfa_token } = await mfaChallenge(app, user);
    assert.equal((await loginMfa(app, mfa_token, 'totp', totpCodeAt(secret, app.clock()))).statusCode, 200);
    nextTotpStep(app.clock);
    const again = await loginMfa(app, mfa_token, 'totp', totpCodeAt(secret, app.clock()));
    assert.equal(again.statusCode, 401);
    assert.equal(again.json().code, 'invalid_token');
    const backup = await loginMfa(app, mfa_token, 'backup_code', codes[0]!);
    assert.equal(backup.statusCode, 401);
    assert.equal(backup.json().code, 'invalid_token');
    assert.deepEqual((await app.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM backup_codes WHERE user_id = $1', [user.uuid])).rows[0]!.n, 10, 'the backup code was not spent on a dead challenge');
    assert.equal((await requestLoginCode(app, mfa_token)).statusCode, 401, 'nor can it have codes mailed');
  });

  test('an MFA challenge expires after 5 minutes', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { secret } = await enableTotp(app, user);
    const challenge = await mfaChallenge(app, user);
    assert.equal(challenge.mfa_expires_in, 300);
    app.clock.advance(301);
    const late = await loginMfa(app, challenge.mfa_token, 'totp', totpCodeAt(secret, app.clock()));
    assert.equal(late.statusCode, 401);
    assert.equal(late.json().code, 'invalid_token');
    assert.equal(late.json().access_token, undefined);
  });

  test('an MFA challenge is tied to its user: another user\'s code does not complete it', async (t) => {
    const app = await suite.build(t);
    const alice = await userWithTotpAndCodes(app);
    const bob = await userWithTotpAndCodes(app);
    const { mfa_token } = await mfaChallenge(app, alice.user);
    const bobsTotp = await loginMfa(app, mfa_token, 'totp', totpCodeAt(bob.secret, app.clock()));
    assert.equal(bobsTotp.statusCode, 401);
    assert.equal(bobsTotp.json().code, 'invalid_security_code');
    const bobsBackup = await loginMfa(app, mfa_token, 'backup_code', bob.codes[0]!);
    assert.equal(bobsBackup.statusCode, 401);
    assert.equal(bobsBackup.json().code, 'invalid_security_code');
    assert.equal((await challengeRow(app, mfa_token))?.attempts, 2);
    // Bob's backup code is still his to use.
    assert.equal((await login(app.app, { username: bob.user.username, password: bob.user.password, backup_code: bob.codes[0] })).statusCode, 200);

    // A challenge row of Alice's presented under Bob's name (a token for Bob cannot be forged, but
    // the guard on user_id must hold on its own): the stored challenge refuses it.
    const other = await app.deps.db.query('UPDATE mfa_challenges SET user_id = $2 WHERE id = $1', [challengeId(mfa_token), bob.user.uuid]);
    assert.equal(other.rowCount, 1);
    const mismatch = await loginMfa(app, mfa_token, 'totp', totpCodeAt(alice.secret, app.clock()));
    assert.equal(mismatch.statusCode, 401);
    assert.equal(mismatch.json().code, 'invalid_token');
  });

  test('an mfa_token is no access token and no refresh token, and an access token is no mfa_token', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { secret, tokens } = await enableTotp(app, user);
    const { mfa_token } = await mfaChallenge(app, user);

    const info = await app.app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(mfa_token) });
    assert.equal(info.statusCode, 401);
    assert.equal(info.json().code, 'invalid_token');
    const asCookie = await app.app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', cookies: { access_token: mfa_token } });
    assert.equal(asCookie.statusCode, 401);
    const refresh = await app.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: mfa_token } });
    assert.equal(refresh.statusCode, 401);
    assert.equal(refresh.json().code, 'invalid_token');
    assert.equal(refresh.json().access_token, undefined);
    const regen = await post(app, '/api/v1/backup-codes', mfa_token);
    assert.equal(regen.statusCode, 401);
    const enroll = await post(app, '/api/v1/auth-totp/enroll', mfa_token);
    assert.equal(enroll.statusCode, 401);

    nextTotpStep(app.clock);
    for (const token of [tokens.access_token, tokens.refresh_token]) {
      const res = await loginMfa(app, token, 'totp', totpCodeAt(secret, app.clock()));
      assert.equal(res.statusCode, 401);
      assert.equal(res.json().code, 'invalid_token');
    }
    assert.equal((await loginMfa(app, mfa_token, 'totp', totpCodeAt(secret, app.clock()))).statusCode, 200, 'the TOTP step was not spent by the refused tokens');
  });

  test('a wrong e-mailed code at login is counted on the code and the challenge although the request fails', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    await enableEmailOtp(app, user, (await loginTokens(app.app, user)).access_token);
    const { mfa_token } = await mfaChallenge(app, user);
    await requestLoginCode(app, mfa_token);
    const code = await lastCode(app, 'email_otp_login', user.email);
    const res = await loginMfa(app, mfa_token, 'email', wrongCode(code));
    assert.equal(res.statusCode, 401);
    assert.equal((await findEmailOtp(app.deps.db, user.uuid, `login:${challengeId(mfa_token)}`))?.attempts, 1);
    assert.equal((await challengeRow(app, mfa_token))?.attempts, 1);
    assert.equal((await loginMfa(app, mfa_token, 'email', code)).statusCode, 200);
  });

  test('e-mail login codes: 5 wrong tries kill the code, and a resend does not reset the count', async (t) => {
    // A long-lived challenge with more tries than the code has, so the code's own limit shows.
    const app = await suite.build(t, { env: { EMAIL_OTP_COOLDOWN: '0', MFA_CHALLENGE_MAX_ATTEMPTS: '20', LOCKOUT_MAX_FAILURES: '50' } });
    const user = await createUser(app.app);
    await enableEmailOtp(app, user, (await loginTokens(app.app, user)).access_token);
    const { mfa_token } = await mfaChallenge(app, user);
    await requestLoginCode(app, mfa_token);
    const first = await lastCode(app, 'email_otp_login', user.email);
    for (let i = 0; i < 3; i++) assert.equal((await loginMfa(app, mfa_token, 'email', wrongCode(first))).statusCode, 401);
    await requestLoginCode(app, mfa_token);
    const second = await lastCode(app, 'email_otp_login', user.email);
    for (let i = 0; i < 2; i++) assert.equal((await loginMfa(app, mfa_token, 'email', wrongCode(second))).statusCode, 401);
    const dead = await loginMfa(app, mfa_token, 'email', second);
    assert.equal(dead.statusCode, 401);
    assert.equal(dead.json().code, 'invalid_security_code');
    // The attempt is taken before the compare, so the count stops at the limit: the sixth was never compared.
    assert.equal((await findEmailOtp(app.deps.db, user.uuid, `login:${challengeId(mfa_token)}`))?.attempts, 5);
  });

  test('many wrong codes lock the account (429) once the lockout threshold is reached', async (t) => {
    const app = await suite.build(t, { env: { LOCKOUT_MAX_FAILURES: '6' } });
    const { user, secret } = await userWithTotpAndCodes(app);
    // 5 wrong codes on a first challenge, then a sixth on a second one reaches the limit of 6.
    const statusesSeen: number[] = [];
    for (const { mfa_token } of [await mfaChallenge(app, user), await mfaChallenge(app, user)]) {
      for (let i = 0; i < 5 && statusesSeen.length < 7; i++) statusesSeen.push((await loginMfa(app, mfa_token, 'backup_code', 'AAAA-BBBB-CCCC')).statusCode);
    }
    assert.deepEqual(statusesSeen, [401, 401, 401, 401, 401, 401, 429]);
    const { mfa_token: last } = await mfaChallenge(app, user).catch(() => ({ mfa_token: '' }));
    assert.equal(last, '', 'no new challenge while locked');
    const locked = await login(app.app, { username: user.username, password: user.password });
    assert.equal(locked.json().code, 'too_many_requests');
    assert.ok(Number(locked.headers['retry-after']) >= 1);
    const right = await login(app.app, { username: user.username, password: user.password, security_code: totpCodeAt(secret, app.clock()) });
    assert.equal(right.statusCode, 429, 'even the right code waits out the lock');
  });
});
