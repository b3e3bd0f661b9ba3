/** Issue 7: no-store on every answer with a secret; TRUST_PROXY cannot be spoofed; /metrics can be protected. */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import pino from 'pino';
import { totpCodeAt } from '../../src/crypto/totp.ts';
import { createMetrics } from '../../src/http/metrics.ts';
import { buildMetricsApp } from '../../src/http/routes/metrics.ts';
import { createLogger } from '../../src/logger.ts';
import { bearer, createUser, describeWithApp, enableTotp, login, loginTokens, nextTotpStep, uniqueName } from '../helpers/app.ts';

describeWithApp('Cache-Control on answers that carry secrets', (suite) => {
  test('every answer with a token, code, secret or challenge says no-store (and so do API errors)', async (t) => {
    const ta = await suite.build(t, { env: { INTROSPECTION_SECRET: 'introspection-secret-0123' }, appOptions: { devMailbox: true } });
    const { app, clock } = ta;
    const seen: Array<[string, LightMyRequestResponse]> = [];
    const check = (what: string, res: LightMyRequestResponse, status: number) => {
      assert.equal(res.statusCode, status, `${what}: ${res.body}`);
      seen.push([what, res]);
    };
    const name = uniqueName();
    check('sign-up with mfa "totp" (pending secret)', await app.inject({ method: 'POST', url: '/api/v1/user', payload: { username: name, email: `${name}@example.com`, password1: 'a long passphrase 42', password2: 'a long passphrase 42', mfa: 'totp' } }), 201);

    const user = await createUser(app);
    check('/qrcode as JSON', await app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', headers: { accept: 'application/json' }, payload: { username: user.username, password: user.password } }), 201);
    check('/qrcode as PNG', await app.inject({ method: 'POST', url: '/api/v1/auth-totp/qrcode', payload: { username: user.username, password: user.password } }), 201);
    const mfaUser = await createUser(app);
    const { secret } = await enableTotp(ta, mfaUser);
    nextTotpStep(clock);
    const challenge = await login(app, { username: mfaUser.username, password: mfaUser.password });
    check('403 mfa_required (mfa_token)', challenge, 403);
    const done = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login/mfa', payload: { mfa_token: challenge.json().mfa_token, method: 'totp', code: totpCodeAt(secret, clock()) } });
    check('login/mfa tokens', done, 200);
    const tokens = done.json();
    check('refresh', await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/refresh', payload: { refresh_token: tokens.refresh_token } }), 200);
    check('backup codes, new set', await app.inject({ method: 'POST', url: '/api/v1/backup-codes', headers: bearer(tokens.access_token) }), 201);
    check('backup codes, count', await app.inject({ method: 'GET', url: '/api/v1/backup-codes', headers: bearer(tokens.access_token) }), 200);
    check('user-info', await app.inject({ method: 'GET', url: '/api/v1/auth-jwt/user-info', headers: bearer(tokens.access_token) }), 200);
    check('sessions', await app.inject({ method: 'GET', url: '/api/v1/auth-jwt/sessions', headers: bearer(tokens.access_token) }), 200);
    check('introspection', await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/introspect', headers: bearer('introspection-secret-0123'), payload: { token: tokens.access_token } }), 200);

    const fresh = await createUser(app);
    const aal1 = await loginTokens(app, fresh);
    check('password login tokens', await login(app, { username: fresh.username, password: fresh.password }), 200);
    const enrol = await app.inject({ method: 'POST', url: '/api/v1/auth-totp/enroll', headers: { ...bearer(aal1.access_token), accept: 'application/json' } });
    check('enrolment', enrol, 201);
    check('confirm (first backup codes)', await app.inject({ method: 'POST', url: '/api/v1/auth-totp/confirm', headers: bearer(aal1.access_token), payload: { security_code: totpCodeAt(enrol.json().secret, clock()) } }), 200);
    check('an API error', await login(app, { username: fresh.username, password: 'wrong password!' }), 401);
    check('the development mailbox (links and codes)', await app.inject({ method: 'GET', url: '/dev/mailbox' }), 200);

    // The router decodes percent-escapes before matching: the same routes by an escaped path.
    const escaped = uniqueName();
    check('sign-up with mfa "totp" at /%61pi/…', await app.inject({ method: 'POST', url: '/%61pi/v1/user', payload: { username: escaped, email: `${escaped}@example.com`, password1: 'a long passphrase 42', password2: 'a long passphrase 42', mfa: 'totp' } }), 201);
    nextTotpStep(clock);
    check('403 mfa_required at /%61pi/…', await app.inject({ method: 'POST', url: '/%61pi/v1/auth-jwt/login', payload: { username: mfaUser.username, password: mfaUser.password } }), 403);
    check('an API error at /api/v1/%75ser', await app.inject({ method: 'POST', url: '/api/v1/%75ser', payload: {} }), 422);

    for (const [what, res] of seen) assert.equal(res.headers['cache-control'], 'no-store', what);
    // Public, cacheable documents keep their own policy.
    assert.notEqual((await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).headers['cache-control'], 'no-store');
  });
});

describeWithApp('TRUST_PROXY', (suite) => {
  /** Three sign-ups "from" the same client behind the proxy, each claiming another address further left. */
  async function signUpsBehindProxy(t: TestContext, env: Record<string, string>, forwarded: (i: number) => string, remoteAddress = '10.0.0.2') {
    const { app } = await suite.build(t, { env: { RATE_LIMIT_IP_MAX_REQUESTS_PER_MINUTE: '2', ...env } });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const name = uniqueName();
      const res = await app.inject({
        method: 'POST', url: '/api/v1/user', remoteAddress,
        headers: { 'x-forwarded-for': forwarded(i) },
        payload: { username: name, email: `${name}@example.com`, password1: 'a long passphrase 42', password2: 'a long passphrase 42' },
      });
      statuses.push(res.statusCode);
    }
    return statuses;
  }
  test('a spoofed X-Forwarded-For does not change the rate-limit key (true = one hop, a hop count, a CIDR list)', async (t) => {
    // The client writes "198.51.100.<i>" itself; the load balancer appends the address it saw, 203.0.113.9.
    const spoof = (i: number) => `198.51.100.${i}, 203.0.113.9`;
    for (const env of [{ TRUST_PROXY: 'true' }, { TRUST_PROXY: '1' }, { TRUST_PROXY: '10.0.0.0/8' }, { TRUST_PROXY: '10.0.0.2, 192.168.0.0/16' }]) {
      assert.deepEqual(await signUpsBehindProxy(t, env, spoof), [201, 201, 429], JSON.stringify(env));
    }
    // Two proxies (CDN → load balancer): two hops, or both networks listed.
    const twoHops = (i: number) => `198.51.100.${i}, 203.0.113.9, 172.16.0.5`;
    for (const env of [{ TRUST_PROXY: '2' }, { TRUST_PROXY: '10.0.0.0/8,172.16.0.0/12' }]) {
      assert.deepEqual(await signUpsBehindProxy(t, env, twoHops), [201, 201, 429], JSON.stringify(env));
    }
    // A client reaching the service directly (not from a listed proxy) cannot claim any address at all.
    assert.deepEqual(await signUpsBehindProxy(t, { TRUST_PROXY: '10.0.0.0/8' }, (i) => `198.51.100.${i}`, '192.0.2.50'), [201, 201, 429]);
  });

  test('the session records the address the nearest trusted proxy saw', async (t) => {
    const { app } = await suite.build(t, { env: { TRUST_PROXY: '10.0.0.0/8' } });
    const user = await createUser(app);
    const res = await login(app, { username: user.username, password: user.password });
    const tokens = res.json();
    await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/logout', headers: bearer(tokens.access_token) });
    const viaProxy = await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', remoteAddress: '10.1.2.3', headers: { 'x-forwarded-for': '6.6.6.6, 203.0.113.77' }, payload: { username: user.username, password: user.password } });
    const sessions = (await app.inject({ method: 'GET', url: '/api/v1/auth-jwt/sessions', headers: bearer(viaProxy.json().access_token) })).json();
    assert.deepEqual(sessions.map((s: { ip: string }) => s.ip), ['203.0.113.77']);
  });
});

describeWithApp('/metrics protection', (suite) => {
  test('METRICS_TOKEN: /metrics needs the Bearer token', async (t) => {
    const { app } = await suite.build(t, { env: { METRICS_TOKEN: 'metrics-token-0123456789' } });
    for (const headers of [{}, bearer('wrong-token-0123456789ab'), bearer('metrics-token-012345678')]) {
      const res = await app.inject({ method: 'GET', url: '/metrics', headers });
      assert.equal(res.statusCode, 401, JSON.stringify(headers));
      assert.doesNotMatch(res.body, /twofold_http_requests_total/);
    }
    const ok = await app.inject({ method: 'GET', url: '/metrics', headers: bearer('metrics-token-0123456789') });
    assert.equal(ok.statusCode, 200);
    assert.match(ok.body, /twofold_http_requests_total/);
  });

  test('METRICS_PORT: the main app has no /metrics; the separate listener serves the same registry', async (t) => {
    const metrics = createMetrics();
    const { app, deps } = await suite.build(t, { env: { METRICS_PORT: '9464' }, appOptions: { metrics } });
    assert.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 404);
    await app.inject({ method: 'GET', url: '/healthz' });
    const side = await buildMetricsApp(deps.config, metrics, pino({ level: 'silent' }));
    t.after(() => side.close());
    const res = await side.inject({ method: 'GET', url: '/metrics' });
    assert.equal(res.statusCode, 200);
    assert.match(res.body, /twofold_http_requests_total\{method="GET",route="\/healthz",status="200"\} 1/);
    // A URL it cannot decode is a problem document that does not echo the URL back.
    const bad = await side.inject({ method: 'GET', url: '/metrics%zz<b>' });
    assert.equal(bad.statusCode, 400);
    assert.match(String(bad.headers['content-type']), /^application\/problem\+json/);
    assert.equal(bad.json().code, 'malformed_request');
    assert.doesNotMatch(bad.body, /%zz|<b>/);
  });
});

describeWithApp('what each LOG_LEVEL logs', (suite) => {
  test('requests are logged at debug only, without their query string; a client error is not an error', async (t) => {
    for (const level of ['info', 'debug'] as const) {
      const lines: string[] = [];
      const logger = createLogger({ logLevel: level }, { write: (s: string) => void lines.push(s) });
      const { app } = await suite.build(t, { logger });
      await app.inject({ method: 'GET', url: '/api/v1/user/email/verify?token=tok-secret-123' });
      await app.inject({ method: 'POST', url: '/api/v1/auth-jwt/login', payload: { username: 'nobody-here', password: 'wrong password!' } });
      const records = lines.map((l) => JSON.parse(l) as { level: number; msg: string; url?: string });
      const requestLines = records.filter((r) => r.msg === 'request completed');
      assert.equal(requestLines.length, level === 'debug' ? 2 : 0, `${level}: ${lines.join('')}`);
      assert.ok(!lines.join('').includes('tok-secret-123'), 'never the query');
      assert.ok(!records.some((r) => r.level >= 40), 'nothing at warn or above for ordinary refusals');
    }
  });
});
