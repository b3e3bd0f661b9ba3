/**
 * Passkey sign-ins naming a decoy: the options for a name without passkeys (unknown, or a user who has
 * none) list decoy credential ids, so the lists themselves (how many entries, how long, which fields),
 * refusals and locks must not tell a decoy from a real id, one request at a time or in a burst (PGlite,
 * and PostgreSQL with DATABASE_URL set).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { createUser, describeWithApp, login, loginTokens, type TestApp } from '../helpers/app.ts';
import { post } from '../helpers/factors.ts';
import { addPasskey, passkeyLoginOptions, registerPasskey, registrationOptions, signInWithPasskey, TEST_ORIGIN } from '../helpers/passkeys.ts';
import { SoftwareAuthenticator, type SoftCredential } from '../helpers/webauthn.ts';

describeWithApp('Passkey decoys: refused sign-ins look alike', (suite) => {
  test('a decoy credential id and a real one, signed with a key of the attacker\'s own, get the same 401', async (t) => {
    const app = await suite.build(t);
    const owner = await createUser(app.app);
    const plain = await createUser(app.app);
    await addPasskey(app, (await loginTokens(app.app, owner)).access_token);
    // The attacker's own key pair, made by registering nowhere (the options are only the shape create() reads).
    const attacker = new SoftwareAuthenticator(TEST_ORIGIN);
    attacker.create({ challenge: randomBytes(32).toString('base64url'), rp: { id: new URL(TEST_ORIGIN).hostname }, user: { id: randomBytes(16).toString('base64url') } });
    const own: SoftCredential = attacker.credentials[0]!;
    const answers: Array<{ status: number; code: string; detail: string }> = [];
    for (const username of [owner.username, plain.username, 'nobody_at_all']) {
      const started = (await passkeyLoginOptions(app, username)).json() as { challenge_token: string; options: { challenge: string; rpId?: string; allowCredentials: Array<{ id: string }> } };
      const listed = started.options.allowCredentials[0]!.id;
      // The listed id (real for the owner, a decoy for the others), signed with the attacker's key; once with its own user handle.
      for (const userHandle of [own.userHandle, undefined]) {
        const credential: SoftCredential = { ...own, id: Buffer.from(listed, 'base64url'), userHandle: userHandle ?? own.userHandle };
        const response = attacker.get(started.options, { credential });
        if (!userHandle) delete (response.response as { userHandle?: string }).userHandle;
        const res = await post(app, '/api/v1/auth-jwt/login/passkey', undefined, { challenge_token: started.challenge_token, credential: response });
        answers.push({ status: res.statusCode, code: res.json().code, detail: res.json().detail });
        // Each answer used up the challenge: a fresh one for the second try.
        Object.assign(started, (await passkeyLoginOptions(app, username)).json());
      }
    }
    assert.equal(answers.length, 6);
    for (const a of answers) assert.deepEqual(a, answers[0], JSON.stringify(answers));
    assert.deepEqual([answers[0]!.status, answers[0]!.code], [401, 'invalid_passkey']);
  });
});

describeWithApp('Passkey decoys: refused sign-ins lock alike', (suite) => {
  /** Options for `username`, answered with the listed id signed by `attacker`'s key. */
  async function forgedSignIn(app: TestApp, username: string, attacker: SoftwareAuthenticator): Promise<LightMyRequestResponse> {
    const started = (await passkeyLoginOptions(app, username)).json() as { challenge_token: string; options: { challenge: string; rpId?: string; allowCredentials: Array<{ id: string }> } };
    const own: SoftCredential = attacker.credentials[0]!;
    const credential: SoftCredential = { ...own, id: Buffer.from(started.options.allowCredentials[0]!.id, 'base64url') };
    return post(app, '/api/v1/auth-jwt/login/passkey', undefined, { challenge_token: started.challenge_token, credential: attacker.get(started.options, { credential }) });
  }

  function attackerKey(): SoftwareAuthenticator {
    const attacker = new SoftwareAuthenticator(TEST_ORIGIN);
    attacker.create({ challenge: randomBytes(32).toString('base64url'), rp: { id: new URL(TEST_ORIGIN).hostname }, user: { id: randomBytes(16).toString('base64url') } });
    return attacker;
  }

  test('failures with a decoy lock the name as failures with a real credential lock the account: same answers, and the same at the password login', async (t) => {
    // The IP limit well above what the test sends: only the account's count decides.
    const app = await suite.build(t, { env: { LOCKOUT_MAX_FAILURES: '3', RATE_LIMIT_IP_MAX_FAILURES: '100' } });
    const owner = await createUser(app.app);
    const plain = await createUser(app.app);
    await addPasskey(app, (await loginTokens(app.app, owner)).access_token);
    const attacker = attackerKey();
    const seen: Record<string, number[]> = {};
    for (const username of [owner.username, plain.username, 'nobody_at_all']) {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) statuses.push((await forgedSignIn(app, username, attacker)).statusCode);
      // Then the password login of the same name, with a wrong password: locked or not?
      statuses.push((await login(app.app, { username, password: 'not the password at all' })).statusCode);
      seen[username] = statuses;
    }
    // Before the fix, the decoys' failures counted only against the IP: [401, 401, 401, 401, 401] for
    // the user without passkeys and the unknown name, while the owner's account was locked.
    for (const statuses of Object.values(seen)) assert.deepEqual(statuses, [401, 401, 401, 429, 429], JSON.stringify(seen));
  });

  test('a burst of forged sign-ins at once gets no more failures checked for a decoy than for a real credential', async (t) => {
    const app = await suite.build(t, { env: { LOCKOUT_MAX_FAILURES: '3', RATE_LIMIT_IP_MAX_FAILURES: '200' } });
    const owner = await createUser(app.app);
    await addPasskey(app, (await loginTokens(app.app, owner)).access_token);
    const attacker = attackerKey();
    const counts: Record<string, Record<number, number>> = {};
    for (const username of [owner.username, 'nobody_in_a_burst']) {
      // 24 sign-ins in flight together, each with its own options (a challenge is single-use).
      const prepared = await Promise.all(Array.from({ length: 24 }, async () => {
        const started = (await passkeyLoginOptions(app, username)).json() as { challenge_token: string; options: { challenge: string; rpId?: string; allowCredentials: Array<{ id: string }> } };
        const credential: SoftCredential = { ...attacker.credentials[0]!, id: Buffer.from(started.options.allowCredentials[0]!.id, 'base64url') };
        return { challenge_token: started.challenge_token, credential: attacker.get(started.options, { credential }) };
      }));
      const answers = await Promise.all(prepared.map((body) => post(app, '/api/v1/auth-jwt/login/passkey', undefined, body)));
      const tally: Record<number, number> = {};
      for (const a of answers) tally[a.statusCode] = (tally[a.statusCode] ?? 0) + 1;
      counts[username] = tally;
    }
    // Counted before the check: three failures reach the limit, every other attempt is refused unchecked.
    for (const tally of Object.values(counts)) assert.deepEqual(tally, { 401: 3, 429: 21 }, JSON.stringify(counts));
  });
});

describeWithApp('Passkey decoys: registration does not tell them apart either', (suite) => {
  test("registering a listed credential id (with a key of one's own): the same 409 for a real passkey's id and a decoy's", async (t) => {
    const ta = await suite.build(t);
    const withPasskey = await createUser(ta.app);
    await addPasskey(ta, (await loginTokens(ta.app, withPasskey)).access_token);
    const without = await createUser(ta.app);
    const answers: string[] = [];
    for (const target of [withPasskey.username, without.username, 'nobody_here']) {
      const listed = (await passkeyLoginOptions(ta, target)).json().options.allowCredentials[0].id as string;
      // A fresh account of the attacker's own each time (no factor, so aal1 may register).
      const token = (await loginTokens(ta.app, await createUser(ta.app))).access_token;
      const authenticator = new SoftwareAuthenticator(TEST_ORIGIN);
      authenticator.create(await registrationOptions(ta, token)); // makes a key
      const credential = { ...authenticator.credentials[0]!, id: Buffer.from(listed, 'base64url') };
      const { response } = authenticator.create(await registrationOptions(ta, token), { credential });
      const res = await post(ta, '/api/v1/passkeys/registration/verify', token, { credential: response });
      answers.push(`${res.statusCode} ${res.json().code}`);
    }
    assert.deepEqual(answers, Array(3).fill('409 passkey_already_registered'));
    // The shape is the server's own: an ordinary 16-byte id registers.
    const token = (await loginTokens(ta.app, await createUser(ta.app))).access_token;
    const own = new SoftwareAuthenticator(TEST_ORIGIN);
    own.create(await registrationOptions(ta, token));
    const { response } = own.create(await registrationOptions(ta, token), { credential: { ...own.credentials[0]!, id: randomBytes(16) } });
    const res = await post(ta, '/api/v1/passkeys/registration/verify', token, { credential: response });
    assert.equal(res.statusCode, 201, res.body);
  });
});

describeWithApp('Passkey decoys: sign-in options by name look alike', (suite) => {
  type Entry = { id: string; type: string; transports?: string[] };
  async function allowed(app: TestApp, username: string, remoteAddress = '203.0.113.7'): Promise<Entry[]> {
    const res = await app.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/passkey/options', payload: { username }, remoteAddress });
    assert.equal(res.statusCode, 200, res.body);
    return res.json().options.allowCredentials as Entry[];
  }
  /** What a list shows besides its random bytes: each entry's fields and transports, and its ids' byte lengths (sorted). */
  const formOf = (list: Entry[]) => [...new Set(list.map((e) => JSON.stringify([Object.keys(e).sort(), e.transports ?? null])))];
  const shapeOf = (list: Entry[]) => JSON.stringify(list.map((e) => Buffer.byteLength(e.id, 'base64url')).sort((a, b) => a - b));

  /** Registers a passkey whose credential id is `bytes` long (as an iPhone, 20, or Windows Hello, 32, makes them). */
  async function addPasskeyWithIdLength(app: TestApp, token: string, bytes: number): Promise<SoftwareAuthenticator> {
    const authenticator = new SoftwareAuthenticator(TEST_ORIGIN);
    authenticator.create(await registrationOptions(app, token)); // makes the key; its id is replaced below
    const credential = authenticator.credentials[0]!;
    credential.id = randomBytes(bytes);
    const res = await registerPasskey(app, token, authenticator, { credential });
    assert.equal(res.statusCode, 201, res.body);
    return authenticator;
  }

  test('a user with passkeys, a user without and unknown names: the same entries, decoy shapes that include the real ones, stable per name', async (t) => {
    const app = await suite.build(t, { env: { RATE_LIMIT_IP_MAX_REQUESTS_PER_MINUTE: '1000' } });
    const iphone = await createUser(app.app);
    const twoDevices = await createUser(app.app);
    const plain = await createUser(app.app);
    await addPasskeyWithIdLength(app, (await loginTokens(app.app, iphone)).access_token, 20);
    const first = await addPasskeyWithIdLength(app, (await loginTokens(app.app, twoDevices)).access_token, 20);
    await addPasskeyWithIdLength(app, (await signInWithPasskey(app, first)).json().access_token, 32);
    const real = { iphone: await allowed(app, iphone.username), twoDevices: await allowed(app, twoDevices.username) };
    assert.deepEqual([shapeOf(real.iphone), shapeOf(real.twoDevices)], ['[20]', '[20,32]']);
    const form = formOf(real.iphone);
    assert.deepEqual(formOf(real.twoDevices), form);

    // A user without passkeys answers as unknown names do: one decoy per name typed, so its username and
    // its e-mail differ, as two unknown names do. Drawn from the account, they matched, and anyone could
    // test which address belongs to a (public) username.
    assert.deepEqual(await allowed(app, twoDevices.email.toUpperCase()), real.twoDevices);
    const plainList = await allowed(app, plain.username);
    assert.notDeepEqual(await allowed(app, plain.email), plainList, 'the username and the e-mail of a user without passkeys are not linked');

    const shapes = new Set<string>();
    for (let i = 0; i < 80; i++) {
      const name = i % 2 ? `nobody_${i}_${randomBytes(3).toString('hex')}` : `nobody_${i}@example.com`;
      const list = await allowed(app, name);
      assert.deepEqual(await allowed(app, name.toUpperCase(), '198.51.100.9'), list, 'the same decoy every time, from any address');
      assert.deepEqual(formOf(list), form, `${name}: entries as a real user's look: ${JSON.stringify([list, real.iphone])}`);
      shapes.add(shapeOf(list));
    }
    assert.deepEqual(formOf(plainList), form);
    // Before the fix every name got one 16-byte id with ["internal","hybrid"]: one request told it apart.
    // Now a real one-passkey shape is among the decoys' (P([20]) = 3/16 a name: 80 names miss it once in 10^7),
    // and so are longer lists (1 name in 4).
    assert.ok(shapes.has(shapeOf(real.iphone)), [...shapes].join(' '));
    assert.ok([...shapes].some((s) => JSON.parse(s).length > 1), [...shapes].join(' '));
  });
});
