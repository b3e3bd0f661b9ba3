/** Issue 7: hostile input gets 4xx problem details; auth before body; 415; the CSRF rule for non-browser clients. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { createUser, describeWithApp, loginTokens, uniqueName } from '../helpers/app.ts';
import { rawExchange } from '../helpers/net.ts';

function assertProblem(res: LightMyRequestResponse, status: number, code: string, what: string): void {
  assert.equal(res.statusCode, status, `${what}: ${res.body}`);
  assert.match(String(res.headers['content-type']), /^application\/problem\+json/, what);
  assert.equal(res.json().code, code, what);
}

function post(app: FastifyInstance, url: string, payload: string, headers: Record<string, string> = {}) {
  return app.inject({ method: 'POST', url, payload, headers: { 'content-type': 'application/json', ...headers } });
}

describeWithApp('hostile input', (suite) => {
  test('NUL characters and lone surrogates in bodies, paths and queries are 400 malformed_request, never 500', async (t) => {
    const { app } = await suite.build(t);
    const name = uniqueName();
    const signUp = (extra: string) => `{"username":"${name}","email":"${name}@example.com","password1":"a long passphrase 42","password2":"a long passphrase 42",${extra}}`;
    const cases: Array<[string, () => Promise<LightMyRequestResponse>]> = [
      ['NUL in a login name', () => post(app, '/api/v1/auth-jwt/login', '{"username":"ali\\u0000ce","password":"x"}')],
      ['lone high surrogate in a login name', () => post(app, '/api/v1/auth-jwt/login', '{"username":"ali\\ud800ce","password":"x"}')],
      ['lone low surrogate in a password', () => post(app, '/api/v1/auth-jwt/login', '{"username":"alice","password":"\\udc00"}')],
      ['NUL in full_name', () => post(app, '/api/v1/user', signUp('"full_name":"A\\u0000B"'))],
      ['NUL in a profile key', () => post(app, '/api/v1/user', signUp('"profile":{"a\\u0000":1}'))],
      ['lone surrogate in a profile value', () => post(app, '/api/v1/user', signUp('"profile":{"a":"\\ud83d"}'))],
      ['NUL in a path parameter', () => app.inject({ method: 'GET', url: '/api/v1/user/ab%00cd' })],
      ['NUL in a query parameter', () => app.inject({ method: 'GET', url: '/api/v1/user/email/verify?token=a%00b' })],
      ['NUL in a form body', () => app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: 'username=a%00b&password=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } })],
    ];
    for (const [what, send] of cases) assertProblem(await send(), 400, 'malformed_request', what);
    // A proper surrogate pair (an emoji) is fine.
    const ok = await post(app, '/api/v1/user', signUp('"full_name":"Ali \\ud83d\\ude00"'));
    assert.equal(ok.statusCode, 201, ok.body);
  });

  test('a path the router cannot decode, or an over-long parameter, gets a problem document, not the framework\'s own JSON', async (t) => {
    const { app } = await suite.build(t);
    const token = (await loginTokens(app, await createUser(app))).access_token;
    const auth = { authorization: `Bearer ${token}` };
    for (const [method, url] of [['DELETE', '/api/v1/auth-jwt/sessions/%E0%A4%A'], ['GET', '/api/v1/user/%zz'], ['GET', '/login%zz']] as const) {
      const res = await app.inject({ method, url, headers: auth });
      assertProblem(res, 400, 'malformed_request', url);
      // Answered before any hook: the headers every other answer carries are still there.
      assert.equal(res.headers['x-content-type-options'], 'nosniff', url);
      assert.match(String(res.headers['content-security-policy']), /default-src 'none'|default-src 'self'/, url);
      assert.equal(res.headers['cache-control'], 'no-store', url);
    }
    // Long parameters reach their routes: authentication first, then the resource's own 404 code.
    const long = 'a'.repeat(300);
    assertProblem(await app.inject({ method: 'GET', url: `/api/v1/user/${long}` }), 404, 'user_not_found', 'a 300-character name');
    assertProblem(await app.inject({ method: 'PATCH', url: `/api/v1/passkeys/${long}`, headers: auth, payload: { name: 'x' } }), 404, 'passkey_not_found', 'a 300-character id');
    assertProblem(await app.inject({ method: 'PATCH', url: `/api/v1/passkeys/${long}`, payload: { name: 'x' } }), 401, 'authentication_required', 'no token: 401 first');
    assertProblem(await app.inject({ method: 'DELETE', url: `/api/v1/auth-jwt/sessions/${long}`, headers: auth }), 404, 'session_not_found', 'a 300-character session id');
    assertProblem(await app.inject({ method: 'DELETE', url: `/api/v1/auth-jwt/sessions/${long}` }), 401, 'authentication_required', 'no token: 401 first');
    // Past what any route takes (2,048 characters): the router's generic not_found.
    assertProblem(await app.inject({ method: 'GET', url: `/api/v1/user/${'a'.repeat(3000)}`, headers: auth }), 404, 'not_found', 'a 3,000-character parameter');
  });

  test('what the HTTP parser itself refuses (a broken header, headers over the limit) is a problem document too', async (t) => {
    const { app } = await suite.build(t);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const cases: Array<[string, number, string?]> = [
      ['GET /api/v1/health HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n', 400],
      ['GET /api/v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n', 400],
      ['GARBAGE\r\n\r\n', 400],
      [`GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431],
      [`POST /api/v1/auth-jwt/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2;${'a'.repeat(20_000)}\r\n{}\r\n0\r\n\r\n`, 413, 'payload_too_large'],
    ];
    for (const [request, status, code = 'malformed_request'] of cases) {
      const answer = await rawExchange(port, request);
      const [head = '', body = ''] = answer.split('\r\n\r\n');
      assert.match(head, new RegExp(`^HTTP/1\\.1 ${status} `), request.slice(0, 40));
      assert.match(head, /content-type: application\/problem\+json/i);
      assert.match(head, /cache-control: no-store/i);
      const problem = JSON.parse(body);
      assert.equal(problem.status, status);
      assert.equal(problem.code, code);
    }
  });

  test('what Node\'s HTTP server answered itself (no Host, an unknown Expect) is a problem document too', async (t) => {
    const { app } = await suite.build(t);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const cases: Array<[string, string, number, string]> = [
      ['HTTP/1.1 without Host', 'GET /api/v1/health HTTP/1.1\r\nConnection: close\r\n\r\n', 400, 'malformed_request'],
      ['HTTP/1.1 without Host, a body route', 'POST /api/v1/auth-jwt/login HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}', 400, 'malformed_request'],
      ['Expect: teapot', 'POST /api/v1/auth-jwt/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: teapot\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}', 417, 'expectation_failed'],
    ];
    for (const [what, request, status, code] of cases) {
      const answer = await rawExchange(port, request);
      const [head = '', body = ''] = answer.split('\r\n\r\n');
      assert.match(head, new RegExp(`^HTTP/1\\.1 ${status} `), `${what}: ${answer}`);
      assert.match(head, /content-type: application\/problem\+json/i, what);
      assert.match(head, /x-content-type-options: nosniff/i, what);
      const problem = JSON.parse(body);
      assert.equal(problem.status, status, what);
      assert.equal(problem.code, code, what);
    }
    // HTTP/1.0 may leave Host out, and Expect: 100-continue is still met.
    assert.match(await rawExchange(port, 'GET /healthz HTTP/1.0\r\n\r\n'), /^HTTP\/1\.1 200 /);
    const continued = await rawExchange(port, 'POST /api/v1/auth-jwt/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}');
    assert.match(continued, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 422 /, continued);
  });

  test('a client that trickles its request gets 408 after REQUEST_TIMEOUT, and its connection is closed', { timeout: 20_000 }, async (t) => {
    const { app } = await suite.build(t, { env: { REQUEST_TIMEOUT: '1' } });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    // Headers begun and never finished (a slowloris): without a limit the connection stays open for good.
    const answer = await rawExchange(port, 'GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: a');
    const [head = '', body = ''] = answer.split('\r\n\r\n');
    assert.match(head, /^HTTP\/1\.1 408 /, answer);
    assert.match(head, /content-type: application\/problem\+json/i);
    assert.equal(JSON.parse(body).code, 'malformed_request');
  });

  test('deeply nested JSON is 400, not a stack overflow or 500 (objects and arrays, up to the body limit)', async (t) => {
    const { app } = await suite.build(t);
    const name = uniqueName();
    const wrap = (inner: string) => `{"username":"${name}","email":"${name}@example.com","password1":"a long passphrase 42","password2":"a long passphrase 42","profile":${inner}}`;
    const deepObject = '{"a":'.repeat(40) + '1' + '}'.repeat(40);
    const deepArray = '{"a":' + '['.repeat(30000) + ']'.repeat(30000) + '}';
    assertProblem(await post(app, '/api/v1/user', wrap(deepObject)), 400, 'malformed_request', 'deep object');
    assertProblem(await post(app, '/api/v1/user', wrap(deepArray)), 400, 'malformed_request', 'deep array');
    assertProblem(await post(app, '/api/v1/auth-jwt/login', '[' .repeat(30000) + ']'.repeat(30000)), 400, 'malformed_request', 'deep array as the whole body');
    const shallow = await post(app, '/api/v1/user', wrap('{"a":{"b":{"c":[1,2,{"d":true}]}}}'));
    assert.equal(shallow.statusCode, 201, shallow.body);
  });

  test('bodies of a type an endpoint does not take are 415 unsupported_media_type (text/plain included)', async (t) => {
    const { app } = await suite.build(t);
    for (const type of ['text/plain', 'multipart/form-data; boundary=x', 'application/xml']) {
      for (const url of ['/api/v1/auth-jwt/login', '/api/v1/user', '/api/v1/user/password/forgot']) {
        const res = await app.inject({ method: 'POST', url, payload: '{"username":"alice","password":"x"}', headers: { 'content-type': type } });
        assertProblem(res, 415, 'unsupported_media_type', `${type} at ${url}`);
      }
    }
  });

  test('every (auth) operation answers 401 before it looks at the body: no 415 or 422 for a stranger', async (t) => {
    const { app } = await suite.build(t);
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as { paths: Record<string, Record<string, { security?: Array<Record<string, unknown>> }>> };
    let checked = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        if (!op.security?.some((s) => 'cookieAuth' in s)) continue;
        const url = path.replace(/\{[^}]+\}/g, randomUUID());
        for (const [type, payload] of [['text/plain', 'hello'], ['application/json', '{"broken":'], ['application/json', '{"security_code":42,"password":[]}']]) {
          const res = await app.inject({ method: method.toUpperCase() as 'POST', url, payload, headers: { 'content-type': type! } });
          assertProblem(res, 401, 'authentication_required', `${method.toUpperCase()} ${path} with ${type} ${payload}`);
        }
        checked++;
      }
    }
    assert.ok(checked >= 12, `walked ${checked} authenticated operations`);
  });
});

describeWithApp('the CSRF rule and non-browser clients', (suite) => {
  test('curl with cookies (no Origin, no Sec-Fetch-Site) can refresh and log out', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const tokens = await loginTokens(app, user);
    const refresh = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', cookies: { refresh_token: tokens.refresh_token } });
    assert.equal(refresh.statusCode, 200, refresh.body);
    const next = refresh.json();
    const logout = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', cookies: { access_token: next.access_token, refresh_token: next.refresh_token } });
    assert.equal(logout.statusCode, 204, logout.body);
    const after = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', cookies: { refresh_token: next.refresh_token } });
    assert.equal(after.statusCode, 401, 'the session is gone');
  });

  test('browsers are still held to the rule: Origin null, a foreign Origin, Sec-Fetch-Site cross-site are 403', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const tokens = await loginTokens(app, user);
    for (const headers of [{ origin: 'null' }, { origin: 'https://evil.example' }, { 'sec-fetch-site': 'cross-site' }, { origin: 'http://127.0.0.1:8001' }]) {
      for (const url of ['/api/v1/auth-jwt/refresh', '/api/v1/auth-jwt/logout', '/api/v1/auth-jwt/logout-all']) {
        const res = await app.inject({ method: 'POST', url, headers, cookies: { access_token: tokens.access_token, refresh_token: tokens.refresh_token } });
        assertProblem(res, 403, 'csrf_rejected', `${url} ${JSON.stringify(headers)}`);
      }
    }
    assert.equal((await app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: { authorization: `Bearer ${tokens.access_token}` } })).statusCode, 200);
  });

  test('a form login with a mixed-case content type from a foreign site is refused (login CSRF)', async (t) => {
    const { app } = await suite.build(t);
    const user = await createUser(app);
    const body = `username=${user.username}&password=${encodeURIComponent(user.password)}`;
    for (const type of ['Application/X-WWW-Form-Urlencoded', 'APPLICATION/X-WWW-FORM-URLENCODED; charset=UTF-8', 'application/x-www-form-urlencoded']) {
      const res = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: body, headers: { 'content-type': type, origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' } });
      assertProblem(res, 403, 'csrf_rejected', type);
      assert.equal(res.headers['set-cookie'], undefined, 'no session cookie planted');
    }
    const own = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: body, headers: { 'content-type': 'Application/X-WWW-Form-Urlencoded', origin: 'http://127.0.0.1:8000' } });
    assert.equal(own.statusCode, 200, 'our own form, any capitalisation, logs in');
  });

  test('with PUBLIC_URL http://localhost:8000 a page opened as http://127.0.0.1:8000 may use its cookies (loopback alias)', async (t) => {
    const { app } = await suite.build(t, { env: { PUBLIC_URL: 'http://localhost:8000' } });
    const user = await createUser(app);
    for (const origin of ['http://127.0.0.1:8000', 'http://localhost:8000', 'http://[::1]:8000']) {
      const tokens = await loginTokens(app, user);
      const res = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: { origin, 'sec-fetch-site': 'same-origin' }, cookies: { access_token: tokens.access_token } });
      assert.equal(res.statusCode, 204, origin);
    }
    const tokens = await loginTokens(app, user);
    const other = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: { origin: 'http://127.0.0.1:9999' }, cookies: { access_token: tokens.access_token } });
    assertProblem(other, 403, 'csrf_rejected', 'another port is another origin');
  });
});
