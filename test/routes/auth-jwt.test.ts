import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { PasswordHasher } from '../../src/crypto/password.ts';
import { decodeQrPng } from '../helpers/qr.ts';
import {
  PASSWORD, bearer, createUser, describeWithApp, enableTotp, login, loginTokens, nextTotpStep,
} from '../helpers/app.ts';

/** Parses Set-Cookie headers into name → attribute map. */
function cookies(res: { headers: Record<string, unknown> }): Map<string, { value: string; attrs: Map<string, string> }> {
  const raw = res.headers['set-cookie'];
  const list = Array.isArray(raw) ? raw : raw ? [raw as string] : [];
  const out = new Map<string, { value: string; attrs: Map<string, string> }>();
  for (const line of list as string[]) {
    const [pair, ...rest] = line.split(';').map((s) => s.trim());
    const [name, value] = pair!.split('=');
    out.set(name!, { value: value ?? '', attrs: new Map(rest.map((a) => { const [k, v] = a.split('='); return [k!.toLowerCase(), v ?? '']; })) });
  }
  return out;
}

describeWithApp('login, tokens and cookies', (suite) => {
  test('password-only login: 200, aal1 tokens with the contract claims and cookies', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const res = await login(app, { username: user.username, password: user.password });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['cache-control'], 'no-store');
    const body = res.json();
    assert.equal(body.token_type, 'Bearer');
    assert.equal(body.expires_in, 3600);

    const jwks = (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json();
    const ah = decodeProtectedHeader(body.access_token);
    assert.deepEqual([ah.alg, ah.typ, ah.kid], ['RS256', 'at+jwt', jwks.keys[0].kid]);
    const a = decodeJwt(body.access_token);
    assert.equal(a.iss, 'http://127.0.0.1:8000');
    assert.equal(a.sub, user.uuid);
    assert.equal(a.aud, 'twofold');
    assert.equal(a.username, user.username);
    assert.deepEqual(a.amr, ['pwd']);
    assert.equal(a.aal, 'aal1');
    assert.deepEqual(a.roles, []);
    assert.equal(a.exp! - a.iat!, 3600);
    assert.equal(typeof a.jti, 'string');
    assert.equal(typeof a.sid, 'string');

    const rh = decodeProtectedHeader(body.refresh_token);
    assert.deepEqual([rh.alg, rh.typ, rh.kid], ['RS256', 'refresh+jwt', jwks.keys[0].kid]);
    const r = decodeJwt(body.refresh_token);
    assert.equal(r.sid, a.sid);
    assert.equal(r.exp! - r.iat!, 60 * 86400);
    assert.equal(r.aal, undefined, 'refresh tokens carry no authorisation claims');

    const c = cookies(res);
    const access = c.get('access_token')!;
    assert.equal(access.value, body.access_token);
    assert.equal(access.attrs.get('path'), '/');
    assert.equal(access.attrs.get('max-age'), '3600');
    assert.ok(access.attrs.has('httponly'));
    assert.equal(access.attrs.get('samesite'), 'Lax');
    assert.ok(!access.attrs.has('secure'), 'PUBLIC_URL is http here');
    const refresh = c.get('refresh_token')!;
    assert.equal(refresh.value, body.refresh_token);
    assert.equal(refresh.attrs.get('path'), '/api/v1/auth-jwt');
    assert.equal(refresh.attrs.get('max-age'), String(60 * 86400));
    assert.ok(refresh.attrs.has('httponly'));
    assert.equal(refresh.attrs.get('samesite'), 'Strict');
    // Which session the browser holds, for the OpenID provider's single sign-on: no token, the session id and a MAC.
    const marker = c.get('twofold_browser_session')!;
    assert.match(marker.value, new RegExp(`^${decodeJwt(body.access_token).sid as string}\\.[0-9a-f]{32}$`));
    assert.equal(marker.attrs.get('path'), '/');
    assert.equal(marker.attrs.get('max-age'), String(60 * 86400), 'as long as the refresh cookie');
    assert.ok(marker.attrs.has('httponly'));
    assert.equal(marker.attrs.get('samesite'), 'Lax');
  });

  test('cookies are Secure when PUBLIC_URL is https', async (t) => {
    const { app } = await suite.build(t, { env: { PUBLIC_URL: 'https://auth.example.com' } });
    const user = await createUser(app);
    const res = await login(app, { username: user.username, password: user.password });
    const c = cookies(res);
    assert.ok(c.get('access_token')!.attrs.has('secure'));
    assert.ok(c.get('refresh_token')!.attrs.has('secure'));
    assert.ok(c.get('twofold_browser_session')!.attrs.has('secure'));
    assert.equal(decodeJwt(res.json().access_token).iss, 'https://auth.example.com');
  });

  test('login by e-mail address (any case) and by form-encoded body', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    assert.equal((await login(app, { username: user.email.toUpperCase(), password: user.password })).statusCode, 200);
    const form = await app.inject({
      method: 'POST',
      url: '/api/v1/auth-jwt/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ username: user.username, password: user.password }).toString(),
    });
    assert.equal(form.statusCode, 200, form.body);
    assert.ok(form.json().access_token);
  });

  test('unknown user and wrong password give the same 401 invalid_credentials, and no cookies', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const wrong = await login(app, { username: user.username, password: 'not the password at all' });
    const unknown = await login(app, { username: 'nobody_at_all', password: 'not the password at all' });
    assert.equal(wrong.statusCode, 401);
    assert.equal(unknown.statusCode, 401);
    assert.deepEqual(wrong.json(), unknown.json());
    assert.equal(wrong.json().code, 'invalid_credentials');
    assert.equal(wrong.headers['set-cookie'], undefined);
  });

  test('inactive account: 403 account_inactive only with the right password', async (t) => {
    const { app, deps } = await suite.build(t);
    const user = await createUser(app);
    await deps.db.query('UPDATE users SET is_active = false WHERE id = $1', [user.uuid]);
    assert.equal((await login(app, { username: user.username, password: 'wrong password here' })).json().code, 'invalid_credentials');
    const res = await login(app, { username: user.username, password: user.password });
    assert.equal(res.statusCode, 403);
    assert.equal(res.json().code, 'account_inactive');
  });

  test('a live session of a deactivated account gets 403 account_inactive, not the profile', async (t) => {
    const { app, deps } = await suite.build(t);
    const user = await createUser(app);
    const tokens = await loginTokens(app, user);
    await deps.db.query('UPDATE users SET is_active = false WHERE id = $1', [user.uuid]);
    for (const url of ['/api/v1/auth-jwt/user-info', '/api/v1/auth-jwt/sessions']) {
      const res = await app.inject({ method: 'GET', url, headers: bearer(tokens.access_token) });
      assert.equal(res.statusCode, 403, url);
      assert.equal(res.json().code, 'account_inactive', url);
      assert.equal(res.json().email, undefined);
    }
  });

  test('a hash made with other argon2 parameters is upgraded at login', async (t) => {
    const { app, deps } = await suite.build(t);
    const user = await createUser(app);
    const old = await new PasswordHasher({ memoryKib: 2048, iterations: 1, parallelism: 1 }).hash(user.password);
    await deps.db.query('UPDATE users SET password_hash = $2 WHERE id = $1', [user.uuid, old]);
    assert.equal((await login(app, { username: user.username, password: user.password })).statusCode, 200);
    const { rows } = await deps.db.query<{ password_hash: string }>('SELECT password_hash FROM users WHERE id = $1', [user.uuid]);
    assert.match(rows[0]!.password_hash, /^\$argon2id\$v=19\$m=1024,t=1,p=1\$/);
    assert.notEqual(rows[0]!.password_hash, old);
    assert.equal((await login(app, { username: user.username, password: user.password })).statusCode, 200);
  });

  test('MFA_POLICY=required: a user without a factor is sent to enrol', async (t) => {
    const { app } = await suite.build(t, { env: { MFA_POLICY: 'required' } });
    const user = await createUser(app);
    const res = await login(app, { username: user.username, password: user.password });
    assert.equal(res.statusCode, 403);
    assert.equal(res.json().code, 'mfa_enrollment_required');
    assert.equal(res.headers['set-cookie'], undefined);
  });

  test('user-info with Bearer or cookie returns the private profile', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const tokens = await loginTokens(app, user);
    for (const headers of [bearer(tokens.access_token), { cookie: `access_token=${tokens.access_token}` }]) {
      const res = await app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers });
      assert.equal(res.statusCode, 200);
      const body = res.json();
      assert.equal(body.uuid, user.uuid);
      assert.equal(body.email, user.email);
      assert.deepEqual(body.mfa, { totp: false, email: false, passkeys: 0, backup_codes_remaining: 0 });
      assert.equal(body.password_hash, undefined);
    }
    const none = await app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info' });
    assert.equal(none.statusCode, 401);
    assert.equal(none.json().code, 'authentication_required');
  });
});

describeWithApp('TOTP enrolment and two-factor login', (suite) => {
  test('/qrcode answers a PNG that decodes to the contract otpauth URI; SVG and JSON on request', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const png = await app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', payload: { username: user.username, password: user.password } });
    assert.equal(png.statusCode, 201);
    assert.equal(png.headers['content-type'], 'image/png');
    assert.equal(png.headers['cache-control'], 'no-store');
    const decoded = decodeQrPng(png.rawPayload);
    assert.ok(decoded, 'the PNG holds a readable QR code');
    assert.match(decoded, new RegExp(`^otpauth://totp/Twofold:${user.username}\\?secret=([A-Z2-7]{32})&issuer=Twofold&algorithm=SHA1&digits=6&period=30$`));

    const svg = await app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', headers: { accept: 'image/svg+xml' }, payload: { username: user.username, password: user.password } });
    assert.equal(svg.statusCode, 201);
    assert.match(svg.headers['content-type'] as string, /^image\/svg\+xml/);
    assert.match(svg.body, /^<svg/);

    const json = await app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', headers: { accept: 'application/json' }, payload: { username: user.username, password: user.password } });
    assert.equal(json.statusCode, 201);
    assert.deepEqual(Object.keys(json.json()).sort(), ['otpauth_uri', 'qr_code_png_base64', 'secret']);

    const bad = await app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', headers: { accept: 'text/csv' }, payload: { username: user.username, password: user.password } });
    assert.equal(bad.statusCode, 406);
    assert.equal(bad.json().code, 'not_acceptable');
  });

  test('/qrcode with a wrong password → 401 invalid_credentials and no secret', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', payload: { username: user.username, password: 'wrong password entirely' } });
    assert.equal(res.statusCode, 401);
    assert.equal(res.json().code, 'invalid_credentials');
  });

  test('the first login with a code activates the pending secret; then the factor is required and /qrcode is refused', async (t) => {
    const ctx = await suite.build(t);
    const user = await createUser(ctx.app);
    const before = await login(ctx.app, { username: user.username, password: user.password });
    assert.equal(before.statusCode, 200, 'a pending secret is not yet a factor');
    assert.equal(decodeJwt(before.json().access_token).aal, 'aal1');

    const { secret, tokens } = await enableTotp(ctx, user);
    const claims = decodeJwt(tokens.access_token);
    assert.equal(claims.aal, 'aal2');
    assert.deepEqual(claims.amr, ['pwd', 'otp', 'mfa']);

    const info = await ctx.app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(tokens.access_token) });
    assert.equal(info.json().mfa.totp, true);

    const again = await ctx.app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', payload: { username: user.username, password: user.password } });
    assert.equal(again.statusCode, 409);
    assert.equal(again.json().code, 'totp_already_enabled');

    nextTotpStep(ctx.clock);
    const pwOnly = await login(ctx.app, { username: user.username, password: user.password });
    assert.equal(pwOnly.statusCode, 403);
    const challenge = pwOnly.json();
    assert.equal(challenge.code, 'mfa_required');
    assert.deepEqual(challenge.mfa_methods, ['totp', 'backup_code'], 'the first login with a code issued the backup codes');
    assert.equal(challenge.mfa_expires_in, 300);
    assert.equal(pwOnly.headers['set-cookie'], undefined, 'no tokens before the second factor');
    assert.equal(challenge.access_token, undefined);
    assert.equal(decodeProtectedHeader(challenge.mfa_token).typ, 'mfa+jwt');

    const done = await ctx.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/mfa', payload: { mfa_token: challenge.mfa_token, method: 'totp', code: totpCodeAt(secret, ctx.clock()) } });
    assert.equal(done.statusCode, 200, done.body);
    assert.equal(decodeJwt(done.json().access_token).aal, 'aal2');
    assert.ok(cookies(done).get('access_token'));
  });

  test('activating TOTP by a first login tells the user by mail', async (t) => {
    const ctx = await suite.build(t);
    const user = await createUser(ctx.app);
    const before = (await ctx.deliverMail()).filter((m) => m.to === user.email && m.kind === 'factor_added').length;
    await enableTotp(ctx, user);
    const mails = (await ctx.deliverMail()).filter((m) => m.to === user.email && m.kind === 'factor_added');
    assert.equal(mails.length, before + 1);
    nextTotpStep(ctx.clock);
    await login(ctx.app, { username: user.username, password: user.password, security_code: '000000' });
    assert.equal((await ctx.deliverMail()).filter((m) => m.to === user.email && m.kind === 'factor_added').length, before + 1, 'only activation mails');
  });

  test('with MFA_METHODS=email, TOTP is neither enrolled nor accepted', async (t) => {
    const ctx = await suite.build(t);
    const user = await createUser(ctx.app);
    const qr = (await ctx.app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', headers: { accept: 'application/json' }, payload: { username: user.username, password: user.password } })).json();
    const emailOnly = await suite.build(t, { env: { MFA_METHODS: 'email' } });
    const refused = await emailOnly.app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', payload: { username: user.username, password: user.password } });
    assert.equal(refused.statusCode, 400);
    assert.equal(refused.json().code, 'method_not_enabled');
    const res = await login(emailOnly.app, { username: user.username, password: user.password, security_code: totpCodeAt(qr.secret, emailOnly.clock()) });
    assert.equal(res.statusCode, 401);
    assert.equal(res.json().code, 'invalid_security_code');
  });

  test('a new /qrcode while pending replaces the secret: the old pending code no longer works', async (t) => {
    const ctx = await suite.build(t);
    const user = await createUser(ctx.app);
    const first = (await ctx.app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', headers: { accept: 'application/json' }, payload: { username: user.username, password: user.password } })).json();
    const second = (await ctx.app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', headers: { accept: 'application/json' }, payload: { username: user.username, password: user.password } })).json();
    assert.notEqual(first.secret, second.secret);
    const old = await login(ctx.app, { username: user.username, password: user.password, security_code: totpCodeAt(first.secret, ctx.clock()) });
    assert.equal(old.statusCode, 401);
    assert.equal(old.json().code, 'invalid_security_code');
    const ok = await login(ctx.app, { username: user.username, password: user.password, security_code: totpCodeAt(second.secret, ctx.clock()) });
    assert.equal(ok.statusCode, 200);
  });

  test('TOTP accepts the current step and one either side, not two away', async (t) => {
    const ctx = await suite.build(t);
    const user = await createUser(ctx.app);
    const { secret } = await enableTotp(ctx, user);
    for (const [offset, expected] of [[-30, 401], [0, 200], [30, 200], [60, 401]] as const) {
      ctx.clock.advance(120); // a fresh step each round, so replay protection does not interfere
      const code = totpCodeAt(secret, new Date(ctx.clock().getTime() + offset * 1000));
      const res = await login(ctx.app, { username: user.username, password: user.password, security_code: code });
      assert.equal(res.statusCode, offset === -30 ? 200 : expected, `offset ${offset}s`);
    }
    ctx.clock.advance(120);
    const tooOld = await login(ctx.app, { username: user.username, password: user.password, security_code: totpCodeAt(secret, new Date(ctx.clock().getTime() - 60_000)) });
    assert.equal(tooOld.statusCode, 401);
    assert.equal(tooOld.json().code, 'invalid_security_code');
  });

  test('a wrong code → 401 invalid_security_code, no tokens', async (t) => {
    const ctx = await suite.build(t);
    const user = await createUser(ctx.app);
    const { secret } = await enableTotp(ctx, user);
    nextTotpStep(ctx.clock);
    const right = totpCodeAt(secret, ctx.clock());
    const wrong = right === '000000' ? '000001' : '000000';
    const res = await login(ctx.app, { username: user.username, password: user.password, security_code: wrong });
    assert.equal(res.statusCode, 401);
    assert.equal(res.json().code, 'invalid_security_code');
    assert.equal(res.headers['set-cookie'], undefined);
  });

  test('the mfa_token may be sent as the Bearer token', async (t) => {
    const ctx = await suite.build(t);
    const user = await createUser(ctx.app);
    const { secret } = await enableTotp(ctx, user);
    nextTotpStep(ctx.clock);
    const { mfa_token } = (await login(ctx.app, { username: user.username, password: user.password })).json();
    const res = await ctx.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/mfa', headers: bearer(mfa_token), payload: { method: 'totp', code: totpCodeAt(secret, ctx.clock()) } });
    assert.equal(res.statusCode, 200, res.body);
  });
});

describeWithApp('refresh and logout', (suite) => {
  test('refresh by body, Bearer and cookie rotates the refresh token and keeps the session', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    let tokens = await loginTokens(app, user);
    const sid = decodeJwt(tokens.access_token).sid;
    const ways = [
      (rt: string) => ({ payload: { refresh_token: rt } }),
      (rt: string) => ({ headers: bearer(rt) }),
      (rt: string) => ({ headers: { cookie: `refresh_token=${rt}`, origin: 'http://127.0.0.1:8000' } }),
    ];
    for (const way of ways) {
      const res = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', ...way(tokens.refresh_token) });
      assert.equal(res.statusCode, 200, res.body);
      const next = res.json();
      assert.notEqual(next.refresh_token, tokens.refresh_token);
      assert.notEqual(decodeJwt(next.refresh_token).jti, decodeJwt(tokens.refresh_token).jti);
      assert.equal(decodeJwt(next.access_token).sid, sid);
      assert.ok(cookies(res).get('refresh_token'));
      tokens = next;
    }
  });

  test('reuse within the grace window gets a pair for the same session; after it, the session is revoked', async (t) => {
    const { app, clock } = await suite.build(t);
    const user = await createUser(app);
    const first = await loginTokens(app, user);
    const rotated = (await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: first.refresh_token } })).json();

    clock.advance(5);
    const graced = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: first.refresh_token } });
    assert.equal(graced.statusCode, 200, 'a second tab within 10 s still succeeds');
    assert.equal(decodeJwt(graced.json().access_token).sid, decodeJwt(first.access_token).sid);

    clock.advance(10);
    const reused = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: first.refresh_token } });
    assert.equal(reused.statusCode, 401);
    assert.equal(reused.json().code, 'refresh_token_reused');

    // The whole family is dead: the newest refresh token and the access tokens too.
    const newest = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: rotated.refresh_token } });
    assert.equal(newest.statusCode, 401);
    const info = await app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(rotated.access_token) });
    assert.equal(info.statusCode, 401);
    assert.equal(info.json().code, 'invalid_token');
  });

  test('a token rotated away within the grace window gets a pair even after later rotations; each counts from its own rotation', async (t) => {
    const { app, clock } = await suite.build(t);
    const user = await createUser(app);
    const refresh = (rt: string) => app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: rt } });
    const t1 = await loginTokens(app, user);
    clock.advance(1);
    const t2 = (await refresh(t1.refresh_token)).json();
    clock.advance(1);
    const t3 = (await refresh(t2.refresh_token)).json();
    clock.advance(1);
    const t4 = (await refresh(t3.refresh_token)).json();
    // t1 was rotated away 3 s ago, t2 2 s ago: neither is the previous token (t3 is), both within 10 s.
    clock.advance(1);
    for (const old of [t1, t2, t3]) {
      const res = await refresh(old.refresh_token);
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(decodeJwt(res.json().access_token).sid, decodeJwt(t1.access_token).sid);
      assert.equal(decodeJwt(res.json().refresh_token).jti, decodeJwt(t4.refresh_token).jti, 'the current pair, re-issued');
    }
    // 10.5 s after t1 was rotated away (t2 and t3 still within theirs): t1 is a replay.
    clock.advance(7.5);
    const replay = await refresh(t1.refresh_token);
    assert.equal(replay.statusCode, 401);
    assert.equal(replay.json().code, 'refresh_token_reused');
    assert.equal((await refresh(t4.refresh_token)).statusCode, 401, 'the whole session is revoked');
  });

  test('more rotations within the grace window than the session lists: a token issued within it still gets a pair; an older one past the list is a replay', async (t) => {
    const { app, clock } = await suite.build(t);
    const user = await createUser(app);
    const refresh = (rt: string) => app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: rt } });
    const rotateTimes = async (first: { refresh_token: string }, n: number, step: number) => {
      const tokens = [first];
      for (let i = 0; i < n; i++) {
        clock.advance(step);
        tokens.push((await refresh(tokens.at(-1)!.refresh_token)).json());
      }
      return tokens;
    };
    // Issued 9 s ago and rotated away since, 18 rotations back: within the grace period by its own age.
    const young = await rotateTimes(await loginTokens(app, user), 18, 0.5);
    const first = await refresh(young[0]!.refresh_token);
    assert.equal(first.statusCode, 200, first.body);
    // Issued a minute ago, rotated away 4 s ago, 20 rotations back: past the list (README: up to 16), and
    // too old to tell by its age. A replay: a thief refreshing twice a second must not make the owner's
    // copy harmless (it answered invalid_token and kept the thief's session).
    const victim = await loginTokens(app, user);
    clock.advance(60);
    const thief = await rotateTimes(victim, 20, 0.2);
    const replay = await refresh(victim.refresh_token);
    assert.equal(replay.statusCode, 401);
    assert.equal(replay.json().code, 'refresh_token_reused');
    assert.equal((await refresh(thief.at(-1)!.refresh_token)).statusCode, 401, "the thief's session is revoked");
  });

  test("an issue time in the future (another instance's clock ahead) does not stretch the grace period", async (t) => {
    const { app, clock } = await suite.build(t);
    const user = await createUser(app);
    const refresh = (rt: string) => app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: rt } });
    const start = clock().getTime();
    clock.set(new Date(start + 300_000));
    const early = await loginTokens(app, user);
    clock.set(new Date(start + 1000));
    const rotated = (await refresh(early.refresh_token)).json();
    // Rotated away 199 s ago; its iat is 100 s ahead of now.
    clock.set(new Date(start + 200_000));
    const replay = await refresh(early.refresh_token);
    assert.equal(replay.statusCode, 401, replay.body);
    assert.equal(replay.json().code, 'refresh_token_reused');
    assert.equal((await refresh(rotated.refresh_token)).statusCode, 401);
  });

  test('rotations further apart than the grace window keep no earlier tokens', async (t) => {
    const { app, clock } = await suite.build(t);
    const user = await createUser(app);
    const refresh = (rt: string) => app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: rt } });
    const t1 = await loginTokens(app, user);
    const t2 = (await refresh(t1.refresh_token)).json();
    clock.advance(20);
    const t3 = (await refresh(t2.refresh_token)).json();
    clock.advance(1);
    assert.equal((await refresh(t2.refresh_token)).statusCode, 200, 'the previous token, rotated away 1 s ago');
    const replay = await refresh(t1.refresh_token);
    assert.equal(replay.json().code, 'refresh_token_reused', 'rotated away 21 s ago');
    assert.equal((await refresh(t3.refresh_token)).statusCode, 401);
  });

  test("a dead refresh token clears the cookies only when it came from them (a bad one in the body says nothing of the browser's)", async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const browser = await loginTokens(app, user);
    const dead = await loginTokens(app, user);
    await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: bearer(dead.access_token) });
    // The browser's page (same origin) sends a dead token in the body, with the browser's cookies.
    const cookie = `access_token=${browser.access_token}; refresh_token=${browser.refresh_token}`;
    const viaBody = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', headers: { cookie, origin: 'http://127.0.0.1:8000' }, payload: { refresh_token: dead.refresh_token } });
    assert.equal(viaBody.statusCode, 401);
    assert.equal(viaBody.headers['set-cookie'], undefined, "the browser's cookies stay");
    // The cookie's own token dead: cleared.
    const viaCookie = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', headers: { cookie: `refresh_token=${dead.refresh_token}`, origin: 'http://127.0.0.1:8000' } });
    assert.equal(viaCookie.statusCode, 401);
    assert.equal(cookies(viaCookie).get('refresh_token')!.value, '');
  });

  test('logout revokes the session at once and clears the cookies', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const tokens = await loginTokens(app, user);
    const other = await loginTokens(app, user);
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: bearer(tokens.access_token) });
    assert.equal(res.statusCode, 204);
    const c = cookies(res);
    assert.equal(c.get('access_token')!.value, '');
    assert.equal(c.get('refresh_token')!.value, '');
    assert.equal(c.get('twofold_browser_session')!.value, '');
    assert.equal((await app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(tokens.access_token) })).statusCode, 401);
    const refresh = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: tokens.refresh_token } });
    assert.equal(refresh.statusCode, 401);
    assert.equal(refresh.json().code, 'invalid_token');
    assert.equal((await app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(other.access_token) })).statusCode, 200, 'other sessions live on');
  });

  test('logout with the refresh token (body) and logout without any token', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const tokens = await loginTokens(app, user);
    assert.equal((await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', payload: { refresh_token: tokens.refresh_token } })).statusCode, 204);
    assert.equal((await app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(tokens.access_token) })).statusCode, 401);
    const none = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout' });
    assert.equal(none.statusCode, 401);
  });

  test('logout-all revokes every session of the user, not of others', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const someoneElse = await createUser(app);
    const a = await loginTokens(app, user);
    const b = await loginTokens(app, user);
    const c = await loginTokens(app, someoneElse);
    assert.equal((await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout-all', headers: bearer(a.access_token) })).statusCode, 204);
    for (const tok of [a, b]) assert.equal((await app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(tok.access_token) })).statusCode, 401);
    assert.equal((await app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(c.access_token) })).statusCode, 200);
  });

  test('the password is never echoed in any login answer', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app, { password: PASSWORD });
    const res = await login(app, { username: user.username, password: 'a wrong but long password' });
    assert.ok(!res.body.includes('a wrong but long password'));
  });
});
