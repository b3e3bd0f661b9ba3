/**
 * NUL characters and lone surrogates in OpenID requests: PostgreSQL stores neither in text or jsonb,
 * so they reached the database as a failed statement (500). The OpenID routes are handed to the engine
 * at onRequest, before a body is read: the app's guard checks every route's query and path at
 * onRequest, and the adapter refuses what the engine parsed from a body itself.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeWithApp } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const AUTH = '/oidc/auth?client_id=wiki&response_type=code&scope=openid&redirect_uri=https%3A%2F%2Frp.example.com%2Fcb';

describeWithApp('OpenID requests with a NUL or a lone surrogate', (suite) => {
  test('are refused with a 4xx, never a 500', async (t) => {
    // The engine's late-error listener must not use a deprecated accessor (one warning per process:
    // another file in the same process could have used it up first, so this file runs alone).
    // npm test: a process of its own
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    t.after(() => process.off('warning', onWarning));
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const created = await adminCall(ta, 'POST', '/api/v1/admin/oidc-clients', { client_id: 'wiki', redirect_uris: ['https://rp.example.com/cb'] });
    assert.equal(created.statusCode, 201, created.body);
    const secret = created.json().client_secret as string;
    const client = `client_id=wiki&client_secret=${encodeURIComponent(secret)}`;

    // In the query: the app's own problem, as for every other route.
    for (const url of ['/oidc/auth?client_id=%00', `${AUTH}&state=%00`, `${AUTH}&nonce=x%00`, `${AUTH}&login_hint=a%00b`, '/oidc/session/end?state=%00']) {
      const res = await ta.app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 400, url);
      assert.equal(res.json().code, 'malformed_request', url);
      assert.ok(res.headers['content-security-policy'], `${url}: the security headers come with the refusal`);
    }
    // In a body, which the engine parses itself: its own OAuth errors.
    const bodies: Array<[string, string]> = [
      ['/oidc/token', 'grant_type=client_credentials&client_id=%00'],
      ['/oidc/token/introspection', 'client_id=%00&token=x'],
      ['/oidc/token/revocation', 'client_id=%00&token=x'],
      ['/oidc/session/end', 'state=%00'],
    ];
    for (const [url, payload] of bodies) {
      const res = await ta.app.inject({ method: 'POST', url, headers: FORM, payload });
      assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${url}: ${res.statusCode} ${res.body.slice(0, 200)}`);
      assert.doesNotMatch(res.body, /SELECT|PGlite|invalid byte sequence|unsupported Unicode|\.ts:/, url);
    }
    // Pushed authorization requests are not offered (they stored a row for anyone knowing a public
    // client's id, uncounted): 404 as any unknown route, nothing stored, not in discovery.
    const pushed = await ta.app.inject({ method: 'POST', url: '/oidc/request', headers: FORM, payload: `${client}&response_type=code&scope=openid&redirect_uri=https%3A%2F%2Frp.example.com%2Fcb&state=fine` });
    assert.equal(pushed.statusCode, 404, pushed.body);
    const stored = await ta.deps.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM oidc_payloads WHERE kind = 'PushedAuthorizationRequest'`);
    assert.equal(stored.rows[0]!.n, 0);
    const discovery = await ta.app.inject({ method: 'GET', url: '/.well-known/openid-configuration' });
    assert.equal(discovery.json().pushed_authorization_request_endpoint, undefined);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(warnings.filter((w) => /deprecated/i.test(w)), []);
  });
});
