import assert from 'node:assert/strict';
import { createHmac, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { SignJWT, decodeJwt, exportJWK, calculateJwkThumbprint } from 'jose';
import { KeyStore } from '../../src/crypto/jwt.ts';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { bearer, createUser, describeWithApp, enableTotp, login, loginTokens, nextTotpStep, testKeyPem } from '../helpers/app.ts';

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

async function userInfo(app: import('fastify').FastifyInstance, token: string) {
  return app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(token) });
}

function assertInvalidToken(res: { statusCode: number; json(): { code: string } }, why: string) {
  assert.equal(res.statusCode, 401, why);
  assert.equal(res.json().code, 'invalid_token', why);
}

describeWithApp('token forgery and confusion', (suite) => {
  test('alg "none" is refused', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const { access_token } = await loginTokens(app, user);
    const [h, p] = access_token.split('.');
    const header = { ...JSON.parse(Buffer.from(h!, 'base64url').toString()), alg: 'none' };
    assertInvalidToken(await userInfo(app, `${b64(header)}.${p}.`), 'unsigned');
  });

  test('HS256 signed with the public key as HMAC secret is refused', async (t) => {
    const { app, deps } = await suite.build(t);
    const user = await createUser(app);
    const { access_token } = await loginTokens(app, user);
    const [h, p] = access_token.split('.');
    const header = { ...JSON.parse(Buffer.from(h!, 'base64url').toString()), alg: 'HS256' };
    const publicPem = createPublicKey(await testKeyPem()).export({ type: 'spki', format: 'pem' }) as string;
    const input = `${b64(header)}.${p}`;
    const sig = createHmac('sha256', publicPem).update(input).digest('base64url');
    assertInvalidToken(await userInfo(app, `${input}.${sig}`), 'key confusion');
    assert.ok((await deps.keys.jwks()).keys[0]!.kid);
  });

  test('a tampered payload (aal1 → aal2, other sub) breaks the signature', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const victim = await createUser(app);
    const { access_token } = await loginTokens(app, user);
    const [h, p, s] = access_token.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    assertInvalidToken(await userInfo(app, `${h}.${b64({ ...claims, aal: 'aal2' })}.${s}`), 'aal raised');
    assertInvalidToken(await userInfo(app, `${h}.${b64({ ...claims, sub: victim.uuid })}.${s}`), 'sub swapped');
    // Flip one character in the middle of the signature (the last characters carry padding bits only).
    const mid = Math.floor(s!.length / 2);
    const flipped = `${s!.slice(0, mid)}${s![mid] === 'A' ? 'B' : 'A'}${s!.slice(mid + 1)}`;
    assertInvalidToken(await userInfo(app, `${h}.${p}.${flipped}`), 'signature bytes changed');
    assertInvalidToken(await userInfo(app, 'not.a.jwt'), 'garbage');
  });

  test('an unknown kid is refused, even for a well-formed RS256 token of another key', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const { access_token } = await loginTokens(app, user);
    const claims = decodeJwt(access_token);
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const otherKid = await calculateJwkThumbprint(await exportJWK(publicKey));
    const forged = await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: otherKid }).sign(privateKey);
    assertInvalidToken(await userInfo(app, forged), 'foreign key');
    const noKid = await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt' }).sign(privateKey);
    assertInvalidToken(await userInfo(app, noKid), 'no kid');
  });

  test('our own key with a wrong issuer, audience or typ is refused', async (t) => {
    const { app, deps } = await suite.build(t);
    const user = await createUser(app);
    const { access_token } = await loginTokens(app, user);
    const claims = decodeJwt(access_token);
    const iss = await KeyStore.fromPem(await testKeyPem(), 'https://evil.example', deps.config.jwtAudience);
    assertInvalidToken(await userInfo(app, await iss.sign('access', { ...claims, iss: undefined })), 'issuer');
    assertInvalidToken(await userInfo(app, await deps.keys.sign('access', { ...claims, aud: 'another-service' })), 'audience');
    assertInvalidToken(await userInfo(app, await deps.keys.sign('refresh', { ...claims })), 'typ refresh+jwt at an access endpoint');
  });

  test('an expired access token is refused', async (t) => {
    const { app, clock } = await suite.build(t);
    const user = await createUser(app);
    const { access_token } = await loginTokens(app, user);
    assert.equal((await userInfo(app, access_token)).statusCode, 200);
    clock.advance(3600);
    assertInvalidToken(await userInfo(app, access_token), 'expired');
  });

  test('a refresh or MFA token is not an access token; an access token is not a refresh token', async (t) => {
    const ctx = await suite.build(t);
    const user = await createUser(ctx.app);
    const tokens = await loginTokens(ctx.app, user);
    assertInvalidToken(await userInfo(ctx.app, tokens.refresh_token), 'refresh as access');
    const atRefresh = await ctx.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: tokens.access_token } });
    assertInvalidToken(atRefresh, 'access at refresh');

    const mfaUser = await createUser(ctx.app);
    await enableTotp(ctx, mfaUser);
    nextTotpStep(ctx.clock);
    const { mfa_token } = (await login(ctx.app, { username: mfaUser.username, password: mfaUser.password })).json();
    assertInvalidToken(await userInfo(ctx.app, mfa_token), 'mfa as access');
    assertInvalidToken(await ctx.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: mfa_token } }), 'mfa at refresh');
    const asMfa = await ctx.app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/mfa', payload: { mfa_token: tokens.access_token, method: 'totp', code: '123456' } });
    assertInvalidToken(asMfa, 'access as mfa token');
  });
});

describeWithApp('replay and races', (suite) => {
  test('a TOTP code is accepted once: the replay and any older step are refused', async (t) => {
    const ctx = await suite.build(t);
    const user = await createUser(ctx.app);
    const { secret } = await enableTotp(ctx, user);
    nextTotpStep(ctx.clock);
    const code = totpCodeAt(secret, ctx.clock());
    assert.equal((await login(ctx.app, { username: user.username, password: user.password, security_code: code })).statusCode, 200);
    const replay = await login(ctx.app, { username: user.username, password: user.password, security_code: code });
    assert.equal(replay.statusCode, 401);
    assert.equal(replay.json().code, 'invalid_security_code');
    // The previous step's code is still inside the ±1 window, but not later than the last accepted one.
    const older = await login(ctx.app, { username: user.username, password: user.password, security_code: totpCodeAt(secret, new Date(ctx.clock().getTime() - 30_000)) });
    assert.equal(older.statusCode, 401);
  });

  test('the same TOTP code in 8 concurrent logins works exactly once', async (t) => {
    const ctx = await suite.build(t);
    const user = await createUser(ctx.app);
    const { secret } = await enableTotp(ctx, user);
    nextTotpStep(ctx.clock);
    const code = totpCodeAt(secret, ctx.clock());
    const results = await Promise.all(Array.from({ length: 8 }, () => login(ctx.app, { username: user.username, password: user.password, security_code: code })));
    assert.deepEqual(results.map((r) => r.statusCode).sort(), [200, 401, 401, 401, 401, 401, 401, 401]);
  });

  test('two dozen first logins at once with the code of a /qrcode secret: one activates it, with one set of backup codes', async (t) => {
    const ctx = await suite.build(t);
    const user = await createUser(ctx.app);
    const qr = await ctx.app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', headers: { accept: 'application/json' }, payload: { username: user.username, password: user.password } });
    const code = totpCodeAt(qr.json().secret, ctx.clock());
    const results = await Promise.all(Array.from({ length: 24 }, () => login(ctx.app, { username: user.username, password: user.password, security_code: code })));
    const won = results.filter((r) => r.statusCode === 200);
    assert.equal(won.length, 1, results.map((r) => r.statusCode).join(' '));
    // The others: the code's step is spent (401), or the account's failure count locked it (429).
    assert.ok(results.every((r) => [200, 401, 429].includes(r.statusCode)), results.map((r) => r.statusCode).join(' '));
    assert.equal(won[0]!.json().backup_codes.length, 10);
    const count = async (sql: string) => (await ctx.deps.db.query(sql, [user.uuid])).rows.length;
    assert.equal(await count('SELECT id FROM backup_codes WHERE user_id = $1'), 10, 'one set');
    assert.equal(await count('SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL'), 1, 'one session');
    assert.equal(await count("SELECT id FROM audit_log WHERE user_id = $1 AND type = 'mfa.enabled'"), 1, 'one activation');
  });

  test('thirty concurrent refreshes with one token and grace 0: exactly one wins, the session dies', async (t) => {
    const { app, deps } = await suite.build(t, { env: { REFRESH_REUSE_GRACE_SECONDS: '0' } });
    const user = await createUser(app);
    const tokens = await loginTokens(app, user);
    const results = await Promise.all(
      Array.from({ length: 30 }, () => app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: tokens.refresh_token } })),
    );
    const ok = results.filter((r) => r.statusCode === 200);
    assert.equal(ok.length, 1, results.map((r) => r.statusCode).join(','));
    for (const r of results.filter((r) => r.statusCode !== 200)) {
      assert.equal(r.statusCode, 401);
      assert.equal(r.json().code, 'refresh_token_reused');
    }
    const sid = decodeJwt(tokens.access_token).sid;
    const { rows } = await deps.db.query<{ revoked_reason: string | null }>('SELECT revoked_reason FROM sessions WHERE id = $1', [sid]);
    assert.equal(rows[0]!.revoked_reason, 'refresh_token_reused');
    assertInvalidToken(await userInfo(app, ok[0]!.json().access_token), 'the winner is revoked too: reuse means theft');
  });

  test('concurrent refreshes within the grace window all get tokens of the same session', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const tokens = await loginTokens(app, user);
    const results = await Promise.all(
      Array.from({ length: 4 }, () => app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: tokens.refresh_token } })),
    );
    assert.deepEqual(results.map((r) => r.statusCode), [200, 200, 200, 200]);
    const sids = new Set(results.map((r) => decodeJwt(r.json().access_token).sid));
    assert.equal(sids.size, 1);
    for (const r of results) assert.equal((await userInfo(app, r.json().access_token)).statusCode, 200);
  });

  test('thirty concurrent refreshes with the current token and every token rotated away in the grace window: one session, one rotation, nothing revoked', async (t) => {
    const { app, clock, deps } = await suite.build(t);
    const user = await createUser(app);
    const refresh = (rt: string) => app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: rt } });
    const chain = [await loginTokens(app, user)];
    clock.advance(30); // the login's token is no longer recent by its own age: only the lists vouch for it
    for (let i = 0; i < 5; i++) {
      clock.advance(1);
      chain.push((await refresh(chain.at(-1)!.refresh_token)).json());
    }
    clock.advance(1);
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => refresh(chain[i % chain.length]!.refresh_token)));
    assert.deepEqual([...new Set(results.map((r) => r.statusCode))], [200], results.map((r) => r.body).join('\n'));
    assert.equal(new Set(results.map((r) => decodeJwt(r.json().access_token).sid)).size, 1);
    // One rotation won (from the current token); every other answer re-issued the current token of its
    // moment: the one before that rotation or the one it made. Never a second rotation.
    const before = decodeJwt(chain.at(-1)!.refresh_token).jti;
    const made = new Set(results.map((r) => decodeJwt(r.json().refresh_token).jti).filter((jti) => jti !== before));
    assert.equal(made.size, 1, 'exactly one rotation');
    const { rows } = await deps.db.query<{ revoked_at: Date | null; current_jti: string }>('SELECT revoked_at, current_jti FROM sessions WHERE id = $1', [decodeJwt(chain[0]!.access_token).sid]);
    assert.deepEqual(rows, [{ revoked_at: null, current_jti: [...made][0] }]);
  });

  test('an access token of a revoked session is refused at once, though still signed and unexpired', async (t) => {
    const { app, deps } = await suite.build(t);
    const user = await createUser(app);
    const tokens = await loginTokens(app, user);
    assert.equal((await userInfo(app, tokens.access_token)).statusCode, 200);
    await deps.db.query("UPDATE sessions SET revoked_at = now(), revoked_reason = 'test' WHERE id = $1", [decodeJwt(tokens.access_token).sid]);
    assertInvalidToken(await userInfo(app, tokens.access_token), 'revoked session');
  });
});

describeWithApp('CSRF defence for cookie-authenticated requests', (suite) => {
  test('a cross-site cookie POST is refused and changes nothing', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const tokens = await loginTokens(app, user);
    const cookie = `access_token=${tokens.access_token}`;
    for (const headers of [
      { cookie, 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' },
      { cookie, origin: 'https://evil.example' },
      { cookie, 'sec-fetch-site': 'cross-site' },
      { cookie, origin: 'null' },
      { cookie, 'sec-fetch-site': 'same-site' },
    ]) {
      const res = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout-all', headers });
      assert.equal(res.statusCode, 403, JSON.stringify(headers));
      assert.equal(res.json().code, 'csrf_rejected');
    }
    assert.equal((await userInfo(app, tokens.access_token)).statusCode, 200, 'the session survived every forged request');
    const refresh = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', headers: { cookie: `refresh_token=${tokens.refresh_token}`, 'sec-fetch-site': 'cross-site' } });
    assert.equal(refresh.json().code, 'csrf_rejected');
  });

  test('same-origin and trusted-origin cookie requests pass; Bearer needs no CSRF defence', async (t) => {
    const { app } = await suite.build(t, { env: { TRUSTED_ORIGINS: 'https://app.example.com' } });
    const user = await createUser(app);
    const a = await loginTokens(app, user);
    const same = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: { cookie: `access_token=${a.access_token}`, origin: 'http://127.0.0.1:8000', 'sec-fetch-site': 'same-origin' } });
    assert.equal(same.statusCode, 204);
    const b = await loginTokens(app, user);
    const trusted = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: { cookie: `access_token=${b.access_token}`, origin: 'https://app.example.com', 'sec-fetch-site': 'cross-site' } });
    assert.equal(trusted.statusCode, 403, 'the browser itself says cross-site: refused even for a trusted origin');
    const trustedSameSite = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: { cookie: `access_token=${b.access_token}`, origin: 'https://app.example.com', 'sec-fetch-site': 'same-site' } });
    assert.equal(trustedSameSite.statusCode, 204);
    const c = await loginTokens(app, user);
    const viaBearer = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: { ...bearer(c.access_token), 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' } });
    assert.equal(viaBearer.statusCode, 204);
  });

  test('a cross-site HTML form cannot log a victim in (login CSRF)', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/auth-jwt/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
      payload: new URLSearchParams({ username: user.username, password: user.password }).toString(),
    });
    assert.equal(res.statusCode, 403);
    assert.equal(res.json().code, 'csrf_rejected');
    assert.equal(res.headers['set-cookie'], undefined);
  });
});

describeWithApp('malformed, oversized, unknown and invalid requests', (suite) => {
  test('400 malformed_request for broken JSON', async (t) => {
    const { app } = await suite.build(t);
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', headers: { 'content-type': 'application/json' }, payload: '{"username": "a", ' });
    assert.equal(res.statusCode, 400);
    assert.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8');
    const body = res.json();
    assert.deepEqual(Object.keys(body).sort(), ['code', 'detail', 'status', 'title', 'type']);
    assert.equal(body.code, 'malformed_request');
    assert.equal(body.status, 400);
  });

  test('413 payload_too_large over 64 KiB', async (t) => {
    const { app } = await suite.build(t);
    const res = await app.inject({ method: 'POST', url: '/api/v1/user', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ username: 'x'.repeat(70 * 1024) }) });
    assert.equal(res.statusCode, 413);
    assert.equal(res.json().code, 'payload_too_large');
  });

  test('404 not_found for unknown routes, as problem+json', async (t) => {
    const { app } = await suite.build(t);
    for (const url of ['/api/v1/nothing', '/api/v2/user', '/../etc/passwd']) {
      const res = await app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 404);
      assert.equal(res.json().code, 'not_found');
    }
  });

  test('422 validation_failed lists missing and wrongly typed fields', async (t) => {
    const { app } = await suite.build(t);
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: { username: 42 } });
    assert.equal(res.statusCode, 422);
    const body = res.json();
    assert.equal(body.code, 'validation_failed');
    const fields = body.errors.map((e: { field: string }) => e.field).sort();
    assert.deepEqual(fields, ['password', 'username']);
  });

  test('415 for a body type the route does not take', async (t) => {
    const { app } = await suite.build(t);
    const res = await app.inject({ method: 'POST', url: '/api/v1/user', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'username=a' });
    assert.equal(res.statusCode, 415);
    assert.equal(res.json().code, 'unsupported_media_type');
  });

  test('a prototype-pollution body is refused', async (t) => {
    const { app } = await suite.build(t);
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', headers: { 'content-type': 'application/json' }, payload: '{"username":"a","password":"b","__proto__":{"admin":true}}' });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().code, 'malformed_request');
  });
});

// A PostgreSQL connection refused or lost is 503 service_unavailable (database-unavailable.test.ts); a
// database handle the process closed itself is no outage to wait out, and stays a bare 500.
test('a closed database (PGlite) gives a bare 500 problem without internals, and /readyz says 503', async (t) => {
  const { openTestPglite } = await import('../helpers/pglite-template.ts');
  const { buildTestApp, quietLogger } = await import('../helpers/app.ts');
  const db = await openTestPglite();
  const { app } = await buildTestApp(t, db, { logger: quietLogger() });
  await db.close();
  const res = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: { username: 'someone', password: 'something long' } });
  assert.equal(res.statusCode, 500);
  const body = res.json();
  assert.equal(body.code, 'internal_error');
  assert.equal(body.detail, 'An unexpected error occurred.');
  assert.doesNotMatch(res.body, /at |\.ts|SELECT|PGlite|stack/i);
  const ready = await app.inject({ method: 'GET', url: '/readyz' });
  assert.equal(ready.statusCode, 503);
  assert.equal(ready.json().code, 'service_unavailable');
});
