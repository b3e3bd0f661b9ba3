import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { createUser, describeWithApp, loginTokens } from '../helpers/app.ts';

describeWithApp('service endpoints', (suite) => {
  test('JWKS holds the public RSA key only; another service verifies an access token offline with it', async (t) => {
    const { app } = await suite.build(t);
    const res = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' });
    assert.equal(res.statusCode, 200);
    const jwks = res.json();
    assert.equal(jwks.keys.length, 1);
    const key = jwks.keys[0];
    assert.deepEqual([key.kty, key.alg, key.use], ['RSA', 'RS256', 'sig']);
    for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(key[secret], undefined, `no private member ${secret}`);
    assert.ok(Buffer.from(key.n, 'base64url').length >= 256, 'at least 2048 bits');

    const user = await createUser(app);
    const { access_token } = await loginTokens(app, user);
    const { payload, protectedHeader } = await jwtVerify(access_token, createLocalJWKSet(jwks), {
      issuer: 'http://127.0.0.1:8000', audience: 'twofold', algorithms: ['RS256'], typ: 'at+jwt', currentDate: new Date('2026-06-01T12:00:30Z'),
    });
    assert.equal(payload.sub, user.uuid);
    assert.equal(protectedHeader.kid, key.kid);
  });

  test('OpenID discovery names the issuer, the JWKS and RS256', async (t) => {
    const { app } = await suite.build(t);
    const doc = (await app.inject({ method: 'GET', url: '/.well-known/openid-configuration' })).json();
    assert.equal(doc.issuer, 'http://127.0.0.1:8000');
    assert.equal(doc.jwks_uri, 'http://127.0.0.1:8000/.well-known/jwks.json');
    assert.deepEqual(doc.id_token_signing_alg_values_supported, ['RS256']);
    // Only the methods a client can be registered with (client_secret_jwt and private_key_jwt cannot);
    // introspection and revocation take the same (RFC 8414: no list of their own means the token's).
    assert.deepEqual([...doc.token_endpoint_auth_methods_supported].sort(), ['client_secret_basic', 'client_secret_post', 'none']);
    assert.deepEqual(Object.keys(doc).filter((k) => k.endsWith('_auth_methods_supported')), ['token_endpoint_auth_methods_supported']);
  });

  test('the OpenAPI document describes the contract paths with schemas and examples; /docs renders it', async (t) => {
    const { app } = await suite.build(t);
    const res = await app.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(res.statusCode, 200);
    const doc = res.json();
    assert.match(doc.openapi, /^3\./);
    for (const path of ['/api/v1/user', '/api/v1/user/{username}', '/api/v1/auth-totp/qrcode', '/api/v1/auth-jwt/login', '/api/v1/auth-jwt/login/mfa', '/api/v1/auth-jwt/refresh', '/api/v1/auth-jwt/logout', '/api/v1/auth-jwt/user-info', '/.well-known/jwks.json']) {
      assert.ok(doc.paths[path], `documents ${path}`);
    }
    const login = doc.paths['/api/v1/auth-jwt/login'].post;
    assert.ok(login.requestBody.content['application/json']);
    assert.ok(login.requestBody.content['application/x-www-form-urlencoded'], 'form bodies are documented');
    assert.ok(login.responses['200'] && login.responses['401'] && login.responses['403']);
    assert.ok(JSON.stringify(doc).includes('"examples"'), 'schemas carry examples');
    assert.equal(doc.paths['/dev/mailbox'], undefined);
    const docs = await app.inject({ method: 'GET', url: '/docs' });
    assert.ok([200, 302].includes(docs.statusCode));
    const page = await app.inject({ method: 'GET', url: docs.statusCode === 302 ? String(docs.headers.location) : '/docs' });
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /swagger/i);
  });

  test('health, readiness and Prometheus metrics', async (t) => {
    const { app } = await suite.build(t);
    assert.deepEqual((await app.inject({ method: 'GET', url: '/healthz' })).json(), { status: 'ok' });
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 200);
    assert.equal(ready.json().status, 'ready');
    await app.inject({ method: 'GET', url: '/api/v1/user/nobody_here' });
    const metrics = await app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(metrics.statusCode, 200);
    assert.match(metrics.headers['content-type'] as string, /^text\/plain/);
    assert.match(metrics.body, /twofold_http_requests_total\{method="GET",route="\/api\/v1\/user\/:username",status="404"\} 1/);
    assert.match(metrics.body, /twofold_process_resident_memory_bytes/);
  });

  test('every answer carries the security headers; pages forbid framing and inline script', async (t) => {
    const { app } = await suite.build(t);
    const res = await app.inject({ method: 'GET', url: '/healthz' });
    const csp = String(res.headers['content-security-policy']);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    assert.equal(res.headers['referrer-policy'], 'no-referrer');
    assert.equal(res.headers['x-frame-options'], 'SAMEORIGIN');
    assert.equal(res.headers['strict-transport-security'], undefined, 'no HSTS on plain http');
    // The same headers on a page, a JSON answer, a problem, a 404 and a refused body: every way an answer leaves.
    const helmetHeaders = ['content-security-policy', 'x-content-type-options', 'referrer-policy', 'x-frame-options', 'cross-origin-opener-policy', 'cross-origin-resource-policy', 'origin-agent-cluster', 'x-dns-prefetch-control', 'x-download-options', 'x-permitted-cross-domain-policies', 'x-xss-protection'];
    const pick = (h: Record<string, unknown>) => Object.fromEntries(helmetHeaders.map((k) => [k, h[k]]));
    for (const k of helmetHeaders) assert.notEqual(res.headers[k], undefined, k);
    const others = await Promise.all([
      app.inject({ method: 'GET', url: '/login' }),
      app.inject({ method: 'GET', url: '/api/v1/user/nobody_here' }),
      app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info' }),
      app.inject({ method: 'GET', url: '/no/such/path' }),
      app.inject({ method: 'POST', url: '/api/v1/user', headers: { 'content-type': 'application/json' }, payload: '{"broken' }),
    ]);
    assert.deepEqual(others.map((r) => r.statusCode), [200, 404, 401, 404, 400]);
    for (const r of others) assert.deepEqual(pick(r.headers), pick(res.headers), `${r.statusCode} ${r.body.slice(0, 80)}`);
  });

  test('HSTS when PUBLIC_URL is https, on every answer', async (t) => {
    const { app } = await suite.build(t, { env: { PUBLIC_URL: 'https://auth.example.com' } });
    for (const url of ['/healthz', '/no/such/path']) {
      const res = await app.inject({ method: 'GET', url });
      assert.equal(res.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains', url);
    }
  });
});
