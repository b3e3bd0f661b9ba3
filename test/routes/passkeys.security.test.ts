/** Attacks on passkeys, each tried against the API with a software authenticator (real attestation and assertion objects). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { createUser, describeWithApp, enableTotp, enableTotpFromSession, login, loginTokens, nextTotpStep, type TestApp, type TestUser } from '../helpers/app.ts';
import { del, get, loginMfa, mfaChallenge, post } from '../helpers/factors.ts';
import {
  addPasskey,
  listPasskeys,
  loginMfaPasskey,
  mfaPasskeyOptions,
  passkeyLogin,
  passkeyLoginOptions,
  registrationOptions,
  registerPasskey,
  signInWithPasskey,
  TEST_ORIGIN,
} from '../helpers/passkeys.ts';
import { SoftwareAuthenticator } from '../helpers/webauthn.ts';
import { ADMIN_ENV, adminCall, auditRowsOf, auditTypesOf } from '../helpers/admin.ts';

const CONCURRENCY = 20;

async function sessionCount(t: TestApp, user: TestUser): Promise<number> {
  return (await t.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM sessions WHERE user_id = $1', [user.uuid])).rows[0]!.n;
}

function expectInvalid(res: LightMyRequestResponse, status: number, what: string): void {
  assert.equal(res.statusCode, status, `${what}: ${res.body}`);
  assert.equal(res.json().code, 'invalid_passkey', what);
  assert.equal(res.json().access_token, undefined, what);
  assert.equal(res.headers['set-cookie'], undefined, what);
}

/** A user with one passkey; returns the user, the authenticator and an aal1 token. */
async function userWithPasskey(t: TestApp, synced = false) {
  const user = await createUser(t.app);
  const aal1 = (await loginTokens(t.app, user)).access_token;
  const { authenticator, body } = await addPasskey(t, aal1, new SoftwareAuthenticator(TEST_ORIGIN, synced));
  return { user, authenticator, aal1, passkeyId: body.id as string };
}

describeWithApp('Passkeys: security', (suite) => {
  test('registration refuses a wrong origin, a wrong RP ID hash, a missing UV flag, a wrong ceremony type, a replayed and another user\'s challenge', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const token = (await loginTokens(app.app, user)).access_token;
    const authenticator = new SoftwareAuthenticator(TEST_ORIGIN);
    const cases: Array<[string, Parameters<SoftwareAuthenticator['create']>[1]]> = [
      ['wrong origin', { origin: 'https://evil.example' }],
      ['loopback alias origin', { origin: 'http://127.0.0.1:8000' }],
      ['wrong RP ID hash', { rpIdForHash: 'evil.example' }],
      ['no user verification', { userVerified: false }],
      ['assertion type', { type: 'webauthn.get' }],
    ];
    for (const [what, overrides] of cases) expectInvalid(await registerPasskey(app, token, authenticator, overrides), 400, what);

    // Replay: the same answer twice (the challenge is spent by the first).
    const honest = new SoftwareAuthenticator(TEST_ORIGIN);
    const options = await registrationOptions(app, token);
    const { response } = honest.create(options);
    assert.equal((await post(app, '/api/v1/passkeys/registration/verify', token, { credential: response })).statusCode, 201);
    const aal2 = (await signInWithPasskey(app, honest)).json().access_token;
    expectInvalid(await post(app, '/api/v1/passkeys/registration/verify', aal2, { credential: response }), 400, 'replay');

    // Another user's challenge: options fetched by the victim, answered by the attacker's session.
    const victim = await createUser(app.app);
    const victimOptions = await registrationOptions(app, (await loginTokens(app.app, victim)).access_token);
    const attacker = await createUser(app.app);
    const attackerToken = (await loginTokens(app.app, attacker)).access_token;
    const stolen = new SoftwareAuthenticator(TEST_ORIGIN).create(victimOptions).response;
    expectInvalid(await post(app, '/api/v1/passkeys/registration/verify', attackerToken, { credential: stolen }), 400, 'another user\'s challenge');
    assert.deepEqual(await listPasskeys(app, attackerToken), []);
    // Expired: 5 minutes.
    const late = await registrationOptions(app, attackerToken);
    app.clock.advance(301);
    expectInvalid(await post(app, '/api/v1/passkeys/registration/verify', attackerToken, { credential: new SoftwareAuthenticator(TEST_ORIGIN).create(late).response }), 400, 'expired');
    assert.equal(await listPasskeys(app, token).then((l) => l.length), 1, 'only the honest one');
  });

  test('a credential already registered (to anyone) is 409 passkey_already_registered', async (t) => {
    const app = await suite.build(t);
    const { authenticator } = await userWithPasskey(app);
    const other = await createUser(app.app);
    const token = (await loginTokens(app.app, other)).access_token;
    const res = await registerPasskey(app, token, authenticator, { credential: authenticator.credentials[0] });
    assert.equal(res.statusCode, 409, res.body);
    assert.equal(res.json().code, 'passkey_already_registered');
    assert.deepEqual(await listPasskeys(app, token), []);
  });

  test('an aal1 session cannot add a passkey when a factor exists (TOTP), at options or at verify; aal2 can', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const aal1 = (await loginTokens(app.app, user)).access_token;
    // Options fetched while no factor existed, then TOTP confirmed: the verify step checks again.
    const early = await registrationOptions(app, aal1);
    const { tokens } = await enableTotpFromSession(app, user, aal1);
    const options = await post(app, '/api/v1/passkeys/registration/options', aal1, {});
    assert.equal(options.statusCode, 403);
    assert.equal(options.json().code, 'step_up_required');
    const verify = await post(app, '/api/v1/passkeys/registration/verify', aal1, { credential: new SoftwareAuthenticator(TEST_ORIGIN).create(early).response });
    assert.equal(verify.statusCode, 403);
    assert.equal(verify.json().code, 'step_up_required');
    assert.deepEqual(await listPasskeys(app, aal1), []);
    assert.equal((await registerPasskey(app, tokens.access_token, new SoftwareAuthenticator(TEST_ORIGIN))).statusCode, 201);
  });

  test('removal needs aal2: an aal1 session gets 403 and the passkey stays', async (t) => {
    const app = await suite.build(t);
    // The password-only session from before the passkey was added is still live (aal1).
    const { user, aal1, passkeyId } = await userWithPasskey(app);
    const res = await del(app, `/api/v1/passkeys/${passkeyId}`, aal1);
    assert.equal(res.statusCode, 403);
    assert.equal(res.json().code, 'step_up_required');
    assert.equal((await listPasskeys(app, aal1)).length, 1);
    assert.equal((await app.deps.db.query<{ n: number }>("SELECT count(*)::int AS n FROM outbox WHERE kind = 'factor_removed' AND to_address = $1", [user.email])).rows[0]!.n, 0, 'no removal mail');
  });

  test('passwordless login refuses a wrong origin, a wrong RP ID hash, no UV flag, a replayed challenge, an unknown and a deleted passkey', async (t) => {
    const app = await suite.build(t);
    const { user, authenticator, passkeyId } = await userWithPasskey(app);
    const before = await sessionCount(app, user);
    expectInvalid(await signInWithPasskey(app, authenticator, { origin: 'https://evil.example' }), 401, 'wrong origin');
    expectInvalid(await signInWithPasskey(app, authenticator, { rpIdForHash: 'evil.example' }), 401, 'wrong RP ID hash');
    expectInvalid(await signInWithPasskey(app, authenticator, { userVerified: false }), 401, 'no UV');
    // An unknown credential, really sent.
    const stranger = new SoftwareAuthenticator(TEST_ORIGIN);
    stranger.create({ challenge: 'AAAAAAAAAAAAAAAAAAAAAA', rp: { id: 'localhost' }, user: { id: 'AAAA' } });
    expectInvalid(await signInWithPasskey(app, stranger), 401, 'unknown passkey');

    // Replay of a complete, valid login.
    const opts = (await passkeyLoginOptions(app)).json();
    const body = { challenge_token: opts.challenge_token, credential: authenticator.get(opts.options) };
    assert.equal((await passkeyLogin(app, body)).statusCode, 200);
    expectInvalid(await passkeyLogin(app, body), 401, 'replay');
    // The challenge of one token answered under another token.
    const a = (await passkeyLoginOptions(app)).json();
    const b = (await passkeyLoginOptions(app)).json();
    expectInvalid(await passkeyLogin(app, { challenge_token: b.challenge_token, credential: authenticator.get(a.options) }), 401, 'swapped token');
    assert.equal(await sessionCount(app, user), before + 1, 'one login only');

    // Deleted: removed by an aal2 session, then tried.
    const aal2 = (await signInWithPasskey(app, authenticator)).json().access_token;
    assert.equal((await del(app, `/api/v1/passkeys/${passkeyId}`, aal2)).statusCode, 204);
    expectInvalid(await signInWithPasskey(app, authenticator), 401, 'deleted passkey');
    // Expired challenge.
    const { authenticator: again } = await addPasskey(app, aal2);
    const old = (await passkeyLoginOptions(app)).json();
    app.clock.advance(301);
    expectInvalid(await passkeyLogin(app, { challenge_token: old.challenge_token, credential: again.get(old.options) }), 401, 'expired');
  });

  test('a signature counter that goes back is refused, counted on the credential, and logs nobody in; 0 → 0 is fine', async (t) => {
    const app = await suite.build(t);
    const { user, authenticator } = await userWithPasskey(app);
    assert.equal((await signInWithPasskey(app, authenticator, { counter: 5 })).statusCode, 200);
    const before = await sessionCount(app, user);
    expectInvalid(await signInWithPasskey(app, authenticator, { counter: 3 }), 401, 'counter 3 after 5');
    expectInvalid(await signInWithPasskey(app, authenticator, { counter: 5 }), 401, 'counter 5 again');
    const row = await app.deps.db.query<{ counter: string; counter_regressions: number }>('SELECT counter::text AS counter, counter_regressions FROM passkeys WHERE user_id = $1', [user.uuid]);
    assert.equal(row.rows[0]!.counter, '5');
    assert.equal(row.rows[0]!.counter_regressions, 2);
    assert.equal(await sessionCount(app, user), before);
    const regressions = (await auditRowsOf(app, user.uuid)).filter((r) => r.type === 'passkey.counter_regressed');
    assert.deepEqual(regressions.map((r) => (r.data as { received_counter: number }).received_counter), [3, 5], 'recorded in the audit log');
    // As the second step too.
    const challenge = await mfaChallenge(app, user);
    const opts = (await mfaPasskeyOptions(app, challenge.mfa_token)).json();
    expectInvalid(await loginMfaPasskey(app, challenge.mfa_token, authenticator.get(opts, { counter: 4 })), 401, 'mfa step');
    assert.equal(await sessionCount(app, user), before);

    // An authenticator that does not count (always 0) keeps working.
    const flat = await userWithPasskey(app);
    for (let i = 0; i < 2; i++) assert.equal((await signInWithPasskey(app, flat.authenticator, { counter: 0 })).statusCode, 200);
  });

  test('the second step refuses another user\'s credential and another user\'s options; a failure uses one of the challenge\'s attempts', async (t) => {
    const app = await suite.build(t);
    const victim = await userWithPasskey(app);
    const attacker = await userWithPasskey(app);
    const challenge = await mfaChallenge(app, victim.user);
    const opts = (await mfaPasskeyOptions(app, challenge.mfa_token)).json();
    // The attacker's own passkey, answering the victim's options.
    expectInvalid(await loginMfaPasskey(app, challenge.mfa_token, attacker.authenticator.get({ ...opts, allowCredentials: [] })), 401, 'another user\'s credential');
    // Options of the attacker's own challenge, answered by the victim's passkey... under the victim's token.
    const attackerChallenge = await mfaChallenge(app, attacker.user);
    const attackerOpts = (await mfaPasskeyOptions(app, attackerChallenge.mfa_token)).json();
    expectInvalid(await loginMfaPasskey(app, challenge.mfa_token, victim.authenticator.get({ ...attackerOpts, allowCredentials: [] })), 401, 'another challenge\'s options');
    const attempts = await app.deps.db.query<{ attempts: number }>('SELECT attempts FROM mfa_challenges WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1', [victim.user.uuid]);
    assert.equal(attempts.rows[0]!.attempts, 2);
    // The victim still gets in with fresh options.
    const fresh = (await mfaPasskeyOptions(app, challenge.mfa_token)).json();
    assert.equal((await loginMfaPasskey(app, challenge.mfa_token, victim.authenticator.get(fresh))).statusCode, 200);
  });

  test(`${CONCURRENCY} concurrent logins with one challenge: exactly one 200 and one session (passwordless and second step)`, async (t) => {
    // The losers are failures and count: a lockout limit above the burst keeps the second half free of 429s.
    const app = await suite.build(t, { env: { LOCKOUT_MAX_FAILURES: '100', RATE_LIMIT_IP_MAX_FAILURES: '100' } });
    const { user, authenticator } = await userWithPasskey(app);
    const before = await sessionCount(app, user);
    const opts = (await passkeyLoginOptions(app)).json();
    const credential = authenticator.get(opts.options);
    const responses = await Promise.all(Array.from({ length: CONCURRENCY }, () => passkeyLogin(app, { challenge_token: opts.challenge_token, credential })));
    assert.equal(responses.filter((r) => r.statusCode === 200).length, 1, responses.map((r) => r.statusCode).join(','));
    for (const r of responses.filter((x) => x.statusCode !== 200)) expectInvalid(r, 401, 'loser');
    assert.equal(await sessionCount(app, user), before + 1);

    const challenge = await mfaChallenge(app, user);
    const mfaOpts = (await mfaPasskeyOptions(app, challenge.mfa_token)).json();
    const assertion = authenticator.get(mfaOpts);
    const second = await Promise.all(Array.from({ length: CONCURRENCY }, () => loginMfaPasskey(app, challenge.mfa_token, assertion)));
    assert.equal(second.filter((r) => r.statusCode === 200).length, 1, second.map((r) => r.statusCode).join(','));
    assert.equal(await sessionCount(app, user), before + 2);
  });

  test('passkey failures count towards the account lockout and the per-IP limit like wrong codes', async (t) => {
    const app = await suite.build(t, { env: { LOCKOUT_MAX_FAILURES: '3', RATE_LIMIT_IP_MAX_FAILURES: '6' } });
    const { authenticator, user } = await userWithPasskey(app);
    for (let i = 0; i < 3; i++) expectInvalid(await signInWithPasskey(app, authenticator, { origin: 'https://evil.example' }), 401, `failure ${i + 1}`);
    const locked = await signInWithPasskey(app, authenticator);
    assert.equal(locked.statusCode, 429, 'the account is locked, even for a valid passkey');
    const types = await auditTypesOf(app, user.uuid);
    assert.equal(types.filter((x) => x === 'login.failed').length, 3);
    assert.ok(types.includes('login.locked'));
    assert.ok(Number(locked.headers['retry-after']) >= 1);
    // Unknown passkeys count against the IP.
    const stranger = new SoftwareAuthenticator(TEST_ORIGIN);
    stranger.create({ challenge: 'AAAAAAAAAAAAAAAAAAAAAA', rp: { id: 'localhost' }, user: { id: 'AAAA' } });
    const results: number[] = [];
    for (let i = 0; i < 4; i++) results.push((await signInWithPasskey(app, stranger)).statusCode);
    assert.deepEqual(results, [401, 401, 401, 429], 'three more failures reach the IP limit of 6');
  });

  test('removing TOTP while a passkey remains keeps the backup codes', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { tokens, secret } = await enableTotp(app, user);
    await addPasskey(app, tokens.access_token);
    nextTotpStep(app.clock);
    const res = await app.app.inject({ method: 'DELETE', url: '/api/v1/auth-totp', headers: { authorization: `Bearer ${tokens.access_token}` }, payload: { security_code: totpCodeAt(secret, app.clock()) } });
    assert.equal(res.statusCode, 204, res.body);
    assert.equal((await get(app, '/api/v1/backup-codes', tokens.access_token)).json().remaining, 10);
    const challenge = await mfaChallenge(app, user);
    assert.deepEqual(challenge.mfa_methods, ['passkey', 'backup_code']);
    assert.equal((await loginMfa(app, challenge.mfa_token, 'totp', '123456')).statusCode, 401);
  });

  test('an admin reset of the second factors deletes the passkeys: the lost device no longer signs in', async (t) => {
    const app = await suite.build(t, { env: ADMIN_ENV });
    const { user, authenticator } = await userWithPasskey(app);
    const res = await adminCall(app, 'DELETE', `/api/v1/admin/users/${user.uuid}/mfa`);
    assert.equal(res.statusCode, 204, res.body);
    expectInvalid(await signInWithPasskey(app, authenticator), 401, 'passkey after the reset');
    assert.equal((await app.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM passkeys WHERE user_id = $1', [user.uuid])).rows[0]!.n, 0);
    // The password alone logs in again, and the user may add a new passkey with that aal1 session.
    const aal1 = (await loginTokens(app.app, user)).access_token;
    assert.equal((await registerPasskey(app, aal1, new SoftwareAuthenticator(TEST_ORIGIN))).statusCode, 201);
  });

  test(`${CONCURRENCY} concurrent registrations with one answer: exactly one 201, one passkey`, async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const token = (await loginTokens(app.app, user)).access_token;
    const { response } = new SoftwareAuthenticator(TEST_ORIGIN).create(await registrationOptions(app, token));
    const responses = await Promise.all(Array.from({ length: CONCURRENCY }, () => post(app, '/api/v1/passkeys/registration/verify', token, { credential: response })));
    assert.equal(responses.filter((r) => r.statusCode === 201).length, 1, responses.map((r) => r.statusCode).join(','));
    for (const r of responses.filter((x) => x.statusCode !== 201)) assert.equal(r.json().code, 'invalid_passkey');
    assert.equal((await listPasskeys(app, token)).length, 1);
    assert.equal((await get(app, '/api/v1/backup-codes', token)).json().remaining, 10, 'one set of backup codes');
  });

  test('a deactivated account cannot sign in with its passkey (403 account_inactive, no session)', async (t) => {
    const app = await suite.build(t);
    const { user, authenticator } = await userWithPasskey(app);
    const before = await sessionCount(app, user);
    await app.deps.db.query('UPDATE users SET is_active = false WHERE id = $1', [user.uuid]);
    const res = await signInWithPasskey(app, authenticator);
    assert.equal(res.statusCode, 403);
    assert.equal(res.json().code, 'account_inactive');
    assert.equal(res.json().access_token, undefined);
    assert.equal(await sessionCount(app, user), before);
  });

  test('passwordless options are limited per IP (each stores a challenge): 429 with Retry-After', async (t) => {
    const app = await suite.build(t, { env: { RATE_LIMIT_IP_MAX_REQUESTS_PER_MINUTE: '2' } });
    const statuses: number[] = [];
    for (let i = 0; i < 9; i++) statuses.push((await passkeyLoginOptions(app)).statusCode);
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 200, 200, 429]);
    const refused = await passkeyLoginOptions(app);
    assert.equal(refused.json().code, 'too_many_requests');
    assert.ok(Number(refused.headers['retry-after']) >= 1);
  });

  test('simultaneous sign-ins of one user with different passkeys all succeed (no lock-upgrade deadlock on the user row)', async (t) => {
    const app = await suite.build(t);
    const { user, authenticator } = await userWithPasskey(app);
    const aal2 = (await signInWithPasskey(app, authenticator)).json().access_token;
    // Four more passkeys that never count (counter 0, as synced passkeys send): no counter race, only the user row.
    const authenticators: SoftwareAuthenticator[] = [];
    for (let i = 0; i < 4; i++) authenticators.push((await addPasskey(app, aal2)).authenticator);
    const before = await sessionCount(app, user);
    const logins = [];
    // Eight at once: under the account's limit of attempts in flight (LOCKOUT_MAX_FAILURES, 10), which counts before the check.
    for (let round = 0; round < 2; round++) {
      for (const a of authenticators) {
        const opts = (await passkeyLoginOptions(app)).json();
        logins.push({ challenge_token: opts.challenge_token, credential: a.get(opts.options, { counter: 0 }) });
      }
    }
    const responses = await Promise.all(logins.map((body) => passkeyLogin(app, body)));
    assert.deepEqual(responses.filter((r) => r.statusCode !== 200).map((r) => `${r.statusCode} ${r.body}`), []);
    assert.equal(await sessionCount(app, user), before + logins.length);
  });

  test('simultaneous second steps with a passkey, and simultaneous password logins, of one user all succeed (no deadlock)', async (t) => {
    const app = await suite.build(t);
    const plain = await createUser(app.app);
    const passwordLogins = await Promise.all(Array.from({ length: 8 }, () => login(app.app, { username: plain.username, password: plain.password })));
    assert.deepEqual(passwordLogins.filter((r) => r.statusCode !== 200).map((r) => `${r.statusCode} ${r.body}`), []);

    // Four passkeys that never count (counter 0), two challenges each: eight completions at once.
    const user = await createUser(app.app);
    const first = new SoftwareAuthenticator(TEST_ORIGIN);
    await addPasskey(app, (await loginTokens(app.app, user)).access_token, first);
    const aal2 = (await signInWithPasskey(app, first, { counter: 0 })).json().access_token;
    const authenticators = [first];
    for (let i = 0; i < 3; i++) authenticators.push((await addPasskey(app, aal2)).authenticator);
    const bodies = [];
    for (let round = 0; round < 2; round++) {
      for (const a of authenticators) {
        const challenge = await mfaChallenge(app, user);
        const opts = (await mfaPasskeyOptions(app, challenge.mfa_token)).json();
        bodies.push({ mfa: challenge.mfa_token, credential: a.get({ ...opts, allowCredentials: [] }, { counter: 0 }) });
      }
    }
    const responses = await Promise.all(bodies.map((b) => loginMfaPasskey(app, b.mfa, b.credential)));
    assert.deepEqual(responses.filter((r) => r.statusCode !== 200).map((r) => `${r.statusCode} ${r.body}`), []);
  });
});
