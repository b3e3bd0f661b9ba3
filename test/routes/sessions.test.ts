import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { decodeJwt } from 'jose';
import { bearer, createUser, describeWithApp, enableTotp, login, loginTokens, nextTotpStep } from '../helpers/app.ts';

const SESSIONS = '/api/v1/auth-jwt/sessions';
const INTROSPECT = '/api/v1/auth-jwt/introspect';
const SECRET = 'introspection-secret-for-tests-0123456789';

function sessions(app: FastifyInstance, accessToken: string) {
  return app.inject({ method: 'GET', url: SESSIONS, headers: bearer(accessToken) });
}

function revoke(app: FastifyInstance, accessToken: string, id: string) {
  return app.inject({ method: 'DELETE', url: `${SESSIONS}/${id}`, headers: bearer(accessToken) });
}

function userInfo(app: FastifyInstance, accessToken: string) {
  return app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(accessToken) });
}

/** POST /introspect with `secret` as Bearer (null: no Authorization header). */
function introspect(app: FastifyInstance, token: string, secret: string | null = SECRET, extra: Record<string, string> = {}) {
  return app.inject({ method: 'POST', url: INTROSPECT, headers: secret === null ? {} : bearer(secret), payload: { token, ...extra } });
}

/** The session id (`sid`) inside an access token. */
function sidOf(accessToken: string): string {
  return JSON.parse(Buffer.from(accessToken.split('.')[1]!, 'base64url').toString()).sid;
}

describeWithApp('sessions', (suite) => {
  test('lists live sessions with created, last used, user agent, IP, and which is current', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const phone = await login(ta.app, { username: user.username, password: user.password }, { 'user-agent': 'PhoneBrowser/1.0' });
    ta.clock.advance(60);
    const laptop = (await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: { username: user.username, password: user.password }, headers: { 'user-agent': 'LaptopBrowser/2.0' }, remoteAddress: '203.0.113.7' })).json();
    const res = await sessions(ta.app, laptop.access_token);
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['cache-control'], 'no-store');
    const list = res.json();
    assert.equal(list.length, 2);
    assert.deepEqual(Object.keys(list[0]).sort(), ['created_at', 'current', 'id', 'ip', 'last_used_at', 'user_agent']);
    assert.equal(list[0].id, sidOf(laptop.access_token), 'newest first');
    assert.equal(list[0].current, true);
    assert.equal(list[0].user_agent, 'LaptopBrowser/2.0');
    assert.equal(list[0].ip, '203.0.113.7');
    assert.equal(list[0].created_at, ta.clock().toISOString());
    assert.match(list[0].last_used_at, /Z$/);
    assert.equal(list[1].id, sidOf(phone.json().access_token));
    assert.equal(list[1].current, false);
    assert.equal(list[1].user_agent, 'PhoneBrowser/1.0');

    const fromPhone = (await sessions(ta.app, phone.json().access_token)).json();
    assert.deepEqual(fromPhone.map((s: { current: boolean }) => s.current), [false, true]);
  });

  test('logged-out and revoked sessions are not listed; another user sees only their own', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const other = await createUser(ta.app);
    const a = await loginTokens(ta.app, user);
    const b = await loginTokens(ta.app, user);
    const o = await loginTokens(ta.app, other);
    await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: bearer(b.access_token) });
    const list = (await sessions(ta.app, a.access_token)).json();
    assert.deepEqual(list.map((s: { id: string }) => s.id), [sidOf(a.access_token)]);
    const theirs = (await sessions(ta.app, o.access_token)).json();
    assert.deepEqual(theirs.map((s: { id: string }) => s.id), [sidOf(o.access_token)]);
  });

  test('revoking another session: 204, its tokens are refused at once', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const mine = await loginTokens(ta.app, user);
    const stolen = await loginTokens(ta.app, user);
    assert.equal((await userInfo(ta.app, stolen.access_token)).statusCode, 200);
    const res = await revoke(ta.app, mine.access_token, sidOf(stolen.access_token));
    assert.equal(res.statusCode, 204);
    assert.ok(!('set-cookie' in res.headers), 'the caller keeps its own cookies');
    const info = await userInfo(ta.app, stolen.access_token);
    assert.equal(info.statusCode, 401);
    assert.equal(info.json().code, 'invalid_token');
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: stolen.refresh_token } })).statusCode, 401);
    assert.equal((await userInfo(ta.app, mine.access_token)).statusCode, 200);
    assert.equal((await sessions(ta.app, mine.access_token)).json().length, 1);
    const again = await revoke(ta.app, mine.access_token, sidOf(stolen.access_token));
    assert.equal(again.statusCode, 404);
    assert.equal(again.json().code, 'session_not_found');
  });

  test('revoking the current session ends it and clears the cookies', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const mine = await loginTokens(ta.app, user);
    const res = await revoke(ta.app, mine.access_token, sidOf(mine.access_token).toUpperCase());
    assert.equal(res.statusCode, 204);
    const cookies = ([] as string[]).concat(res.headers['set-cookie'] ?? []);
    assert.ok(cookies.some((c) => c.startsWith('access_token=;')));
    assert.ok(cookies.some((c) => c.startsWith('refresh_token=;')));
    assert.equal((await userInfo(ta.app, mine.access_token)).statusCode, 401);
  });

  test("another user's session, an unknown id or garbage: 404 session_not_found, and nothing is revoked", async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const victim = await createUser(ta.app);
    const mine = await loginTokens(ta.app, user);
    const theirs = await loginTokens(ta.app, victim);
    for (const id of [sidOf(theirs.access_token), '01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e11', 'not-a-uuid', "1' OR '1'='1", 'x'.repeat(150)]) {
      const res = await revoke(ta.app, mine.access_token, encodeURIComponent(id));
      assert.equal(res.statusCode, 404, id);
      assert.equal(res.json().code, 'session_not_found');
    }
    assert.equal((await userInfo(ta.app, theirs.access_token)).statusCode, 200);
  });

  test('401 without authentication', async (t) => {
    const ta = await suite.build(t);
    assert.equal((await ta.app.inject({ method: 'GET', url: SESSIONS })).statusCode, 401);
    const del = await ta.app.inject({ method: 'DELETE', url: `${SESSIONS}/01937a5e-3f1c-7cc0-9a41-0c5a1d2f7e11` });
    assert.equal(del.statusCode, 401);
    assert.equal(del.json().code, 'authentication_required');
  });

  test('logout-all ends every session', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const a = await loginTokens(ta.app, user);
    const b = await loginTokens(ta.app, user);
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout-all', headers: bearer(a.access_token) })).statusCode, 204);
    assert.equal((await userInfo(ta.app, a.access_token)).statusCode, 401);
    assert.equal((await userInfo(ta.app, b.access_token)).statusCode, 401);
    const fresh = await loginTokens(ta.app, user);
    assert.equal((await sessions(ta.app, fresh.access_token)).json().length, 1);
  });

  test('a refresh rotates nothing while the user is inactive, even with the session still live', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const tokens = await loginTokens(ta.app, user);
    const refresh = () => ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: tokens.refresh_token } });
    // Deactivation revokes sessions; here only the flag is off (as between the two), so the session stays live.
    await ta.deps.db.query('UPDATE users SET is_active = false WHERE id = $1', [user.uuid]);
    const currentJti = async () => (await ta.deps.db.query<{ current_jti: string }>('SELECT current_jti FROM sessions WHERE user_id = $1', [user.uuid])).rows[0]!.current_jti;
    const refused = await refresh();
    assert.equal(refused.statusCode, 401);
    assert.equal(refused.json().code, 'invalid_token', 'the contract lists only 401s for a refresh');
    assert.equal(refused.json().access_token, undefined);
    assert.equal(await currentJti(), decodeJwt(tokens.refresh_token).jti, 'the refused refresh rotated nothing');
    await ta.deps.db.query('UPDATE users SET is_active = true WHERE id = $1', [user.uuid]);
    const again = await refresh();
    assert.equal(again.statusCode, 200, 'the refused refresh did not spend the token');
    assert.equal(await currentJti(), decodeJwt(again.json().refresh_token).jti);
  });

  test('an inactive user replaying a rotated refresh token gets 401 invalid_token and rotates nothing', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const first = await loginTokens(ta.app, user);
    const rotated = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: first.refresh_token } });
    assert.equal(rotated.statusCode, 200);
    ta.clock.advance(ta.deps.config.refreshReuseGraceSeconds + 1);
    await ta.deps.db.query('UPDATE users SET is_active = false WHERE id = $1', [user.uuid]);
    const replay = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: first.refresh_token } });
    assert.equal(replay.statusCode, 401);
    assert.equal(replay.json().code, 'invalid_token');
    const row = (await ta.deps.db.query<{ current_jti: string }>('SELECT current_jti FROM sessions WHERE id = $1', [decodeJwt(first.refresh_token).sid])).rows[0]!;
    assert.equal(row.current_jti, decodeJwt(rotated.json().refresh_token).jti, 'nothing rotated');
  });

  test('a refresh token naming another user\'s session rotates nothing of it', async (t) => {
    const ta = await suite.build(t);
    const [victim, other] = [await createUser(ta.app), await createUser(ta.app)];
    const tokens = await loginTokens(ta.app, victim);
    const claims = decodeJwt(tokens.refresh_token);
    // Signed with the service's own key (as only a key holder could): the victim's sid and current
    // jti under another subject.
    const iat = Math.floor(ta.clock().getTime() / 1000);
    const forged = await ta.deps.keys.sign('refresh', { sub: other.uuid, iat, exp: iat + 600, jti: claims.jti, sid: claims.sid });
    const refused = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: forged } });
    assert.equal(refused.statusCode, 401);
    assert.equal(refused.json().access_token, undefined);
    const row = (await ta.deps.db.query<{ current_jti: string; revoked_at: Date | null }>('SELECT current_jti, revoked_at FROM sessions WHERE id = $1', [claims.sid])).rows[0]!;
    assert.equal(row.current_jti, claims.jti, 'the victim\'s refresh token was not spent');
    assert.equal(row.revoked_at, null);
    assert.equal((await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: tokens.refresh_token } })).statusCode, 200);
  });
});

describeWithApp('token introspection (RFC 7662)', (suite) => {
  const env = { INTROSPECTION_SECRET: SECRET };

  test('no INTROSPECTION_SECRET configured: always 401 invalid_client', async (t) => {
    const ta = await suite.build(t);
    const user = await createUser(ta.app);
    const { access_token } = await loginTokens(ta.app, user);
    for (const secret of [null, SECRET, '']) {
      const res = await introspect(ta.app, access_token, secret);
      assert.equal(res.statusCode, 401);
      assert.equal(res.json().code, 'invalid_client');
    }
  });

  test('missing or wrong secret: 401 invalid_client with WWW-Authenticate, before the body is even looked at', async (t) => {
    const ta = await suite.build(t, { env });
    const user = await createUser(ta.app);
    const { access_token } = await loginTokens(ta.app, user);
    for (const secret of [null, 'wrong', SECRET.slice(0, -1), `${SECRET}x`, SECRET.toUpperCase()]) {
      const res = await introspect(ta.app, access_token, secret);
      assert.equal(res.statusCode, 401, String(secret));
      assert.equal(res.json().code, 'invalid_client');
      assert.match(String(res.headers['www-authenticate']), /^Bearer/);
    }
    const badBody = await ta.app.inject({ method: 'POST', url: INTROSPECT, headers: bearer('wrong'), payload: { nothing: true } });
    assert.equal(badBody.statusCode, 401);
    const basic = await ta.app.inject({ method: 'POST', url: INTROSPECT, headers: { authorization: `Basic ${Buffer.from(`x:${SECRET}`).toString('base64')}` }, payload: { token: access_token } });
    assert.equal(basic.statusCode, 401);
  });

  test('a live access token is active, with its claims', async (t) => {
    const ta = await suite.build(t, { env });
    const user = await createUser(ta.app);
    const { access_token } = await loginTokens(ta.app, user);
    const res = await introspect(ta.app, access_token);
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['cache-control'], 'no-store');
    const body = res.json();
    assert.equal(body.active, true);
    assert.equal(body.token_type, 'access_token');
    assert.equal(body.sub, user.uuid);
    assert.equal(body.sid, sidOf(access_token));
    assert.equal(body.username, user.username);
    assert.equal(body.iss, 'http://127.0.0.1:8000');
    assert.equal(body.aud, 'twofold');
    assert.deepEqual(body.amr, ['pwd']);
    assert.equal(body.aal, 'aal1');
    assert.equal(body.iat, Math.floor(ta.clock().getTime() / 1000));
    assert.equal(body.exp, body.iat + 3600);
  });

  test('an aal2 token reports its second factor', async (t) => {
    const ta = await suite.build(t, { env });
    const user = await createUser(ta.app);
    const { tokens } = await enableTotp(ta, user);
    const body = (await introspect(ta.app, tokens.access_token)).json();
    assert.equal(body.active, true);
    assert.equal(body.aal, 'aal2');
    assert.ok(body.amr.includes('mfa'));
  });

  test('form-encoded requests (as RFC 7662 clients send them) work too', async (t) => {
    const ta = await suite.build(t, { env });
    const user = await createUser(ta.app);
    const { access_token } = await loginTokens(ta.app, user);
    const res = await ta.app.inject({
      method: 'POST',
      url: INTROSPECT,
      headers: { ...bearer(SECRET), 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ token: access_token, token_type_hint: 'access_token' }).toString(),
    });
    assert.equal(res.statusCode, 200);
    assert.equal(res.json().active, true);
  });

  test('inactive after logout, after the session is revoked, after logout-all and after a password change', async (t) => {
    const ta = await suite.build(t, { env });
    const user = await createUser(ta.app);
    const loggedOut = await loginTokens(ta.app, user);
    const revoked = await loginTokens(ta.app, user);
    const keeper = await loginTokens(ta.app, user);
    const changedAway = await loginTokens(ta.app, user);

    await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: bearer(loggedOut.access_token) });
    assert.deepEqual((await introspect(ta.app, loggedOut.access_token)).json(), { active: false });

    await revoke(ta.app, keeper.access_token, sidOf(revoked.access_token));
    assert.deepEqual((await introspect(ta.app, revoked.access_token)).json(), { active: false });
    assert.deepEqual((await introspect(ta.app, revoked.refresh_token)).json(), { active: false });

    const changed = await ta.app.inject({ method: 'POST', url: '/api/v1/user/password/change', headers: bearer(keeper.access_token), payload: { current_password: user.password, password1: 'plum orchard under winter rain', password2: 'plum orchard under winter rain' } });
    assert.equal(changed.statusCode, 204);
    assert.deepEqual((await introspect(ta.app, changedAway.access_token)).json(), { active: false });
    assert.equal((await introspect(ta.app, keeper.access_token)).json().active, true);

    await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout-all', headers: bearer(keeper.access_token) });
    assert.deepEqual((await introspect(ta.app, keeper.access_token)).json(), { active: false });
  });

  test('refresh tokens: the current one is active as refresh_token; a rotated one is not', async (t) => {
    const ta = await suite.build(t, { env });
    const user = await createUser(ta.app);
    const pair = await loginTokens(ta.app, user);
    const body = (await introspect(ta.app, pair.refresh_token, SECRET, { token_type_hint: 'refresh_token' })).json();
    assert.equal(body.active, true);
    assert.equal(body.token_type, 'refresh_token');
    assert.equal(body.sub, user.uuid);
    assert.equal(body.sid, sidOf(pair.access_token));
    assert.equal(body.username, undefined);
    ta.clock.advance(30);
    const rotated = await ta.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: pair.refresh_token } });
    assert.equal(rotated.statusCode, 200);
    assert.deepEqual((await introspect(ta.app, pair.refresh_token)).json(), { active: false });
    assert.equal((await introspect(ta.app, rotated.json().refresh_token)).json().token_type, 'refresh_token');
    // The user switched off behind the service's back (no session revoked): the current token is dead too.
    await ta.deps.db.query('UPDATE users SET is_active = false WHERE id = $1', [user.uuid]);
    assert.deepEqual((await introspect(ta.app, rotated.json().refresh_token)).json(), { active: false });
  });

  test('an MFA challenge token, a tampered, an expired or a garbage token: {active: false}', async (t) => {
    const ta = await suite.build(t, { env });
    const user = await createUser(ta.app);
    await enableTotp(ta, user);
    nextTotpStep(ta.clock);
    const challenge = await login(ta.app, { username: user.username, password: user.password });
    assert.equal(challenge.statusCode, 403);
    assert.deepEqual((await introspect(ta.app, challenge.json().mfa_token)).json(), { active: false });

    const plain = await createUser(ta.app);
    const { access_token } = await loginTokens(ta.app, plain);
    const [h, p, s] = access_token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, sub: user.uuid })).toString('base64url')}.${s}`;
    assert.deepEqual((await introspect(ta.app, forged)).json(), { active: false });
    const flipped = `${h}.${p}.${s.slice(0, -2)}${s.endsWith('AA') ? 'BB' : 'AA'}`;
    assert.deepEqual((await introspect(ta.app, flipped)).json(), { active: false });
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url')}.${p}.`;
    assert.deepEqual((await introspect(ta.app, none)).json(), { active: false });
    for (const junk of ['', 'garbage', 'a.b.c']) assert.deepEqual((await introspect(ta.app, junk)).json(), { active: false }, junk);

    assert.equal((await introspect(ta.app, access_token)).json().active, true);
    ta.clock.advance(3601);
    assert.deepEqual((await introspect(ta.app, access_token)).json(), { active: false });
  });
});
