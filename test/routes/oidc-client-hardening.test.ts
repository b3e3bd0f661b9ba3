/**
 * Client registrations that would hand an authorization code to someone on the way or to another
 * app: with PUBLIC_URL on https, a web client's redirect and post-logout URIs must be https too
 * (loopback excepted, RFC 9700 §2.6); a native client (app-scheme redirect) must use PKCE even when it
 * has a secret, since a secret shipped inside an app is anyone's (RFC 8252 §8.5) and another app
 * claiming the scheme could redeem a code it caught.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeWithApp } from '../helpers/app.ts';
import { ADMIN_ENV, adminCall } from '../helpers/admin.ts';
import { parseClientsFile } from '../../src/oidc/clients-file.ts';

const CLIENTS = '/api/v1/admin/oidc-clients';

describeWithApp('OpenID client registration hardening', (suite) => {
  test('with PUBLIC_URL on https, plain-http redirect and post-logout URIs of web clients are refused off loopback', async (t) => {
    // Written in capitals, as an operator may: the scheme is what counts.
    const ta = await suite.build(t, { env: { ...ADMIN_ENV, PUBLIC_URL: 'HTTPS://id.example.com' } });
    for (const [body, field] of [
      [{ client_id: 'wiki', redirect_uris: ['http://wiki.example.com/cb'] }, 'redirect_uris[0]'],
      [{ client_id: 'spa', redirect_uris: ['https://spa.example.com/cb', 'http://10.0.0.5/cb'], token_endpoint_auth_method: 'none' }, 'redirect_uris[1]'],
      [{ client_id: 'bye', redirect_uris: ['https://wiki.example.com/cb'], post_logout_redirect_uris: ['http://wiki.example.com/'] }, 'post_logout_redirect_uris[0]'],
    ] as Array<[Record<string, unknown>, string]>) {
      const res = await adminCall(ta, 'POST', CLIENTS, body);
      assert.equal(res.statusCode, 422, `${JSON.stringify(body)}: ${res.body}`);
      assert.equal(res.json().errors[0].field, field);
    }
    for (const [id, uri] of [['wiki', 'https://wiki.example.com/cb'], ['dev', 'http://localhost:3000/cb'], ['dev4', 'http://127.0.0.1:3000/cb'], ['dev6', 'http://[::1]:3000/cb']]) {
      const res = await adminCall(ta, 'POST', CLIENTS, { client_id: id, redirect_uris: [uri], post_logout_redirect_uris: [uri] });
      assert.equal(res.statusCode, 201, `${uri}: ${res.body}`);
    }
    const file = JSON.stringify([{ client_id: 'f', client_secret: 's'.repeat(32), redirect_uris: ['http://wiki.example.com/cb'] }]);
    assert.throws(() => parseClientsFile(file, 'OIDC_CLIENTS_FILE', true), /OIDC_CLIENTS_FILE: \[0\]\.redirect_uris\[0\] must be an https URL/);
    assert.equal(parseClientsFile(file, 'OIDC_CLIENTS_FILE', false).length, 1, 'a development instance (PUBLIC_URL on http) still takes them');
  });

  test('a native client with a secret must send PKCE: an authorization request without a code challenge is refused', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const native = 'com.example.app:/callback';
    const created = await adminCall(ta, 'POST', CLIENTS, { client_id: 'mobile-secret', redirect_uris: [native] });
    assert.equal(created.statusCode, 201, created.body);
    assert.ok(created.json().client_secret, 'a confidential client');
    const base = `/oidc/auth?client_id=mobile-secret&response_type=code&scope=openid&state=s1&redirect_uri=${encodeURIComponent(native)}`;
    const without = await ta.app.inject({ method: 'GET', url: base });
    assert.equal(without.statusCode, 303, without.body);
    const refused = new URL(without.headers.location as string);
    assert.equal(`${refused.protocol}${refused.pathname}`, native);
    assert.equal(refused.searchParams.get('error'), 'invalid_request');
    assert.match(refused.searchParams.get('error_description') ?? '', /PKCE/);
    const challenge = 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM';
    const withPkce = await ta.app.inject({ method: 'GET', url: `${base}&code_challenge=${challenge}&code_challenge_method=S256` });
    assert.equal(withPkce.statusCode, 303, withPkce.body);
    assert.match(withPkce.headers.location as string, /\/oidc\/interaction\//, 'on to the sign-in');
  });

  test('a confidential client redirecting only to loopback (a desktop application) must send PKCE; one with a web URI need not', async (t) => {
    const ta = await suite.build(t, { env: ADMIN_ENV });
    const desktop = 'http://127.0.0.1:53682/callback';
    const made = await adminCall(ta, 'POST', CLIENTS, { client_id: 'desktop-app', redirect_uris: [desktop] });
    assert.equal(made.statusCode, 201, made.body);
    const refused = await ta.app.inject({ method: 'GET', url: `/oidc/auth?client_id=desktop-app&response_type=code&scope=openid&state=s1&redirect_uri=${encodeURIComponent(desktop)}` });
    assert.equal(refused.statusCode, 303, refused.body);
    const to = new URL(refused.headers.location as string);
    assert.equal(`${to.origin}${to.pathname}`, desktop);
    assert.equal(to.searchParams.get('error'), 'invalid_request');
    const web = 'https://wiki.example.com/cb';
    const wiki = await adminCall(ta, 'POST', CLIENTS, { client_id: 'wiki-web', redirect_uris: [web, desktop] });
    assert.equal(wiki.statusCode, 201, wiki.body);
    const allowed = await ta.app.inject({ method: 'GET', url: `/oidc/auth?client_id=wiki-web&response_type=code&scope=openid&state=s1&redirect_uri=${encodeURIComponent(web)}` });
    assert.equal(allowed.statusCode, 303, allowed.body);
    assert.match(allowed.headers.location as string, /\/oidc\/interaction\//, 'a confidential web client without PKCE goes on to the sign-in');
  });
});
