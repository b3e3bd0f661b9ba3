/** Issue 7: passwords are NFKC-normalised (NIST SP 800-63B-4 §3.1.1.2) everywhere, and older raw hashes still work once. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hash } from '@node-rs/argon2';
import { bearer, createUser, describeWithApp, login, loginTokens } from '../helpers/app.ts';
import { latestToken } from '../helpers/mail-links.ts';

// The same passphrase as typed on two systems: "é" precomposed (U+00E9) and decomposed (e + U+0301),
// and a full-width digit that NFKC folds to "4".
const COMPOSED = 'caf\u00e9 au lait sous la pluie \uff14';
const DECOMPOSED = 'cafe\u0301 au lait sous la pluie 4';

describeWithApp('password normalisation', (suite) => {
  test('sign-up with one form, login with the other; change and reset normalise too', async (t) => {
    const ta = await suite.build(t);
    const { app } = ta;
    assert.notEqual(COMPOSED, DECOMPOSED);
    const user = await createUser(app, { password: COMPOSED });
    assert.equal((await login(app, { username: user.username, password: DECOMPOSED })).statusCode, 200, 'sign-up → login');
    assert.equal((await login(app, { username: user.username, password: 'cafe au lait sous la pluie 4' })).statusCode, 401, 'not a loose match');

    const tokens = await loginTokens(app, { ...user, password: COMPOSED });
    const changed = await app.inject({ method: 'POST', url: '/api/v1/user/password/change', headers: bearer(tokens.access_token), payload: { current_password: DECOMPOSED, password1: 'ﬁne ﬂowers in ｗinter', password2: 'ﬁne ﬂowers in ｗinter' } });
    assert.equal(changed.statusCode, 204, `change with the current password in the other form: ${changed.body}`);
    assert.equal((await login(app, { username: user.username, password: 'fine flowers in winter' })).statusCode, 200, 'ligatures and full-width letters were folded at change');

    assert.equal((await app.inject({ method: 'POST', url: '/api/v1/user/password/forgot', payload: { email: user.email } })).statusCode, 202);
    const token = await latestToken(ta, user.email, 'password_reset');
    const reset = await app.inject({ method: 'POST', url: '/api/v1/user/password/reset', payload: { token, password1: DECOMPOSED, password2: DECOMPOSED } });
    assert.equal(reset.statusCode, 204, reset.body);
    assert.equal((await login(app, { username: user.username, password: COMPOSED })).statusCode, 200, 'reset → login in the other form');
  });

  test('a hash made from the raw (unnormalised) password before the change still logs in, and is rehashed to the NFKC form', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const params = ta.deps.config.passwordHash;
    // What the first release stored for a user who typed DECOMPOSED: argon2id of the raw string.
    const legacy = await hash(DECOMPOSED, { algorithm: 2, memoryCost: params.memoryKib, timeCost: params.iterations, parallelism: params.parallelism });
    await ta.deps.db.query('UPDATE users SET password_hash = $2 WHERE id = $1', [user.uuid, legacy]);

    const res = await login(ta.app, { username: user.username, password: DECOMPOSED });
    assert.equal(res.statusCode, 200, res.body);
    const after = await ta.deps.db.query<{ password_hash: string }>('SELECT password_hash FROM users WHERE id = $1', [user.uuid]);
    const stored = after.rows[0]!.password_hash;
    assert.notEqual(stored, legacy, 'rehashed on success');
    assert.equal(await ta.deps.passwords.check(stored, DECOMPOSED.normalize('NFKC')), 'current');
    assert.equal((await login(ta.app, { username: user.username, password: COMPOSED })).statusCode, 200, 'now the other form works too');
  });
});
