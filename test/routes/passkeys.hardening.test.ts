/**
 * Passkey hardening: factor removals racing each other (the backup codes must go with the last
 * factor), crafted credential ids at registration and the cap on passkeys per user (refused
 * sign-ins naming a decoy: passkeys.decoys.test.ts). The races only show on PostgreSQL (PGlite runs one transaction at a time); run with DATABASE_URL set as well.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { createUser, describeWithApp, enableTotp, login, loginTokens, nextTotpStep, type TestApp, type TestUser } from '../helpers/app.ts';
import { del, enableEmailOtp, loginWithEmailCode, mailsOf, mfaChallenge, post } from '../helpers/factors.ts';
import { addPasskey, listPasskeys, loginMfaPasskey, mfaPasskeyOptions, passkeyLoginOptions, registrationOptions, signInWithPasskey, TEST_ORIGIN } from '../helpers/passkeys.ts';
import { MAX_PASSKEYS_PER_USER, REGISTRATION_CHALLENGES_PER_USER } from '../../src/services/passkeys/registration.ts';
import { SoftwareAuthenticator, type SoftCredential } from '../helpers/webauthn.ts';

/** Rounds per race: each round is one user whose last two factors are removed at once. */
const ROUNDS = 12;

async function backupCodeCount(t: TestApp, user: TestUser): Promise<number> {
  return (await t.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM backup_codes WHERE user_id = $1', [user.uuid])).rows[0]!.n;
}

/** A user with exactly two factors, an aal2 token, the backup codes they were given, and the two removals. */
interface TwoFactorUser {
  user: TestUser;
  token: string;
  codes: string[];
  removals: Array<() => Promise<LightMyRequestResponse>>;
}

/**
 * For each user in turn, fires both removals at once (real concurrency: both requests in flight
 * together), then checks that no factor and no backup code is left, and that a first factor added
 * afterwards brings a fresh set of ten, none of them from the old set.
 */
async function raceRemovals(t: TestApp, users: TwoFactorUser[]): Promise<void> {
  for (const { user, token, codes, removals } of users) {
    const answers = await Promise.all(removals.map((remove) => remove()));
    for (const res of answers) assert.equal(res.statusCode, 204, res.body);
    assert.equal((await listPasskeys(t, token)).length, 0);
    assert.equal(await backupCodeCount(t, user), 0, `${user.username}: backup codes outlived the last factor`);
    // No factor left: the password alone logs in, and a new first passkey brings a new set.
    const res = await login(t.app, { username: user.username, password: user.password });
    assert.equal(res.statusCode, 200, res.body);
    const { body } = await addPasskey(t, res.json().access_token);
    assert.equal(body.backup_codes?.length, 10);
    assert.ok(body.backup_codes.every((c: string) => !codes.includes(c)), 'the old set came back');
    assert.equal(await backupCodeCount(t, user), 10);
  }
}

describeWithApp('Passkeys hardening', (suite) => {
  test('removing the last two passkeys at once drops the backup codes', async (t) => {
    const app = await suite.build(t);
    const users: TwoFactorUser[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const user = await createUser(app.app);
      const first = await addPasskey(app, (await loginTokens(app.app, user)).access_token);
      const token = (await signInWithPasskey(app, first.authenticator)).json().access_token;
      const second = await addPasskey(app, token);
      users.push({
        user,
        token,
        codes: first.body.backup_codes,
        removals: [() => del(app, `/api/v1/passkeys/${first.body.id}`, token), () => del(app, `/api/v1/passkeys/${second.body.id}`, token)],
      });
    }
    await raceRemovals(app, users);
  });

  test('removing the last passkey and TOTP at once drops the backup codes', async (t) => {
    const app = await suite.build(t);
    const users: TwoFactorUser[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const user = await createUser(app.app);
      const { tokens, secret, backupCodes } = await enableTotp(app, user);
      const passkey = await addPasskey(app, tokens.access_token);
      const token = tokens.access_token;
      users.push({
        user,
        token,
        codes: backupCodes,
        removals: [
          () => del(app, `/api/v1/passkeys/${passkey.body.id}`, token),
          // The code is computed when the request is made, after the clock moved past the activation step.
          () => del(app, '/api/v1/auth-totp', token, { security_code: totpCodeAt(secret, app.clock()) }),
        ],
      });
    }
    nextTotpStep(app.clock);
    await raceRemovals(app, users);
  });

  test('removing the last passkey and e-mailed codes at once drops the backup codes', async (t) => {
    const app = await suite.build(t);
    const users: TwoFactorUser[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const user = await createUser(app.app);
      const codes = await enableEmailOtp(app, user, (await loginTokens(app.app, user)).access_token);
      const token = (await loginWithEmailCode(app, user)).access_token;
      const passkey = await addPasskey(app, token);
      users.push({
        user,
        token,
        codes,
        removals: [() => del(app, `/api/v1/passkeys/${passkey.body.id}`, token), () => del(app, '/api/v1/auth-email-otp', token)],
      });
    }
    await raceRemovals(app, users);
  });
});

/**
 * Registers with a credential whose id in the authenticator data is `authDataBytes` random bytes,
 * reported in `id`/`rawId` as `reportedId` (default: that same id, as an honest browser does).
 */
async function registerWithCredentialId(t: TestApp, token: string, authDataBytes: number, reportedId?: string): Promise<{ res: LightMyRequestResponse; credential: SoftCredential }> {
  const options = await registrationOptions(t, token);
  const donor = new SoftwareAuthenticator(TEST_ORIGIN);
  donor.create(options);
  const credential = { ...donor.credentials[0]!, id: randomBytes(authDataBytes) };
  const { response } = donor.create(options, { credential });
  const id = reportedId ?? response.id;
  const res = await post(t, '/api/v1/passkeys/registration/verify', token, { credential: { ...response, id, rawId: id } });
  return { res, credential };
}

async function passkeyCount(t: TestApp, user: TestUser): Promise<number> {
  return (await t.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM passkeys WHERE user_id = $1', [user.uuid])).rows[0]!.n;
}

describeWithApp('Passkeys hardening: credential ids', (suite) => {
  test('a credential id in the authenticator data other than the reported one, or too long, is 400 invalid_passkey and nothing is stored', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const token = (await loginTokens(app.app, user)).access_token;
    const short = randomBytes(16).toString('base64url');
    const cases: Array<[string, number]> = [
      ['3000 bytes reported as 16 (was a 500)', 3000],
      ['800 bytes reported as 16 (stored, but could never sign in)', 800],
      ['same length, different id', 16],
      ['1024 bytes reported as 16', 1024],
      ['12000 bytes reported as 16', 12000],
    ];
    for (const [what, bytes] of cases) {
      const { res } = await registerWithCredentialId(app, token, bytes, short);
      assert.equal(res.statusCode, 400, `${what}: ${res.body}`);
      assert.equal(res.json().code, 'invalid_passkey', what);
    }
    // Honest but over the WebAuthn limit: the reported id is already longer than the body allows.
    const { res: tooLong } = await registerWithCredentialId(app, token, 1024);
    assert.equal(tooLong.statusCode, 422, tooLong.body);
    assert.equal(tooLong.json().code, 'validation_failed');
    assert.equal(await passkeyCount(app, user), 0);
    assert.equal(await backupCodeCount(app, user), 0);
  });

  test('an honest credential id of 1023 bytes (the WebAuthn maximum) registers and signs in, passwordless and as a second step', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const token = (await loginTokens(app.app, user)).access_token;
    const { res, credential } = await registerWithCredentialId(app, token, 1023);
    assert.equal(res.statusCode, 201, res.body);
    const authenticator = new SoftwareAuthenticator(TEST_ORIGIN);
    authenticator.credentials.push(credential);
    const passwordless = await signInWithPasskey(app, authenticator);
    assert.equal(passwordless.statusCode, 200, passwordless.body);
    const { mfa_token } = await mfaChallenge(app, user);
    const options = await mfaPasskeyOptions(app, mfa_token);
    assert.equal(options.statusCode, 200, options.body);
    const second = await loginMfaPasskey(app, mfa_token, authenticator.get(options.json()));
    assert.equal(second.statusCode, 200, second.body);
  });
});

describeWithApp('Passkeys hardening: passkeys per user', (suite) => {
  test(`at ${MAX_PASSKEYS_PER_USER} passkeys, options and verify answer 409 passkey_limit_reached; removing one makes room`, async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const first = await addPasskey(app, (await loginTokens(app.app, user)).access_token);
    const token = (await signInWithPasskey(app, first.authenticator)).json().access_token;
    for (let i = 1; i < MAX_PASSKEYS_PER_USER - 1; i++) await addPasskey(app, token);
    // One below the cap: two options are handed out, the first answer fills the last place.
    const authenticator = new SoftwareAuthenticator(TEST_ORIGIN);
    const early = await registrationOptions(app, token);
    const late = await registrationOptions(app, token);
    const filled = await post(app, '/api/v1/passkeys/registration/verify', token, { credential: authenticator.create(early).response });
    assert.equal(filled.statusCode, 201, filled.body);
    const refused = await post(app, '/api/v1/passkeys/registration/verify', token, { credential: authenticator.create(late).response });
    assert.equal(refused.statusCode, 409, refused.body);
    assert.equal(refused.json().code, 'passkey_limit_reached');
    const options = await post(app, '/api/v1/passkeys/registration/options', token, {});
    assert.equal(options.statusCode, 409, options.body);
    assert.equal(options.json().code, 'passkey_limit_reached');
    assert.equal(await passkeyCount(app, user), MAX_PASSKEYS_PER_USER);
    assert.equal((await mailsOf(app, 'factor_added', user.email)).length, MAX_PASSKEYS_PER_USER);
    // Login options never list more than the cap.
    assert.equal((await passkeyLoginOptions(app, user.username)).json().options.allowCredentials.length, MAX_PASSKEYS_PER_USER);

    assert.equal((await del(app, `/api/v1/passkeys/${first.body.id}`, token)).statusCode, 204);
    await addPasskey(app, token);
    assert.equal(await passkeyCount(app, user), MAX_PASSKEYS_PER_USER);
  });

  test(`creation options asked for again and again: at most ${REGISTRATION_CHALLENGES_PER_USER} challenges kept (the newest work), and the per-IP quota answers 429`, async (t) => {
    const app = await suite.build(t, { env: { RATE_LIMIT_IP_MAX_REQUESTS_PER_MINUTE: '10' } });
    const user = await createUser(app.app);
    const token = (await loginTokens(app.app, user)).access_token;
    const authenticator = new SoftwareAuthenticator(TEST_ORIGIN);
    const asked = [];
    for (let i = 0; i < 12; i++) {
      asked.push(await registrationOptions(app, token));
      app.clock.advance(1); // one request a second: "newest" is well defined
    }
    const rows = await app.deps.db.query("SELECT 1 FROM webauthn_challenges WHERE purpose = 'registration' AND user_id = $1", [user.uuid]);
    assert.equal(rows.rows.length, REGISTRATION_CHALLENGES_PER_USER, 'older challenges are dropped, not kept five minutes each');
    const dropped = await post(app, '/api/v1/passkeys/registration/verify', token, { credential: authenticator.create(asked[0]).response });
    assert.equal(dropped.statusCode, 400, dropped.body);
    const kept = await post(app, '/api/v1/passkeys/registration/verify', token, { credential: authenticator.create(asked.at(-1)).response });
    assert.equal(kept.statusCode, 201, kept.body);
    // 4 × RATE_LIMIT_IP_MAX_REQUESTS_PER_MINUTE a minute from one address, as for the sign-in options.
    const other = (await loginTokens(app.app, await createUser(app.app))).access_token;
    const statuses = [];
    for (let i = 0; i < 40; i++) statuses.push((await post(app, '/api/v1/passkeys/registration/options', other, {})).statusCode);
    assert.ok(statuses.includes(429), statuses.join());
    assert.equal(statuses.filter((s) => s === 200).length, 40 - 12, 'the quota is 40 a minute, 12 taken above');
  });

  test('answers racing for the last place: exactly one is stored', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const first = await addPasskey(app, (await loginTokens(app.app, user)).access_token);
    const token = (await signInWithPasskey(app, first.authenticator)).json().access_token;
    for (let i = 1; i < MAX_PASSKEYS_PER_USER - 1; i++) await addPasskey(app, token);
    const authenticator = new SoftwareAuthenticator(TEST_ORIGIN);
    const answers = [];
    // As many answers as one user may have live challenges.
    for (let i = 0; i < REGISTRATION_CHALLENGES_PER_USER; i++) answers.push(authenticator.create(await registrationOptions(app, token)).response);
    const results = await Promise.all(answers.map((credential) => post(app, '/api/v1/passkeys/registration/verify', token, { credential })));
    const statuses = results.map((r) => r.statusCode).sort();
    assert.deepEqual(statuses, [201, ...Array<number>(REGISTRATION_CHALLENGES_PER_USER - 1).fill(409)], JSON.stringify(results.map((r) => r.json().code)));
    assert.ok(results.filter((r) => r.statusCode === 409).every((r) => r.json().code === 'passkey_limit_reached'));
    assert.equal(await passkeyCount(app, user), MAX_PASSKEYS_PER_USER);
  });
});
