/** Passkeys through the API with a software authenticator: registration, listing, renaming, removal, sign-in. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bearer, createUser, describeWithApp, enableTotp, login, loginTokens } from '../helpers/app.ts';
import { del, get, mailsOf, mfaChallenge, post } from '../helpers/factors.ts';
import {
  addPasskey,
  claims,
  listPasskeys,
  loginMfaPasskey,
  mfaPasskeyOptions,
  passkeyLoginOptions,
  registrationOptions,
  registerPasskey,
  signInWithPasskey,
  TEST_ORIGIN,
} from '../helpers/passkeys.ts';
import { SoftwareAuthenticator } from '../helpers/webauthn.ts';
import { auditRowsOf, auditTypesOf } from '../helpers/admin.ts';

describeWithApp('Passkeys', (suite) => {
  test('creation options: RP ID localhost, a random user handle, ES256 and RS256, discoverable, UV required, own passkeys excluded', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const token = (await loginTokens(app.app, user)).access_token;
    const first = await registrationOptions(app, token);
    assert.equal(first.rp.id, 'localhost');
    assert.equal(first.rp.name, 'Twofold');
    assert.equal(first.user.name, user.username);
    const handle = Buffer.from(first.user.id, 'base64url');
    assert.equal(handle.length, 32);
    assert.ok(!handle.toString('utf8').includes(user.email) && !handle.toString('utf8').includes(user.username), 'not the e-mail or username');
    assert.deepEqual(first.pubKeyCredParams.map((p: { alg: number }) => p.alg).sort(), [-257, -7]);
    assert.equal(first.authenticatorSelection.residentKey, 'required');
    assert.equal(first.authenticatorSelection.userVerification, 'required');
    assert.deepEqual(first.excludeCredentials, []);
    assert.ok(first.challenge.length >= 43);

    const { authenticator } = await addPasskey(app, token);
    const aal2 = (await signInWithPasskey(app, authenticator)).json().access_token;
    const second = await registrationOptions(app, aal2);
    assert.deepEqual(second.excludeCredentials.map((c: { id: string }) => c.id), [authenticator.credentials[0]!.id.toString('base64url')]);
    assert.equal(second.user.id, first.user.id, 'one handle per user, kept');
    const other = await createUser(app.app);
    const otherOptions = await registrationOptions(app, (await loginTokens(app.app, other)).access_token);
    assert.notEqual(otherOptions.user.id, first.user.id, 'per user');
    assert.notEqual(otherOptions.challenge, first.challenge);
  });

  test('the first passkey (no other factor, aal1 session) brings 10 backup codes and a mail; user-info counts it; the list shows it', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const token = (await loginTokens(app.app, user)).access_token;
    const res = await registerPasskey(app, token, new SoftwareAuthenticator(TEST_ORIGIN), {}, 'My laptop');
    assert.equal(res.statusCode, 201, res.body);
    const body = res.json();
    assert.equal(body.name, 'My laptop');
    assert.equal(body.backed_up, false);
    assert.equal(body.device_type, 'single_device');
    assert.equal(body.last_used_at, null);
    assert.equal(body.backup_codes.length, 10);
    assert.equal(res.headers['cache-control'], 'no-store');
    const mails = await mailsOf(app, 'factor_added', user.email);
    assert.equal(mails.length, 1);
    assert.match(mails[0]!.text, /passkey \("My laptop"\)/);

    const info = (await get(app, '/api/v1/auth-jwt/user-info', token)).json();
    assert.equal(info.mfa.passkeys, 1);
    assert.equal(info.mfa.backup_codes_remaining, 10);
    const added = (await auditRowsOf(app, user.uuid)).filter((r) => r.type === 'passkey.added');
    assert.equal(added.length, 1, 'passkey.added in the audit log');
    assert.equal((added[0]!.data as Record<string, unknown>).name, 'My laptop');
    assert.equal((added[0]!.data as Record<string, unknown>).passkey_id, body.id, 'which passkey (a secret scrubber once took passkey_id for a password)');
    assert.equal(added[0]!.actor_kind, 'user');
    const list = await listPasskeys(app, token);
    assert.deepEqual(list.map((p) => p.name), ['My laptop']);
    assert.equal((list[0] as Record<string, unknown>).public_key, undefined, 'no key material in the list');
    assert.equal((list[0] as Record<string, unknown>).credential_id, undefined);

    // Now a factor exists: the aal1 session may not add another one.
    const again = await post(app, '/api/v1/passkeys/registration/options', token, {});
    assert.equal(again.statusCode, 403);
    assert.equal(again.json().code, 'step_up_required');
  });

  test('passwordless sign-in: empty allowCredentials, aal2 tokens with amr hwk+user+mfa, cookies, last use recorded', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { authenticator } = await addPasskey(app, (await loginTokens(app.app, user)).access_token);
    const opts = await passkeyLoginOptions(app);
    assert.equal(opts.statusCode, 200);
    assert.deepEqual(opts.json().options.allowCredentials, []);
    assert.equal(opts.json().options.userVerification, 'required');
    assert.equal(opts.json().options.rpId, 'localhost');
    const res = await signInWithPasskey(app, authenticator);
    assert.equal(res.statusCode, 200, res.body);
    const c = claims(res.json().access_token);
    assert.equal(c.sub, user.uuid);
    assert.equal(c.aal, 'aal2');
    assert.deepEqual(c.amr, ['hwk', 'user', 'mfa']);
    assert.ok(String(res.headers['set-cookie']).includes('access_token='));
    const succeeded = (await auditRowsOf(app, user.uuid)).filter((r) => r.type === 'login.succeeded').at(-1);
    assert.deepEqual((succeeded!.data as { amr: string[] }).amr, ['hwk', 'user', 'mfa']);
    const [passkey] = await listPasskeys(app, res.json().access_token);
    assert.ok(passkey!.last_used_at);
    const row = await app.deps.db.query<{ counter: string }>('SELECT counter::text AS counter FROM passkeys WHERE user_id = $1', [user.uuid]);
    assert.equal(row.rows[0]!.counter, '1');
    // The aal2 session may add a second one; no new backup codes then.
    const second = await registerPasskey(app, res.json().access_token, new SoftwareAuthenticator(TEST_ORIGIN, true), {}, 'Phone');
    assert.equal(second.statusCode, 201, second.body);
    assert.equal(second.json().backup_codes, undefined);
    assert.equal(second.json().backed_up, true);
    assert.equal(second.json().device_type, 'multi_device');
  });

  test('a synced passkey signs in with amr swk', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { authenticator } = await addPasskey(app, (await loginTokens(app.app, user)).access_token, new SoftwareAuthenticator(TEST_ORIGIN, true));
    const res = await signInWithPasskey(app, authenticator);
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(claims(res.json().access_token).amr, ['swk', 'user', 'mfa']);
  });

  test('options with a username list its passkeys; unknown names and users without passkeys get the same shape, stable', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const plain = await createUser(app.app);
    const { authenticator } = await addPasskey(app, (await loginTokens(app.app, user)).access_token);
    const known = (await passkeyLoginOptions(app, user.username)).json().options;
    assert.deepEqual(known.allowCredentials.map((c: { id: string }) => c.id), [authenticator.credentials[0]!.id.toString('base64url')]);
    const byEmail = (await passkeyLoginOptions(app, user.email.toUpperCase())).json().options;
    assert.deepEqual(byEmail.allowCredentials, known.allowCredentials);
    // Ids only (no transports), for real passkeys and decoys alike (passkeys.decoys.test.ts compares their shapes).
    assert.deepEqual(Object.keys(known.allowCredentials[0]).sort(), ['id', 'type']);
    for (const name of [plain.username, 'nobody_here']) {
      const a = (await passkeyLoginOptions(app, name)).json().options;
      const b = (await passkeyLoginOptions(app, name)).json().options;
      assert.ok(a.allowCredentials.length >= 1 && a.allowCredentials.length <= 3, name);
      for (const entry of a.allowCredentials) assert.deepEqual(Object.keys(entry).sort(), ['id', 'type']);
      assert.deepEqual(a.allowCredentials, b.allowCredentials, 'the same every time');
    }
    // With a username the login works the same way.
    const res = await signInWithPasskey(app, authenticator, {}, user.username);
    assert.equal(res.statusCode, 200, res.body);
  });

  test('passkey as the second step: mfa_methods lists it, options are limited to the user, /login/mfa gives pwd+hwk+user+mfa', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { authenticator } = await addPasskey(app, (await loginTokens(app.app, user)).access_token);
    const challenge = await mfaChallenge(app, user);
    assert.deepEqual(challenge.mfa_methods, ['passkey', 'backup_code']);
    const opts = await mfaPasskeyOptions(app, challenge.mfa_token);
    assert.equal(opts.statusCode, 200, opts.body);
    assert.deepEqual(opts.json().allowCredentials.map((c: { id: string }) => c.id), [authenticator.credentials[0]!.id.toString('base64url')]);
    const res = await loginMfaPasskey(app, challenge.mfa_token, authenticator.get(opts.json()));
    assert.equal(res.statusCode, 200, res.body);
    const c = claims(res.json().access_token);
    assert.equal(c.aal, 'aal2');
    assert.deepEqual(c.amr, ['pwd', 'hwk', 'user', 'mfa']);
    // The challenge is spent.
    const again = await loginMfaPasskey(app, challenge.mfa_token, authenticator.get(opts.json()));
    assert.equal(again.statusCode, 401);
  });

  test('a user without passkeys: /login/mfa/passkey/options answers 400 method_not_enabled', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    await enableTotp(app, user);
    const challenge = await mfaChallenge(app, user);
    assert.ok(!challenge.mfa_methods.includes('passkey'));
    const res = await mfaPasskeyOptions(app, challenge.mfa_token);
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().code, 'method_not_enabled');
  });

  test('rename: 200 with the new name; another user\'s passkey or a made-up id is 404 passkey_not_found', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const token = (await loginTokens(app.app, user)).access_token;
    const { body } = await addPasskey(app, token);
    const res = await app.app.inject({ method: 'PATCH', url: `/api/v1/passkeys/${body.id}`, headers: bearer(token), payload: { name: '  Work key ' } });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json().name, 'Work key');
    const intruder = await createUser(app.app);
    const intruderToken = (await loginTokens(app.app, intruder)).access_token;
    for (const id of [body.id, 'not-a-uuid', '00000000-0000-4000-8000-000000000000']) {
      const r = await app.app.inject({ method: 'PATCH', url: `/api/v1/passkeys/${id}`, headers: bearer(intruderToken), payload: { name: 'mine' } });
      assert.equal(r.statusCode, 404, id);
      assert.equal(r.json().code, 'passkey_not_found');
    }
    assert.equal((await listPasskeys(app, token))[0]!.name, 'Work key');
    const empty = await app.app.inject({ method: 'PATCH', url: `/api/v1/passkeys/${body.id}`, headers: bearer(token), payload: { name: '   ' } });
    assert.equal(empty.statusCode, 422);
  });

  test('removal (aal2): 204, a mail, and with no factor left the backup codes go; with TOTP left they stay', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { body, authenticator } = await addPasskey(app, (await loginTokens(app.app, user)).access_token, undefined, 'Old key');
    const aal2 = (await signInWithPasskey(app, authenticator)).json().access_token;
    const res = await del(app, `/api/v1/passkeys/${body.id}`, aal2);
    assert.equal(res.statusCode, 204, res.body);
    const mails = await mailsOf(app, 'factor_removed', user.email);
    assert.equal(mails.length, 1);
    assert.match(mails[0]!.text, /Old key/);
    assert.ok((await auditTypesOf(app, user.uuid)).includes('passkey.removed'));
    assert.deepEqual(await listPasskeys(app, aal2), []);
    const info = (await get(app, '/api/v1/auth-jwt/user-info', aal2)).json();
    assert.equal(info.mfa.passkeys, 0);
    assert.equal(info.mfa.backup_codes_remaining, 0);
    // Password alone logs in again: no factor left.
    assert.equal((await login(app.app, { username: user.username, password: user.password })).statusCode, 200);
    assert.equal((await del(app, `/api/v1/passkeys/${body.id}`, aal2)).statusCode, 404);

    const other = await createUser(app.app);
    const { tokens, backupCodes } = await enableTotp(app, other);
    const added = await addPasskey(app, tokens.access_token);
    assert.equal(added.body.backup_codes, undefined, 'TOTP brought the codes already');
    assert.equal((await del(app, `/api/v1/passkeys/${added.body.id}`, tokens.access_token)).statusCode, 204);
    assert.equal((await get(app, '/api/v1/backup-codes', tokens.access_token)).json().remaining, backupCodes.length);
  });

  test('a passkey is a factor: password-only login needs the second step, /qrcode refuses, backup codes can be renewed', async (t) => {
    const app = await suite.build(t);
    const user = await createUser(app.app);
    const { authenticator } = await addPasskey(app, (await loginTokens(app.app, user)).access_token);
    const qr = await app.app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', headers: { accept: 'application/json' }, payload: { username: user.username, password: user.password } });
    assert.equal(qr.statusCode, 409);
    const res = await login(app.app, { username: user.username, password: user.password });
    assert.equal(res.statusCode, 403);
    assert.equal(res.json().code, 'mfa_required');
    assert.equal(res.json().access_token, undefined);
    // The aal2 passkey session may regenerate backup codes (a passkey counts as an active factor).
    const aal2 = (await signInWithPasskey(app, authenticator)).json().access_token;
    assert.equal((await post(app, '/api/v1/backup-codes', aal2)).statusCode, 201);
  });

  test('pages: the browser library is served; the login page offers passkey autofill and names the passkey origin', async (t) => {
    const app = await suite.build(t);
    const lib = await app.app.inject({ method: 'GET', url: '/assets/simplewebauthn-browser.js' });
    assert.equal(lib.statusCode, 200);
    assert.match(String(lib.headers['content-type']), /^text\/javascript/);
    assert.match(lib.body, /SimpleWebAuthnBrowser/);
    assert.match(lib.body, /startAuthentication/);
    const helper = await app.app.inject({ method: 'GET', url: '/assets/passkey.js' });
    assert.equal(helper.statusCode, 200);
    const page = await app.app.inject({ method: 'GET', url: '/login' });
    assert.match(page.body, /autocomplete="username webauthn"/);
    assert.match(page.body, /data-passkey-origin="http:\/\/localhost:8000"/);
    assert.match(page.body, /Sign in with a passkey/);
    const account = await app.app.inject({ method: 'GET', url: '/account' });
    assert.match(account.body, /Add a passkey/);
  });
});
