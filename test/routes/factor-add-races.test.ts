/**
 * A password alone (an aal1 session, or the password-only TOTP enrolment) may bind a second factor
 * only while the account has none: two such additions at the same instant must not both land, or the
 * password would have bound a factor next to one the user already had. Each pair below races two
 * additions by one user, in both orders with the second 0-15 ms after the first, and checks that
 * exactly one factor came on and that the other addition was refused.
 * (TOTP confirmation against the sign-up's e-mailed codes: totp-confirm-race.test.ts.)
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { isEmailOtpEnabled } from '../../src/db/repositories/email-otps.ts';
import { countPasskeys } from '../../src/db/repositories/passkeys/credentials.ts';
import { findTotpFactor } from '../../src/db/repositories/totp-factors.ts';
import { bearer, createUser, describeWithApp, login, loginTokens, type TestApp, type TestUser } from '../helpers/app.ts';
import { lastCode, post, verifyEmail } from '../helpers/factors.ts';
import { registrationOptions, TEST_ORIGIN } from '../helpers/passkeys.ts';
import { SoftwareAuthenticator } from '../helpers/webauthn.ts';

type Factor = 'totp' | 'email' | 'passkey';
interface Prepared { user: TestUser; token: string }
interface Side<P> { factor: Factor; run: (ta: TestApp, p: P) => Promise<LightMyRequestResponse>; refused: (res: LightMyRequestResponse) => void }

/**
 * Users per order. PostgreSQL runs the requests' transactions side by side, which is where these
 * races are won (each test failed there in every run without its fix, with 16); PGlite serialises
 * transactions and only catches some of them, so fewer users keep its run short.
 */
const usersFor = (ta: TestApp) => (ta.deps.db.kind === 'postgres' ? 16 : 6);

async function factorsOn(ta: TestApp, user: TestUser): Promise<Factor[]> {
  const on: Factor[] = [];
  if ((await findTotpFactor(ta.deps.db, user.uuid))?.active_secret) on.push('totp');
  if (await isEmailOtpEnabled(ta.deps.db, user.uuid)) on.push('email');
  if ((await countPasskeys(ta.deps.db, user.uuid)) > 0) on.push('passkey');
  return on;
}

/** Both orders, usersFor(ta) users each; reports how often side `a` won. */
async function race<P extends Prepared>(t: TestContext, ta: TestApp, prepare: () => Promise<P>, a: Side<P>, b: Side<P>): Promise<void> {
  let aWon = 0;
  for (const aFirst of [true, false]) {
    const users = await Promise.all(Array.from({ length: usersFor(ta) }, prepare));
    const later = (ms: number, f: () => Promise<LightMyRequestResponse>) => new Promise<LightMyRequestResponse>((resolve, reject) => setTimeout(() => f().then(resolve, reject), ms));
    const [first, second] = aFirst ? [a, b] : [b, a];
    const [r1, r2] = await Promise.all([
      Promise.all(users.map((p) => first.run(ta, p))),
      Promise.all(users.map((p, i) => later(i % 16, () => second.run(ta, p)))),
    ]);
    for (const [i, p] of users.entries()) {
      const ra = aFirst ? r1[i]! : r2[i]!;
      const rb = aFirst ? r2[i]! : r1[i]!;
      const on = await factorsOn(ta, p.user);
      assert.equal(on.length, 1, `user ${i}: factors on ${JSON.stringify(on)} (${a.factor} ${ra.statusCode}, ${b.factor} ${rb.statusCode})`);
      const [winner, winnerRes, loser, loserRes] = on[0] === a.factor ? [a, ra, b, rb] : [b, rb, a, ra];
      assert.equal(on[0], winner.factor);
      assert.ok(winnerRes.statusCode === 200 || winnerRes.statusCode === 201, `${winner.factor}: ${winnerRes.statusCode} ${winnerRes.body}`);
      loser.refused(loserRes);
      if (winner === a) aWon += 1;
    }
  }
  t.diagnostic(`${a.factor} won ${aWon} of ${2 * usersFor(ta)}, ${b.factor} the rest`);
}

const stepUpRequired = (res: LightMyRequestResponse) => {
  assert.equal(res.statusCode, 403, res.body);
  assert.equal(res.json().code, 'step_up_required');
};

/** A user with a verified address, an aal1 session and a mailed code to turn e-mailed codes on. */
async function withEmailCode(ta: TestApp): Promise<Prepared & { emailCode: string }> {
  const user = await createUser(ta.app);
  await verifyEmail(ta, user);
  const { access_token } = await loginTokens(ta.app, user);
  const enable = await post(ta, '/api/v1/auth-email-otp/enable', access_token);
  assert.equal(enable.statusCode, 202, enable.body);
  return { user, token: access_token, emailCode: await lastCode(ta, 'email_otp_enable', user.email) };
}

/** A pending TOTP secret enrolled by the session. */
async function enrolTotp(ta: TestApp, token: string): Promise<string> {
  const res = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-totp/enroll', headers: { ...bearer(token), accept: 'application/json' } });
  assert.equal(res.statusCode, 201, res.body);
  return res.json().secret;
}

const confirmEmail: Side<Prepared & { emailCode: string }> = { factor: 'email', run: (ta, p) => post(ta, '/api/v1/auth-email-otp/confirm', p.token, { code: p.emailCode }), refused: stepUpRequired };
const confirmTotp: Side<Prepared & { secret: string }> = {
  factor: 'totp',
  run: (ta, p) => post(ta, '/api/v1/auth-totp/confirm', p.token, { security_code: totpCodeAt(p.secret, ta.clock()) }),
  refused: stepUpRequired,
};

describeWithApp('two second factors added at once by a password alone', (suite) => {
  const env = { RATE_LIMIT_IP_MAX_REQUESTS_PER_MINUTE: '1000' };

  test('confirming e-mailed codes and confirming TOTP at once (aal1): exactly one comes on', async (t) => {
    const ta = await suite.build(t, { env });
    const prepare = async () => {
      const p = await withEmailCode(ta);
      return { ...p, secret: await enrolTotp(ta, p.token) };
    };
    await race(t, ta, prepare, confirmEmail, confirmTotp);
  });

  test('registering a passkey and confirming TOTP at once (aal1): exactly one comes on', async (t) => {
    const ta = await suite.build(t, { env });
    const prepare = async () => {
      const user = await createUser(ta.app);
      const { access_token } = await loginTokens(ta.app, user);
      const secret = await enrolTotp(ta, access_token);
      const { response } = new SoftwareAuthenticator(TEST_ORIGIN).create(await registrationOptions(ta, access_token));
      return { user, token: access_token, secret, credential: response };
    };
    const registerPasskey: Side<Awaited<ReturnType<typeof prepare>>> = {
      factor: 'passkey',
      run: (ta2, p) => post(ta2, '/api/v1/passkeys/registration/verify', p.token, { credential: p.credential }),
      refused: stepUpRequired,
    };
    await race(t, ta, prepare, registerPasskey, confirmTotp);
  });

  test('a first login activating a password-only TOTP enrolment and confirming e-mailed codes at once: exactly one comes on', async (t) => {
    const ta = await suite.build(t, { env });
    const prepare = async () => {
      const p = await withEmailCode(ta);
      const qr = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', headers: { accept: 'application/json' }, payload: { username: p.user.username, password: p.user.password } });
      assert.equal(qr.statusCode, 201, qr.body);
      return { ...p, secret: qr.json().secret as string };
    };
    const activateAtLogin: Side<Awaited<ReturnType<typeof prepare>>> = {
      factor: 'totp',
      run: (ta2, p) => login(ta2.app, { username: p.user.username, password: p.user.password, security_code: totpCodeAt(p.secret, ta2.clock()) }),
      // Once e-mailed codes are on, the pending secret is no factor of the account: its code is wrong.
      refused: (res) => {
        assert.equal(res.statusCode, 401, res.body);
        assert.equal(res.json().code, 'invalid_security_code');
      },
    };
    // The login that wins ends the confirming session (the account's first factor ends every other
    // session): the confirmation then finds it gone (401) or, already past authentication, TOTP (403).
    const confirmEmailOrGone: typeof confirmEmail = {
      ...confirmEmail,
      refused: (res) => {
        if (res.statusCode === 401) assert.equal(res.json().code, 'invalid_token', res.body);
        else stepUpRequired(res);
      },
    };
    await race(t, ta, prepare, activateAtLogin, confirmEmailOrGone);
  });
});
